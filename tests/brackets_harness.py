"""OTrade's live stack against each broker's fake, for the stateful bracket test.

:class:`Session` is what ``run.py`` runs for a live broker, in this process: an Engine, its
Journal (restored from the same file at every start), the broker's adapter from
``engine.brokers.live_adapter``, the Router between them, the adapter's order stream followed
by ``router.follow()`` and the adapter's own market feed (its ticks are not used: the test feeds
the engine itself, and the feed is there because Kite's ticker also carries order updates and
because a test drops it). The engine's event sink is Runtime's: decode, journal, route.
:meth:`Session.kill` is a SIGKILL as far as the broker can tell: tasks and connections go,
nothing is cancelled at the broker, no goodbye is journaled.

The session runs on its own uvloop in a :class:`LoopThread`, so a hypothesis state machine
(whose rules are plain functions) can drive it between rules while its tasks keep running.

The drivers of the brokers' fakes, which read the broker's truth into :class:`Truth`, are in
:mod:`tests.bracket_drivers`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import uvloop

from engine.brokers import live_adapter
from engine.brokers.routing import Router, reconcile
from engine.config import EngineConfig
from engine.core import Engine
from engine.events import block_records
from engine.journal import TAG_PREFIX, Journal, restore
from engine.sessions import trading_day
from kernels import layout

#: the strategy: fast 1 / slow 2 tick EMAs, so every reversal of the price is a signal
STRATEGY = {"fast": 1, "slow": 2, "quantity": 3}
#: the bracket, in ticks from the entry's fill
BRACKET = {"target_ticks": 4, "stop_ticks": 2}
#: no risk limit gets in the way of the brackets
RISK = {"max_position": 10, "max_orders_per_second": 1_000_000}
#: seconds a call into the session may take before the test fails
CALL_TIMEOUT_S = 30.0
#: order statuses' kinds as :class:`Resting` names them
STOP_KINDS = ("stop", "stop_limit")


# -- the broker's truth --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resting:
    """One open order at the broker, in the broker's own terms made uniform."""

    order_id: str
    tag: str
    #: +1 buy, -1 sell
    side: int
    #: ``market``, ``limit``, ``stop`` or ``stop_limit``
    kind: str
    #: units still to fill
    open_qty: int
    #: the limit price of a limit, the trigger of a stop, None for a market order
    price: float | None

    @property
    def ours(self) -> bool:
        """Whether OTrade placed it (its tag starts with ``OT``)."""
        return self.tag.startswith(TAG_PREFIX)

    def describe(self) -> str:
        """Return a short line naming the order (for failure messages)."""
        side = "buy" if self.side > 0 else "sell"
        return (
            f"{self.kind} {side} {self.open_qty} @ {self.price} tag {self.tag} id {self.order_id}"
        )


@dataclass(frozen=True, slots=True)
class Truth:
    """What the broker holds: the signed position, its average price, the realized P&L computed
    from the broker's fills (in currency), and the open orders of the instrument."""

    net: int
    avg: float
    realized: float
    resting: tuple[Resting, ...]


def ledger(fills: Iterable[tuple[int, float]], point_value: float) -> tuple[int, float, float]:
    """Return the position, its average price and the realized P&L of a sequence of fills.

    Average-cost accounting, as the engine books fills: adding moves the average, reducing
    realizes ``(price - average) * units`` on the position's side, and a fill beyond the position
    opens the other side at its own price.

    Parameters
    ----------
    fills : iterable of (int, float)
        Signed units (+ bought, - sold) and price of each fill, in the broker's order.
    point_value : float
        Currency per 1.0 of price per unit.

    Returns
    -------
    tuple of (int, float, float)
        Signed position, average price (0.0 when flat), realized P&L.
    """
    net, avg, realized = 0, 0.0, 0.0
    for signed, price in fills:
        if net == 0 or (net > 0) == (signed > 0):
            avg = (avg * abs(net) + price * abs(signed)) / (abs(net) + abs(signed))
            net += signed
            continue
        closed = min(abs(signed), abs(net))
        realized += (price - avg) * closed * (1 if net > 0 else -1) * point_value
        after = net + signed
        if after == 0:
            avg = 0.0
        elif (after > 0) != (net > 0):
            avg = price
        net = after
    return net, avg, realized


# -- the session's loop --------------------------------------------------------------------------


class LoopThread:
    """A uvloop running in a daemon thread; :meth:`run` runs a coroutine on it and waits."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="session", daemon=True)
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, Any], timeout: float = CALL_TIMEOUT_S) -> Any:
        """Run ``work`` on the loop and return its result (raising what it raises)."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def call(self, fn, *args) -> Any:
        """Call ``fn(*args)`` on the loop (between its tasks' steps) and return its result."""

        async def call() -> Any:
            return fn(*args)

        return self.run(call())

    def close(self) -> None:
        """Cancel what still runs on the loop, stop it and join the thread."""
        if self.loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_all(), 10.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10.0)
            self.loop.close()


# -- OTrade's live stack ---------------------------------------------------------------------------


class Session:
    """Engine + journal + router + adapter wired as ``engine.live.Runtime`` wires them.

    Parameters
    ----------
    cfg : EngineConfig
        A live broker's config; its journal file is kept across restarts.
    """

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.engine: Engine | None = None
        self.journal: Journal | None = None
        self.adapter = None
        self.router: Router | None = None
        self.feed = None
        #: every alert and published record of every run, newest last (for failure messages)
        self.alerts: deque[tuple[str, str]] = deque(maxlen=100)
        self.published: deque[dict] = deque(maxlen=100)
        #: the market feed's states, as it reported them
        self.feed_states: list[str] = []
        #: reconcile reports of every start
        self.reconciled: list[dict] = []
        self.starts = 0
        self._tasks: list[asyncio.Task] = []
        self._last_ts = 0
        self._idx = np.zeros(1, np.int64)
        self._price = np.zeros(1, np.float64)
        self._size = np.ones(1, np.float64)
        self._ts = np.zeros(1, np.int64)

    async def start(self) -> None:
        """Start as ``run.py`` does: restore the journal, start the adapter, reconcile, follow."""
        cfg = self.cfg
        self.engine = engine = Engine(cfg)
        self.journal = Journal(cfg, engine.state.symbols)
        restored = restore(engine.state, cfg.journal.path, trading_day(time.time_ns(), cfg.session))
        engine.sinks.append(self._on_events)
        engine.controls.append(self.journal.control)
        self.adapter = live_adapter(cfg, lambda code, message: self.router.alert(code, message))
        self.router = Router(engine, self.adapter, self.journal, self._publish)
        self.journal.control("start", restored=restored)
        try:
            await self.adapter.start()
            self.reconciled.append(await reconcile(self.router))
        except BaseException:
            await self.adapter.close()
            self.journal.close()
            raise
        self._tasks.append(asyncio.create_task(self.router.follow()))
        self.feed = self.adapter.market_feed(
            engine.state.index, self._discard_ticks, self.feed_states.append
        )
        self._tasks.append(asyncio.create_task(self.feed.run()))
        self.starts += 1

    async def kill(self) -> None:
        """Die as under SIGKILL: stop every task and connection, cancel nothing at the broker,
        journal no stop; the engine is discarded."""
        if self.feed is not None:
            self.feed.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.router is not None:
            await self.router.close()
        if self.adapter is not None:
            await self.adapter.close()
        if self.journal is not None:
            self.journal.close()
        self.engine = self.journal = self.adapter = self.router = self.feed = None

    async def restart(self) -> None:
        """SIGKILL, then start again on the same journal."""
        await self.kill()
        await self.start()

    def tick(self, price: float) -> None:
        """Run one tick at ``price`` through the engine (call on the session's loop)."""
        ts = max(time.time_ns(), self._last_ts + 1)
        self._last_ts = ts
        self._price[0], self._ts[0] = price, ts
        self.engine.process(self._idx, self._price, self._size, self._ts, 1, time.monotonic_ns())

    def snapshot(self) -> dict:
        """Return what the engine and the router claim (call on the session's loop)."""
        state, router = self.engine.state, self.router
        pending = {
            symbol: int(state.book[i, layout.I_PENDING])
            for i, symbol in enumerate(state.symbols)
            if state.book[i, layout.I_PENDING]
        }
        return {
            "positions": state.positions(),
            "realized": state.account(layout.A_REALIZED),
            "halt": state.halt_reason(),
            "pending": pending,
            "working": router.working() if hasattr(router, "working") else [],
            "violations": list(router.violations()) if hasattr(router, "violations") else [],
        }

    # -- Runtime's sink ----------------------------------------------------------------------------

    def _on_events(self, rows: np.ndarray, recv_ns: int) -> None:
        submit_ns = time.monotonic_ns()
        records = block_records(rows, self.engine.state.symbols, self.engine.fill_note)
        self.journal.write(records, recv_ns, submit_ns)
        self.router.on_records(records)

    def _publish(self, record: dict) -> None:
        self.published.append(record)
        if record.get("type") == "alert":
            self.alerts.append((record["code"], record["message"]))

    def _discard_ticks(self, batch, n: int, recv_ns: int) -> None:
        pass


# -- the invariants ------------------------------------------------------------------------------


def broker_violations(symbol: str, truth: Truth) -> list[str]:
    """Return how the broker's own book breaks the bracket invariants (empty when it holds).

    While the broker holds a position there is exactly one stop of OTrade's resting to close
    it (closing side, the position's quantity still open) or an exit market order in flight,
    at most one target, on the closing side and no larger than the position, and nothing else
    of OTrade's; while it is flat, nothing of OTrade's rests.

    Parameters
    ----------
    symbol : str
        The instrument, for the messages.
    truth : Truth
        The broker's book.

    Returns
    -------
    list of str
        One line per broken invariant.
    """
    ours = [order for order in truth.resting if order.ours]
    if truth.net == 0:
        return [f"{symbol}: flat at the broker, yet {o.describe()} rests" for o in ours]
    out = []
    size, closing = abs(truth.net), -1 if truth.net > 0 else 1
    held = f"{symbol}: the broker holds {truth.net:+d} @ {truth.avg:.10g}"
    stops = [o for o in ours if o.kind in STOP_KINDS]
    protective = [o for o in stops if o.side == closing and o.open_qty == size]
    exits = [o for o in ours if o.kind == "market" and o.side == closing]
    targets = [o for o in ours if o.kind == "limit"]
    if len(protective) != 1 and not (exits and len(protective) <= 1):
        shown = "; ".join(o.describe() for o in ours) or "no order of OTrade's"
        out.append(f"{held} with {len(protective)} protective stops and no exit: {shown}")
    for order in stops:
        if order not in protective:
            out.append(f"{held}: a stop that does not protect it rests: {order.describe()}")
    if len(targets) > 1:
        out.append(
            f"{held} with {len(targets)} targets: " + "; ".join(t.describe() for t in targets)
        )
    for order in targets:
        if order.side != closing or order.open_qty > size:
            out.append(f"{held}: a target that does not close it rests: {order.describe()}")
    for order in ours:
        if order.kind == "market" and order.side != closing:
            out.append(f"{held}: a market order that does not close it is open: {order.describe()}")
    return out


def engine_violations(
    symbol: str, truth: Truth, claims: dict, tolerance: float = 1e-6
) -> list[str]:
    """Return where the engine's and the router's claims differ from the broker's truth.

    The engine's position (side, quantity, average price) must be the broker's, its realized
    P&L the one computed from the broker's fills, the router must report no broken invariant
    (``router.violations()``, where it exists), and no entry or exit intent of the engine may
    still await the broker (``I_PENDING``: it blocks the next entry, or the exit never went).

    Parameters
    ----------
    symbol : str
        The instrument.
    truth : Truth
        The broker's book.
    claims : dict
        :meth:`Session.snapshot`.
    tolerance : float
        Absolute tolerance of P&L and prices.

    Returns
    -------
    list of str
        One line per difference.
    """
    out = []
    position = claims["positions"].get(symbol)
    mine = 0
    if position is not None:
        mine = position["qty"] if position["side"] == "long" else -position["qty"]

    def near(a: float, b: float) -> bool:
        return abs(a - b) <= tolerance + 1e-9 * abs(b)

    if mine != truth.net:
        out.append(f"{symbol}: the engine holds {mine:+d}, the broker {truth.net:+d}")
    elif position is not None and not near(position["entry_price"], truth.avg):
        out.append(
            f"{symbol}: the engine's entry price {position['entry_price']:.10g} is not the broker's"
            f" average {truth.avg:.10g}"
        )
    if not near(claims["realized"], truth.realized):
        out.append(
            f"realized P&L: the engine books {claims['realized']:.6f}, the broker's fills"
            f" {truth.realized:.6f}"
        )
    out += [f"router: {violation}" for violation in claims["violations"]]
    if symbol in claims["pending"]:
        what = "an exit" if claims["pending"][symbol] == layout.PENDING_EXIT else "an entry"
        out.append(f"{symbol}: {what} the engine sent still awaits the broker")
    return out
