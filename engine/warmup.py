"""Compile every kernel once so the first real start loads them from numba's disk cache.

Run by ``make`` after installing: ``python -m engine.warmup``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import orjson

from engine.backtest import run_file
from engine.brokers.paper import PaperBroker
from engine.config import parse_config
from engine.core import Engine
from engine.feeds.sim import SimFeed, write_ticks_csv
from engine.feeds.ticks import TickBatch
from engine.feeds.ws import WsFeed
from kernels import layout


def warm() -> float:
    """Compile the pipeline, the feeds and the CSV and JSON parsers; return the seconds taken."""
    started = time.perf_counter()
    cfg = parse_config(orjson.dumps({"session": {"enabled": False}}))
    engine = Engine(cfg)
    engine.paper = PaperBroker(engine)
    feed = SimFeed(["NIFTY"], [0.05], [22000.0], seed=1, ticks_per_second=1000.0)
    batch = TickBatch(4096)
    n = feed.fill(batch, 4096)
    engine.process(batch.idx, batch.price, batch.size, batch.ts, n)
    engine.kill(int(batch.ts[n - 1]))
    _warm_live(int(batch.ts[n - 1]))
    ws = WsFeed(cfg.feed, engine.state.index, lambda *_: None, lambda _: None)
    ws._ticks(memoryview(orjson.dumps({"s": "NIFTY", "p": 1.0, "q": 1, "t": 1})), 0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ticks.csv"
        write_ticks_csv(path, ["NIFTY"], [0.05], [22000.0], 1000, 1, int(batch.ts[0]))
        run_file(cfg, path)
    return time.perf_counter() - started


def _warm_live(ts: int) -> None:
    # a live broker's fills and feeds compile their own kernels: not on the first real order
    import numpy as np

    from engine.brokers.kite.ticker_nb import decode_ticks, token_table
    from engine.brokers.upstox.feed import UpstoxFeed

    cfg = parse_config(
        orjson.dumps(
            {
                "instruments": [
                    {"symbol": "NIFTY", "kite": {"instrument_token": 256265, "tradingsymbol": "N"}}
                ],
                "session": {"enabled": False},
                "broker": {"name": "kite"},
                "feed": {"name": "broker"},
            }
        )
    )
    engine = Engine(cfg)
    engine.broker_fill(0, layout.LONG, 1, 22000.0, layout.R_NONE, ts)
    engine.broker_fill(0, layout.SHORT, 1, 22001.0, layout.R_TARGET, ts)
    frame = np.frombuffer(b"\x00\x01\x00\x08\x00\x03\xe9\x09\x00\x21\x8b\x98", np.uint8)
    keys, rows = token_table({256265: 0})
    out = TickBatch(16)
    decode_ticks(frame, frame.size, keys, rows, out.idx, out.price, out.size, out.ts, ts, 0)
    upstox = UpstoxFeed(
        None,
        {"NIFTY": "NSE_INDEX|Nifty 50"},
        {"NIFTY": 0},
        print,
        print,
        print,  # type: ignore[arg-type]
    )
    upstox._decode(0, ts)


if __name__ == "__main__":
    print(f"otrade: kernels compiled and cached in {warm():.1f} s")
