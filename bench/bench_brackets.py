"""Benchmark: a live bracket at each broker's fake: entry fill -> both legs, leg fill -> cancel.

For each fake (Kite, Upstox, ProjectX) the engine, the real adapter and the router run in this
process on uvloop, wired by :class:`engine.live.Runtime` itself as ``run.py`` wires them: its
event sink (``event_record``, the journal, ``router.on_records``), ``adapter.start()``,
``reconcile(router)``, a task on ``router.follow()`` and the broker's market feed (which carries
Kite's order messages). The web server is off. The fake runs in a thread of this process.

A round feeds the engine ``Engine.process`` ticks that cross the EMAs (strategy fast 1, slow 2)
and sets the same price at the fake, so the market entry fills there; once both legs rest,
after a random pause, the price moves through the target, which the fake fills. Rounds
alternate long and short (each target's price is the next round's crossing the other way).
Two figures per round, both between stamps taken on the fake's side with ``time.monotonic_ns()``
(one clock for the process):

- entry -> legs: the fake filling the entry -> the fake receiving the later of the two leg
  placements (stop and target);
- fill -> cancel: the fake filling the target -> the fake receiving the cancel of the stop.

Fills are stamped in subclasses of the fakes as they fill (before the fake reports them),
requests as the fake's handler records them; the fakes themselves are not changed. One thing
the subclasses add that a real broker has and the fake lacks: ProjectX's hub keep-alive pings
(:meth:`TimedProjectX.keepalive`).

What bounds them differs by broker: Kite pushes order updates on the ticker; Upstox has no
order stream here and the adapter polls the order book (every 0.5 s while an order is open,
at once after a placement); ProjectX pushes them on the user hub, with a 1 s poll as a backup.
The legs rest a random 0..:data:`HOLD_S` s before the target fills, so a polled fill meets
every phase of the poll instead of one fixed offset. Rounds start only when the adapter's
client-side rate limits have room for a whole round (Kite and Upstox 10 orders/s and 400 or
500 a minute, ProjectX 200 requests a minute), so no figure waits on a limiter.

The first :data:`WARMUP` rounds are not counted, and the kernels are compiled (or loaded from
numba's cache) before the runtime starts, so no compile lands in a figure. Under
``--benchmark-disable`` a few rounds run with short pauses and only the joins are checked.
"""

from __future__ import annotations

import asyncio
import gc
import io
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
import pytest
import uvloop

from engine.brokers.kite.orders import POLL_INTERVAL_S as KITE_POLL_S
from engine.brokers.projectx.poll import POLL_INTERVAL_S as PROJECTX_POLL_S
from engine.brokers.upstox.orders import POLL_INTERVAL_S as UPSTOX_POLL_S
from engine.config import EngineConfig, parse_config
from engine.core import Engine
from engine.live import Runtime
from kernels import layout
from tests.fakes.kite import FakeKite
from tests.fakes.kite_orders import OPEN_STATUSES, KiteOrderBook
from tests.fakes.projectx import FakeProjectX
from tests.fakes.upstox import FakeUpstox
from tests.fakes.upstox_exchange import FINAL

#: measured rounds per broker, and in a smoke run
ROUNDS, SMOKE_ROUNDS = 100, 2
#: rounds run before the measured ones (warm connections, first calls), and in a smoke run
WARMUP, SMOKE_WARMUP = 4, 1
#: the legs rest a random 0..HOLD_S seconds before the target fills (SMOKE_HOLD_S when smoke)
HOLD_S, SMOKE_HOLD_S = 1.0, 0.05
#: longest wait for any one step of a round, seconds
WAIT_S = 5.0
#: seconds between the keep-alive pings a real server sends on idle streams (SignalR: 15 s)
KEEPALIVE_S = 10.0
#: seconds between checks while waiting
CHECK_S = 0.002
#: requests a round may send, kept free in a rate-limit window before a round starts: its order
#: requests (entry, two legs, a cancel), and every request (polls too) for a limit counting all
ROUND_ORDERS, ROUND_REQUESTS = 4, 16
#: every round enters here; its target is TARGET_AWAY beyond, its stop STOP_AWAY behind
ENTRY, TARGET_AWAY, STOP_AWAY = 101.0, 1.0, 0.5
#: the price of the ticks before the first round
START = 100.0
#: environment variables the bench puts the fakes' credentials in
KITE_KEY_ENV, KITE_TOKEN_ENV = "OTRADE_BENCH_KITE_API_KEY", "OTRADE_BENCH_KITE_TOKEN"
UPSTOX_TOKEN_ENV = "OTRADE_BENCH_UPSTOX_TOKEN"
PX_USER_ENV, PX_KEY_ENV = "OTRADE_BENCH_PROJECTX_USER", "OTRADE_BENCH_PROJECTX_KEY"
#: the instruments traded
KITE_INFY = {"tradingsymbol": "INFY", "exchange": "NSE", "instrument_token": 408065}
UPSTOX_INFY = "NSE_EQ|INE009A01021"
PX_MNQ = "CON.F.US.MNQ.H25"
#: broker order types -> the engine's
KINDS = {"MARKET": "market", "LIMIT": "limit", "SL-M": "stop", "SL": "stop_limit"}
PX_KINDS = {1: "limit", 2: "market", 3: "stop_limit", 4: "stop"}


@dataclass(frozen=True, slots=True)
class Sent:
    """One order request as the fake received it."""

    #: ``time.monotonic_ns()`` when the fake's handler recorded it
    ns: int
    #: ``place``, ``modify`` or ``cancel``
    op: str
    #: the engine's order type of a placement (``market``, ``limit``, ``stop``), else None
    kind: str | None
    #: +1 buy, -1 sell (0 when the request does not say)
    side: int
    tag: str | None
    #: the order a modify or cancel is for
    order_id: str | None


class Probe(Protocol):
    """What the bench reads from a timed fake; every attribute is filled on the fake's thread."""

    #: the order requests received, in order
    sent: list[Sent]
    #: ``(monotonic ns, is an order request)`` of every REST request received
    stamps: list[tuple[int, bool]]
    #: client tag -> the fake's order id
    ids: dict[str, str]
    #: order id -> ``time.monotonic_ns()`` when it filled completely
    fills: dict[str, int]
    #: the adapter's client-side limits that the measured requests wait on:
    #: (requests, window s, whether only order requests count)
    limits: tuple[tuple[int, float, bool], ...]

    def move(self, price: float) -> None:
        """Trade at ``price``: set the last price and match the resting orders (blocking)."""
        ...

    def open_orders(self) -> int:
        """Return how many orders are open at the fake (blocking)."""
        ...

    def keepalive(self) -> None:
        """Send what the real server sends on idle streams to keep them open (blocking)."""
        ...


class _Stamped(list):
    """A fake's request list that tells ``note`` of every request as the fake records it."""

    def __init__(self, note: Callable[[int, dict], None]) -> None:
        super().__init__()
        self.note = note

    def append(self, item: dict) -> None:
        self.note(time.monotonic_ns(), item)
        super().append(item)


# -- the timed fakes ------------------------------------------------------------------------------


class _TimedKiteBook(KiteOrderBook):
    def __init__(self, instruments: dict, ticker) -> None:
        super().__init__(instruments, ticker)
        self.ids: dict[str, str] = {}
        self.fills: dict[str, int] = {}

    def place(self, variety: str, form: dict):
        response = super().place(variety, form)
        if response.status_code == 200 and form.get("tag"):
            self.ids[form["tag"]] = str(orjson.loads(response.body)["data"]["order_id"])
        return response

    def _fill(self, order: dict, price: float) -> None:
        now = time.monotonic_ns()
        super()._fill(order, price)  # sends the order message on the ticker
        if order["status"] == "COMPLETE":
            self.fills.setdefault(order["order_id"], now)


class TimedKite(FakeKite):
    """FakeKite trading INFY, stamping fills and order requests."""

    limits = ((10, 1.0, True), (400, 60.0, True))

    def __init__(self) -> None:
        super().__init__([{**KITE_INFY, "last_price": START}])
        self.book = _TimedKiteBook(self.instruments, self.ticker)
        self.ids, self.fills = self.book.ids, self.book.fills
        self.sent: list[Sent] = []
        self.stamps: list[tuple[int, bool]] = []

    def __enter__(self) -> TimedKite:
        super().__enter__()
        return self

    async def record(self, request) -> dict:
        entry = await super().record(request)
        ns = int(entry["ts"] * 1e9)
        op = {"POST": "place", "PUT": "modify", "DELETE": "cancel"}.get(entry["method"])
        is_order = op is not None and entry["path"].startswith("/orders")
        self.stamps.append((ns, is_order))
        if is_order:
            form = entry["form"]
            side = {"BUY": 1, "SELL": -1}.get(form.get("transaction_type", ""), 0)
            order_id = None if op == "place" else entry["path"].rsplit("/", 1)[-1]
            kind = KINDS.get(form.get("order_type", "")) if op == "place" else None
            self.sent.append(Sent(ns, op, kind, side, form.get("tag"), order_id))
        return entry

    def move(self, price: float) -> None:
        """Set INFY's last price and match its orders (no ticker packet)."""
        self.set_ltp("INFY", price)

    def open_orders(self) -> int:
        """Return how many orders are open at the fake."""
        return self._call(
            lambda: sum(o["status"] in OPEN_STATUSES for o in self.book.orders.values())
        )

    def keepalive(self) -> None:
        """Nothing: an idle ticker stays open."""

    def sections(self, tmp: Path) -> tuple[dict, dict[str, str]]:
        """Return the config sections trading through this fake, and the environment."""
        broker = {
            "name": "kite",
            "base_url": self.rest_url,
            "ws_url": self.ws_url,
            "api_key_env": KITE_KEY_ENV,
            "access_token_env": KITE_TOKEN_ENV,
            "token_path": str(tmp / "kite_token"),
        }
        instrument = {"symbol": "INFY", "tick_size": 0.05, "kite": KITE_INFY}
        env = {KITE_KEY_ENV: self.api_key, KITE_TOKEN_ENV: self.access_token}
        return {"broker": broker, "instruments": [instrument]}, env


#: Upstox's order endpoints -> the request's operation
UPSTOX_OPS = {
    "/v2/order/place": "place",
    "/v2/order/modify": "modify",
    "/v2/order/cancel": "cancel",
}


class TimedUpstox(FakeUpstox):
    """FakeUpstox trading INFY, stamping fills and order requests."""

    limits = ((10, 1.0, True), (500, 60.0, True), (2000, 1800.0, True))

    def __init__(self) -> None:
        super().__init__({UPSTOX_INFY: "INFY"})
        self.ids: dict[str, str] = {}
        self.fills: dict[str, int] = {}
        self.sent: list[Sent] = []
        self.stamps: list[tuple[int, bool]] = []
        self.requests = _Stamped(self._note)

    def __enter__(self) -> TimedUpstox:
        super().__enter__()
        return self

    def _note(self, ns: int, entry: dict) -> None:
        op = UPSTOX_OPS.get(entry["path"])
        self.stamps.append((ns, op is not None))
        if op is None:
            return
        body = entry["json"] or {}
        side = {"BUY": 1, "SELL": -1}.get(body.get("transaction_type", ""), 0)
        kind = KINDS.get(body.get("order_type", "")) if op == "place" else None
        order_id = entry["query"].get("order_id") if op == "cancel" else body.get("order_id")
        self.sent.append(Sent(ns, op, kind, side, body.get("tag"), order_id))

    def _create(self, body: dict) -> str:
        order_id = super()._create(body)
        if body.get("tag"):
            self.ids[body["tag"]] = order_id
        return order_id

    def _match(self, key: str) -> None:
        now = time.monotonic_ns()
        waiting = [o for o in self.book.values() if o["status"] not in FINAL]
        super()._match(key)
        for order in waiting:
            if order["status"] == "complete":
                self.fills.setdefault(order["order_id"], now)

    def move(self, price: float) -> None:
        """Set INFY's last price and match its orders (no feed frame)."""
        self.set_ltp(UPSTOX_INFY, price)

    def open_orders(self) -> int:
        """Return how many orders are open at the fake."""
        with self._lock:
            return sum(o["status"] not in FINAL for o in self.book.values())

    def keepalive(self) -> None:
        """Nothing: an idle feed stays open."""

    def sections(self, tmp: Path) -> tuple[dict, dict[str, str]]:
        """Return the config sections trading through this fake, and the environment."""
        broker = {"name": "upstox", "base_url": self.rest_url, "access_token_env": UPSTOX_TOKEN_ENV}
        instrument = {
            "symbol": "INFY",
            "tick_size": 0.05,
            "upstox": {"instrument_key": UPSTOX_INFY},
        }
        env = {UPSTOX_TOKEN_ENV: self.access_token}
        return {"broker": broker, "instruments": [instrument]}, env


#: ProjectX's order endpoints -> the request's operation
PX_OPS = {"/api/Order/place": "place", "/api/Order/modify": "modify", "/api/Order/cancel": "cancel"}


class TimedProjectX(FakeProjectX):
    """FakeProjectX trading MNQ, stamping fills and order requests."""

    limits = ((200, 60.0, False),)

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.fills: dict[str, int] = {}
        self.sent: list[Sent] = []
        self.stamps: list[tuple[int, bool]] = []
        self.requests = _Stamped(self._note)

    def _note(self, ns: int, record: dict) -> None:
        op = PX_OPS.get(record["path"])
        self.stamps.append((ns, op is not None))
        if op is None:
            return
        body = record["body"] or {}
        side = {0: 1, 1: -1}.get(body.get("side"), 0)
        kind = PX_KINDS.get(body.get("type")) if op == "place" else None
        order_id = None if body.get("orderId") is None else str(body["orderId"])
        self.sent.append(Sent(ns, op, kind, side, body.get("customTag"), order_id))

    def _new_order(self, contract_id: str, kind: int, side: int, size: int, tag) -> dict:
        order = super()._new_order(contract_id, kind, side, size, tag)
        if tag:
            self.ids[tag] = str(order["id"])
        return order

    def _fill(self, order: dict, size: int, price: float) -> None:
        now = time.monotonic_ns()
        super()._fill(order, size, price)  # pushes the trade and the order on the user hub
        if order["status"] == 2:
            self.fills.setdefault(str(order["id"]), now)

    def _trade(self, price: float) -> None:
        self.prices[PX_MNQ] = price
        self._match(PX_MNQ)

    def move(self, price: float) -> None:
        """Set MNQ's last price and match its orders (no market-hub event)."""
        self._in_loop(self._trade, price)

    def open_orders(self) -> int:
        """Return how many orders are open at the fake."""
        return self.snapshot(lambda fake: sum(o["status"] == 1 for o in fake.book.values()))

    def keepalive(self) -> None:
        """Ping both hubs, as ProjectX's SignalR server does every 15 s (the fake does not):
        with no market data pushed, the market hub would fall silent and the adapter drop it
        after 30 s, pausing entries while it reconnects."""
        self.ping("market")
        self.ping("user")

    def sections(self, tmp: Path) -> tuple[dict, dict[str, str]]:
        """Return the config sections trading through this fake, and the environment."""
        broker = {
            "name": "projectx",
            "base_url": self.rest_url,
            "ws_url": self.ws_url,
            "user_name_env": PX_USER_ENV,
            "api_key_env": PX_KEY_ENV,
        }
        instrument = {
            "symbol": "MNQ",
            "tick_size": 0.25,
            "point_value": 2.0,
            "projectx": {"contract_search": "MNQ"},
        }
        env = {PX_USER_ENV: self.user_name, PX_KEY_ENV: self.api_key}
        return {"broker": broker, "instruments": [instrument]}, env


@dataclass(frozen=True)
class BrokerCase:
    """One broker fake and what the report says about how its adapter hears of fills."""

    fake: Callable[[], Any]
    updates: str
    poll_s: float


CASES = {
    "kite": BrokerCase(TimedKite, "ticker order messages", KITE_POLL_S),
    "upstox": BrokerCase(TimedUpstox, "order-book poll", UPSTOX_POLL_S),
    "projectx": BrokerCase(TimedProjectX, "user hub", PROJECTX_POLL_S),
}


def _config(tmp: Path, sections: dict) -> EngineConfig:
    tick = sections["instruments"][0]["tick_size"]
    return parse_config(
        orjson.dumps(
            {
                **sections,
                "strategy": {"fast": 1, "slow": 2, "quantity": 1},
                "bracket": {
                    "target_ticks": round(TARGET_AWAY / tick),
                    "stop_ticks": round(STOP_AWAY / tick),
                },
                "risk": {"max_position": 10**6, "max_orders_per_second": 10**6},
                "session": {"enabled": False},
                "feed": {"name": "broker", "stale_after_s": 3600},
                "journal": {"path": str(tmp / "journal.jsonl")},
                "web": {"enabled": False},
            }
        )
    )


# -- driving the engine ---------------------------------------------------------------------------


class _Ticks:
    """One-tick batches of instrument 0 into an engine, ``Engine.process`` as a feed calls it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.idx = np.zeros(1, np.int64)
        self.price = np.zeros(1, np.float64)
        self.size = np.ones(1, np.float64)
        self.ts = np.zeros(1, np.int64)

    def send(self, price: float) -> None:
        self.price[0] = price
        self.ts[0] = max(int(self.ts[0]) + 1, time.time_ns())
        self.engine.process(self.idx, self.price, self.size, self.ts, 1, time.monotonic_ns())


def _warm_kernels(cfg: EngineConfig) -> None:
    """Compile or load every kernel a round calls, on an engine of the same config."""
    engine = Engine(cfg)
    ticks = _Ticks(engine)
    for price in (START, START, START, ENTRY):
        ticks.send(price)
    ts = int(ticks.ts[0])
    engine.broker_fill(0, layout.LONG, 1, ENTRY, layout.R_NONE, ts)
    engine.broker_fill(0, layout.SHORT, 1, ENTRY + TARGET_AWAY, layout.R_TARGET, ts)


async def _until(check: Callable[[], Any], what: str, running: asyncio.Task) -> Any:
    """Return ``check()`` once it is truthy; fail after WAIT_S or if the runtime stopped."""
    deadline = time.monotonic() + WAIT_S
    while True:
        value = check()
        if value:
            return value
        if running.done():
            running.result()
            raise AssertionError(f"the runtime stopped before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        await asyncio.sleep(CHECK_S)


def _recent(probe: Probe, window_s: float, orders_only: bool) -> int:
    since = time.monotonic_ns() - int(window_s * 1e9)
    count = 0
    for ns, is_order in reversed(probe.stamps):
        if ns < since:
            break
        count += is_order or not orders_only
    return count


async def _room(probe: Probe) -> None:
    """Wait until every client-side limit of the adapter has room for one whole round."""
    while any(
        _recent(probe, window, orders) > limit - (ROUND_ORDERS if orders else ROUND_REQUESTS)
        for limit, window, orders in probe.limits
    ):
        await asyncio.sleep(0.05)


async def _keepalive(probe: Probe) -> None:
    while True:
        await asyncio.sleep(KEEPALIVE_S)
        await asyncio.to_thread(probe.keepalive)


def _placed(probe: Probe, start: int, kind: str) -> Sent | None:
    return next((s for s in probe.sent[start:] if s.op == "place" and s.kind == kind), None)


async def _round(
    runtime: Runtime, probe: Probe, ticks: _Ticks, side: int, hold_s: float, running: asyncio.Task
) -> tuple[int, int]:
    """Trade one bracket (``side`` +1 long, -1 short); return its two latencies in ns."""
    start = len(probe.sent)
    target_price = ENTRY + side * TARGET_AWAY
    state, router = runtime.engine.state, runtime.router
    await _until(lambda: state.halt_reason() is None, "entries open", running)
    await asyncio.to_thread(probe.move, ENTRY)
    ticks.send(ENTRY)  # crosses the EMAs: the entry intent

    entry = await _until(lambda: _placed(probe, start, "market"), "the entry's placement", running)
    assert entry.side == side, f"the entry went {entry.side}, the round wanted {side}"
    fill_ns = await _until(
        lambda: probe.fills.get(probe.ids.get(entry.tag or "", "")), "the entry's fill", running
    )

    def legs() -> tuple[Sent, Sent] | None:
        target, stop = _placed(probe, start, "limit"), _placed(probe, start, "stop")
        return (target, stop) if target and stop else None

    target, stop = await _until(legs, "both legs' placements", running)
    assert target.side == stop.side == -side, "the legs close the position"
    entry_legs = max(target.ns, stop.ns) - fill_ns
    assert entry_legs > 0, "the legs reached the fake after the entry filled"

    tags = runtime.adapter.tags
    await _until(lambda: target.tag in tags and stop.tag in tags, "the legs' ids", running)
    target_id, stop_id = probe.ids[target.tag or ""], probe.ids[stop.tag or ""]
    await asyncio.sleep(hold_s)
    ticks.send(target_price)
    await asyncio.to_thread(probe.move, target_price)
    target_fill = await _until(lambda: probe.fills.get(target_id), "the target's fill", running)

    def cancel() -> Sent | None:
        return next(
            (s for s in probe.sent[start:] if s.op == "cancel" and s.order_id == stop_id), None
        )

    fill_cancel = (await _until(cancel, "the stop's cancel", running)).ns - target_fill
    assert fill_cancel > 0, "the stop's cancel reached the fake after the target filled"

    await _until(
        lambda: (
            not state.positions() and state.book[0, layout.I_PENDING] == 0 and not router.working()
        ),
        "the engine flat with nothing working",
        running,
    )
    assert await asyncio.to_thread(probe.open_orders) == 0, "nothing rests at the fake"
    return entry_legs, fill_cancel


async def _session(
    probe: Probe, cfg: EngineConfig, rounds: int, warmup: int, hold_s: float
) -> tuple[list[int], list[int]]:
    """Run ``warmup + rounds`` rounds through a Runtime; return the measured rounds' latencies."""
    _warm_kernels(cfg)
    runtime = Runtime(cfg, io.StringIO())
    running = asyncio.create_task(runtime.run())
    keepalive = asyncio.create_task(_keepalive(probe))
    rng = random.Random(9)
    entry_legs: list[int] = []
    fill_cancel: list[int] = []
    try:
        await _until(
            lambda: runtime.feed is not None and runtime.feed_state() == "connected",
            "the broker's feed connected",
            running,
        )
        assert runtime.engine.state.halt_reason() is None, "entries are open"
        ticks = _Ticks(runtime.engine)
        await asyncio.to_thread(probe.move, START)
        for _ in range(3):
            ticks.send(START)
        for k in range(warmup + rounds):
            await _room(probe)
            side = layout.LONG if k % 2 == 0 else layout.SHORT
            sample = await _round(runtime, probe, ticks, side, rng.uniform(0, hold_s), running)
            if k >= warmup:
                entry_legs.append(sample[0])
                fill_cancel.append(sample[1])
    finally:
        keepalive.cancel()
        runtime.stop()
        await running
        gc.unfreeze()  # the runtime froze everything it had built
    return entry_legs, fill_cancel


def _run(probe: Probe, cfg: EngineConfig, rounds: int, warmup: int, hold_s: float):
    """Run :func:`_session` on uvloop, keeping the process's SIGINT and SIGTERM handlers.

    The runtime installs its own (as ``run.py`` does) and uvloop leaves them behind when the
    loop closes, which would swallow a later Ctrl-C in the same pytest process.
    """
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return uvloop.run(_session(probe, cfg, rounds, warmup, hold_s))
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)


def _ms(ns: list[int], q: float) -> float:
    return float(np.percentile(np.array(ns, np.float64), q) / 1e6)


@pytest.mark.benchmark(group="brackets")
@pytest.mark.parametrize("broker", list(CASES))
def test_bracket_latency(benchmark, broker, tmp_path, monkeypatch, bench_disabled: bool) -> None:
    case = CASES[broker]
    rounds = SMOKE_ROUNDS if bench_disabled else ROUNDS
    warmup = SMOKE_WARMUP if bench_disabled else WARMUP
    hold_s = SMOKE_HOLD_S if bench_disabled else HOLD_S
    runs: list[tuple[list[int], list[int]]] = []
    with case.fake() as fake:
        sections, env = fake.sections(tmp_path)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        cfg = _config(tmp_path, sections)
        benchmark.pedantic(
            lambda: runs.append(_run(fake, cfg, rounds, warmup, hold_s)),
            rounds=1,
            iterations=1,
        )
    entry_legs, fill_cancel = runs[-1]
    assert len(entry_legs) == len(fill_cancel) == rounds
    benchmark.extra_info.update(
        kind="brackets",
        broker=broker,
        rounds=rounds,
        updates=case.updates,
        poll_s=case.poll_s,
        hold_s=hold_s,
        entry_legs_p50_ms=_ms(entry_legs, 50),
        entry_legs_p99_ms=_ms(entry_legs, 99),
        entry_legs_max_ms=_ms(entry_legs, 100),
        fill_cancel_p50_ms=_ms(fill_cancel, 50),
        fill_cancel_p99_ms=_ms(fill_cancel, 99),
        fill_cancel_max_ms=_ms(fill_cancel, 100),
    )
