"""Start a live run from the command line: the banner, uvloop and the signal it must ignore."""

from __future__ import annotations

import signal
import sys
from typing import TextIO

import uvloop

from engine.config import EngineConfig
from engine.live import Runtime, SurfaceFactory


def run_live(
    cfg: EngineConfig, out: TextIO = sys.stdout, surface: SurfaceFactory | None = None
) -> None:
    """Run live trading on uvloop until SIGINT or SIGTERM, served by ``surface``."""

    # a file size limit makes writes fail (EFBIG) like a full disk, instead of killing us
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    async def main() -> None:
        runtime = Runtime(cfg, out, surface)
        feed = "the sim feed" if runtime.feed is None else cfg.feed.url
        if cfg.feed.name == "broker":
            feed = f"{cfg.broker.name}'s market data"
        symbols = ", ".join(runtime.engine.state.symbols)
        print(
            f"otrade: {cfg.broker.name} trading {symbols} on {feed};"
            f" journal {cfg.journal.path}; restored {runtime.restored}",
            file=out,
            flush=True,
        )
        if runtime.journal.repaired is not None:
            print(f"otrade: journal repaired: {runtime.journal.repaired}", file=out, flush=True)
        await runtime.run()

    uvloop.run(main())
