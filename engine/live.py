"""Live paper trading in one uvloop process: the sim feed paced in real time.

The feed fills a preallocated batch every few milliseconds with the ticks due by then; the
engine runs the batch in one kernel call; the journal records every order; a status line is
printed every second. SIGINT or SIGTERM stop it cleanly with the journal flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from typing import TextIO

import uvloop

from engine.brokers.paper import PaperBroker
from engine.config import EngineConfig
from engine.core import Engine
from engine.feeds.sim import SimFeed
from engine.feeds.ticks import TickBatch
from engine.journal import Journal, restore
from engine.sessions import local_date
from kernels import layout

#: seconds between feed polls: ticks due in that time go to the kernels as one batch
POLL_S = 0.005


class LiveRunner:
    """Run the engine on the sim feed until stopped.

    Parameters
    ----------
    cfg : EngineConfig
        The validated configuration (paper broker, sim feed).
    out : TextIO
        Where status lines go.
    """

    def __init__(self, cfg: EngineConfig, out: TextIO = sys.stdout) -> None:
        self.cfg = cfg
        self.out = out
        self.engine = Engine(cfg)
        self.engine.paper = PaperBroker(self.engine)
        self.journal = Journal(cfg, self.engine.state.symbols)
        now = time.time_ns()
        self.restored = restore(self.engine.state, cfg.journal.path, local_date(now, cfg.session))
        self.engine.sinks.append(self.journal)
        self.engine.controls.append(self.journal.control)
        instruments = cfg.instruments
        self.feed = SimFeed(
            [inst.symbol for inst in instruments],
            [inst.tick_size for inst in instruments],
            [inst.sim_start_price for inst in instruments],
            seed=cfg.feed.seed,
            ticks_per_second=cfg.feed.ticks_per_second,
            step_ticks=cfg.feed.sim_step_ticks,
            start_ts=now,
        )
        self.batch = TickBatch(cfg.state.chunk_ticks)
        self.stop_event = asyncio.Event()

    async def run(self) -> None:
        """Feed, trade and report until ``stop()``; then journal the stop and close."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop)
        self.journal.control("start", restored=self.restored)
        status = asyncio.create_task(self._report())
        try:
            await self._feed()
        finally:
            status.cancel()
            self.journal.control("stop", ticks=self.engine.state.account_int(layout.A_TICKS))
            self.journal.close()

    def stop(self) -> None:
        """Ask the loop to stop after the batch in flight."""
        self.stop_event.set()

    async def _feed(self) -> None:
        rate = self.cfg.feed.ticks_per_second
        batch, engine = self.batch, self.engine
        started = time.monotonic()
        while not self.stop_event.is_set():
            due = int((time.monotonic() - started) * rate) - self.feed.ticks_emitted
            n = self.feed.fill(batch, min(max(due, 0), batch.idx.shape[0]))
            engine.process(batch.idx, batch.price, batch.size, batch.ts, n, time.monotonic_ns())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), POLL_S)

    async def _report(self) -> None:
        state = self.engine.state
        last_ticks, last_time = state.account_int(layout.A_TICKS), time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            ticks, now = state.account_int(layout.A_TICKS), time.monotonic()
            rate = (ticks - last_ticks) / (now - last_time)
            last_ticks, last_time = ticks, now
            print(status_line(self.engine, rate), file=self.out, flush=True)


def status_line(engine: Engine, ticks_per_s: float) -> str:
    """Return the one-line status: ticks/s, positions, P&L and halts."""
    state = engine.state
    held = [
        f"{symbol} {p['side']} {p['qty']}@{p['entry_price']:g}"
        for symbol, p in state.positions().items()
    ]
    return (
        f"ticks/s {ticks_per_s:,.0f} | ticks {state.account_int(layout.A_TICKS):,}"
        f" | positions {', '.join(held) or 'flat'}"
        f" | realized {state.account(layout.A_REALIZED):.2f}"
        f" unrealized {state.account(layout.A_UNREALIZED):.2f}"
        f" day {state.account(layout.A_DAY_PNL):.2f}"
        f" | session {'open' if state.session_open(time.time_ns()) else 'closed'}"
        f" | halt {state.halt_reason() or 'none'}"
    )


def run_live(cfg: EngineConfig, out: TextIO = sys.stdout) -> None:
    """Run live paper trading on uvloop until SIGINT or SIGTERM."""

    async def main() -> None:
        runner = LiveRunner(cfg, out)
        print(
            f"otrade: paper trading {', '.join(runner.engine.state.symbols)} on the sim feed;"
            f" journal {cfg.journal.path}; restored {runner.restored}",
            file=out,
            flush=True,
        )
        await runner.run()

    uvloop.run(main())
