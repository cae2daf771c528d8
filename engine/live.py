"""Live paper trading in one uvloop process: feed, engine, broker, journal and web together.

The feed (the paced ``sim`` walk or the ``ws`` client) hands each batch or frame to the engine
as one kernel call; the journal records every order; the web server (uvicorn's
``Server.serve()`` as a task on the same loop) answers between batches; a status line is
printed every second. SIGINT or SIGTERM stop it within a second with the journal flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, TextIO

import numpy as np
import orjson

from engine.backtest import TradeStats
from engine.brokers import live_adapter
from engine.brokers.paper import PaperBroker
from engine.brokers.routing import Router, adopt, reconcile
from engine.config import ConfigError, EngineConfig, dump_config, validate_config
from engine.core import Engine
from engine.events import RefusalFilter, block_records, trade_records
from engine.feeds.sim import SimFeed
from engine.feeds.ticks import TickBatch
from engine.feeds.ws import WsFeed
from engine.journal import Journal, restore
from engine.metrics import LatencyRing, RateMeter
from engine.record import Recorder
from engine.sessions import trading_day
from engine.state import PAUSE_FEED, PAUSE_JOURNAL
from kernels import layout

#: seconds between sim feed polls: ticks due in that time go to the kernels as one batch
POLL_S = 0.005
#: closed trades kept for the page and ``/api/trades``
RECENT_TRADES = 500
#: order records kept for ``/api/orders``
RECENT_ORDERS = 200
#: seconds the web server gets to close its connections on stop
WEB_STOP_S = 0.5

#: an event listener takes one record: an engine event, a control action or a feed state
Listener = Callable[[dict], None]


class Surface(Protocol):
    """What serves the runtime to the operator (``web.server.WebServer``), on the same loop."""

    async def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...


#: builds the operator surface from the runtime; the composition root (``engine.cli``) passes
#: ``web.server.WebServer``, so the engine itself never imports the web
SurfaceFactory = Callable[["Runtime"], Surface]


class Runtime:
    """Everything one live process runs: engine, paper broker, journal, feed and web.

    Parameters
    ----------
    cfg : EngineConfig
        The validated configuration.
    out : TextIO
        Where the start banner and status lines go.
    surface : SurfaceFactory, optional
        Builds the web server when ``web.enabled``; None serves nothing.
    """

    def __init__(
        self, cfg: EngineConfig, out: TextIO = sys.stdout, surface: SurfaceFactory | None = None
    ) -> None:
        self.cfg = cfg
        self.out = out
        self._surface = surface
        self.started = time.monotonic()
        self.engine = Engine(cfg)
        self.journal = Journal(cfg, self.engine.state.symbols)
        self.journal.on_state = self._on_journal
        self.order_latency = self.journal.latency = LatencyRing()
        self.frame_latency = LatencyRing()
        self.rate = RateMeter()
        self.trades: deque[dict] = deque(maxlen=RECENT_TRADES)
        self.orders: deque[dict] = deque(maxlen=RECENT_ORDERS)
        self.stats = TradeStats()
        #: called with every event, control and feed record (the web's WebSocket hub)
        self.listeners: list[Listener] = []
        self._refusals = RefusalFilter()
        now = time.time_ns()
        self.restored = restore(self.engine.state, cfg.journal.path, trading_day(now, cfg.session))
        self.engine.sinks.append(self._on_events)
        self.engine.controls += [self.journal.control, self._on_control]
        #: the live broker's adapter and the router between it and the kernels, when live
        self.adapter = self.router = None
        if cfg.broker.live:
            self.adapter = live_adapter(cfg, self._broker_alert)
            self.router = Router(self.engine, self.adapter, self.journal, self._publish)
            #: a recheck of the broker after an unknown fill: running, and asked again meanwhile
            self._rechecking = self._recheck_again = False
        else:
            self.engine.paper = PaperBroker(self.engine)
        #: the flight recorder, when ``record.enabled``; its first file opens in ``run()``
        self.recorder = None
        if cfg.record.enabled:
            self.recorder = Recorder(cfg, self.engine.state, self.journal.run_id)
            self.engine.recorder = self.recorder
        self.feed = None
        index = self.engine.state.index
        if cfg.feed.name == "ws":
            self.feed = WsFeed(cfg.feed, index, self.deliver, self._on_feed)
        if cfg.feed.name in ("ws", "broker"):
            # the broker's feed is built once the adapter has started (it needs the session)
            self.engine.state.set_pause(PAUSE_FEED, True)
            self.engine.clock_skew_ns = int(cfg.feed.max_clock_skew_s * 1e9)
        self.stop_event = asyncio.Event()
        self.web = None

    # -- feed side -----------------------------------------------------------------------------

    def deliver(self, batch: TickBatch, n: int, recv_ns: int) -> None:
        """Run ``n`` ticks of ``batch`` through the engine and record the frame's latency."""
        self.engine.process(batch.idx, batch.price, batch.size, batch.ts, n, recv_ns)
        self.frame_latency.record(time.monotonic_ns() - recv_ns)

    def feed_state(self) -> str:
        """Return the feed's state: ``running`` for the sim feed, else the ws client's."""
        return "running" if self.feed is None else self.feed.state

    def _on_feed(self, state: str) -> None:
        self.engine.state.set_pause(PAUSE_FEED, state != "connected")
        url = self.cfg.broker.name if self.cfg.feed.name == "broker" else self.cfg.feed.url
        self.journal.control("feed", state=state, url=url)
        self._publish({"type": "feed", "state": state})

    # -- events --------------------------------------------------------------------------------

    def _on_events(self, rows: np.ndarray, recv_ns: int) -> None:
        submit_ns = time.monotonic_ns()
        symbols = self.engine.state.symbols
        records = block_records(rows, symbols, self.engine.fill_note)
        self.journal.write(records, recv_ns, submit_ns)
        if self.router is not None:
            self.router.on_records(records)
        for record in records:
            if record["type"] in ("entry", "exit", "stop_moved", "intent"):
                self.orders.append(record)
            if self.listeners and self._refusals.keep(record):
                self._publish(record)
        for trade in trade_records(rows, symbols):
            self.stats.add(trade["pnl"])
            self.trades.append(trade)

    def _broker_alert(self, code: str, message: str) -> None:
        self.router.alert(code, message)
        if code != "unknown_order":
            return
        # the broker's position moved without OTrade: check it as at a start, so that a
        # difference stops entries (PAUSE_RECONCILE) until the operator reconciles or adopts
        if self._rechecking:
            self._recheck_again = True
        else:
            self._rechecking = True
            self.router.spawn(self._recheck())

    async def _recheck(self) -> None:
        try:
            while True:
                self._recheck_again = False
                await asyncio.sleep(0)  # after the update that raised the alert is taken
                await reconcile(self.router)
                if not self._recheck_again:
                    return
        finally:
            self._rechecking = False

    def _on_journal(self, error: str | None) -> None:
        # entries stop while a line could be lost; exits run on, their lines held in order
        self.engine.state.set_pause(PAUSE_JOURNAL, error is not None)
        if error is None:
            self.journal.control("journal", state="written")
            message = "the journal is written again; every held line is in it"
        else:
            message = f"cannot write {self.journal.path} ({error}): entries stop, exits run"
        self._publish({"type": "alert", "code": "journal", "message": message})

    def _on_control(self, action: str, **fields) -> None:
        self._publish({"type": "control", "action": action, **fields})

    def _publish(self, record: dict) -> None:
        for listener in self.listeners:
            listener(record)

    # -- operator ------------------------------------------------------------------------------

    async def control(self, action: str, symbol: str | None = None) -> None:
        """Apply an operator action: ``pause``, ``resume``, ``kill``, ``flatten``, and with a
        live broker ``reconcile`` (check the broker again) or ``adopt`` (take its positions).

        ``kill`` also cancels every working paper order, so nothing leaves until ``resume``.

        Raises
        ------
        KeyError
            When ``symbol`` is not traded.
        """
        engine = self.engine
        if action == "pause":
            engine.pause()
        elif action == "resume":
            engine.resume()
        elif action == "kill":
            engine.kill()
            if engine.paper is not None:
                await engine.paper.cancel_all()
        elif action in ("reconcile", "adopt") and self.router is not None:
            engine.announce(action)
            await (reconcile if action == "reconcile" else adopt)(self.router)
        elif action == "flatten":
            if symbol is not None and symbol not in engine.state.index:
                raise KeyError(symbol)
            engine.flatten(symbol)
        else:
            raise ValueError(f"unknown control action {action!r}")

    def patch_strategy(self, changes: dict) -> EngineConfig:
        """Validate ``{"strategy": {...}, "bracket": {...}}`` and apply it from the next tick.

        Raises
        ------
        ConfigError
            Naming the first bad field; nothing is applied.
        """
        unknown = set(changes) - {"strategy", "bracket"}
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(f"{name}: only strategy and bracket can change", path=name)
        merged = orjson.loads(dump_config(self.cfg))
        for section, values in changes.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{section}: must be an object", path=section)
            merged[section].update(values)
        # validated as decoded: the request's JSON may hold what orjson cannot write back
        # (integers beyond 64 bits), which the models refuse by name
        cfg = validate_config(merged, "PATCH /api/strategy")
        self.cfg = self.engine.cfg = cfg
        if self.recorder is not None:
            sections = {name: merged[name] for name in ("strategy", "bracket")}
            self.recorder.event("strategy", **sections)
        self.engine.state.apply_strategy(cfg)
        for listener in self.engine.controls:  # the journal and the page, as any control
            listener("strategy", changes=changes)
        return cfg

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Feed, trade, serve and report until ``stop()``; then journal the stop and close."""
        if self.cfg.web.enabled and self._surface is not None:
            try:
                self.web = self._surface(self)
            except BaseException:
                self.journal.close()
                raise
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop)
        noted = {} if self.journal.repaired is None else {"repaired": self.journal.repaired}
        if self.recorder is not None:
            self.recorder.open(self._day())
            noted["recording"] = str(self.recorder.path)
        self.journal.control("start", restored=self.restored, **noted)
        tasks = []
        if self.adapter is not None:
            try:
                await self.adapter.start()
                await reconcile(self.router)
            except BaseException:
                await self.adapter.close()
                self.journal.close()
                raise
            tasks.append(asyncio.create_task(self.router.follow()))
            if self.cfg.feed.name == "broker":
                state = self.engine.state
                self.feed = self.adapter.market_feed(state.index, self.deliver, self._on_feed)
        # everything built so far lives as long as the process: keeping it out of the
        # collector's generations spares the ticks a full collection of it (tens of ms here)
        gc.collect()
        gc.freeze()
        tasks.append(asyncio.create_task(self._report()))
        if self.web is not None:
            await self.web.start()
        feed = self.feed.run() if self.feed is not None else self._sim()
        tasks.append(asyncio.create_task(feed))
        try:
            await self.stop_event.wait()
        finally:
            if self.feed is not None:
                self.feed.stop()
            if self.web is not None:
                await self.web.stop(WEB_STOP_S)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.adapter is not None:
                await self.router.close()
                await self.adapter.close()
            self.journal.control("stop", ticks=self.engine.state.account_int(layout.A_TICKS))
            self.journal.close()
            if self.recorder is not None:
                self.recorder.close()

    def _day(self) -> str:
        return trading_day(time.time_ns(), self.cfg.session).isoformat()

    def stop(self) -> None:
        """Ask the loop to stop after the batch in flight."""
        self.stop_event.set()

    async def _sim(self) -> None:
        cfg = self.cfg
        instruments = cfg.instruments
        feed = SimFeed(
            [inst.symbol for inst in instruments],
            [inst.tick_size for inst in instruments],
            [inst.sim_start_price for inst in instruments],
            seed=cfg.feed.seed,
            ticks_per_second=cfg.feed.ticks_per_second,
            step_ticks=cfg.feed.sim_step_ticks,
            start_ts=time.time_ns(),
        )
        batch = TickBatch(cfg.state.chunk_ticks)
        rate = cfg.feed.ticks_per_second
        started = time.monotonic()
        while True:
            due = int((time.monotonic() - started) * rate) - feed.ticks_emitted
            n = feed.fill(batch, min(max(due, 0), batch.capacity))
            if n:
                self.deliver(batch, n, time.monotonic_ns())
            await asyncio.sleep(POLL_S)

    async def _report(self) -> None:
        state = self.engine.state
        while True:
            await asyncio.sleep(1.0)
            if not self.journal.writable:
                self.journal.flush()  # try the held lines again
            if self.recorder is not None:
                self.recorder.roll(self._day())
            rate = self.rate.sample(state.account_int(layout.A_TICKS))
            # a console on a full disk must not end this loop: the journal's retry goes on
            with contextlib.suppress(OSError):
                print(status_line(self, rate), file=self.out, flush=True)


def status_line(runtime: Runtime, ticks_per_s: float) -> str:
    """Return the one-line status: ticks/s, positions, P&L, feed and halts."""
    state = runtime.engine.state
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
        f" | feed {runtime.feed_state()}"
        f" | halt {state.halt_reason() or 'none'}"
    )
