"""The paper broker through its async interface, with a real engine and tick arrays.

Every test runs the engine on a batch first and then ``PaperBroker.on_ticks`` on the same
arrays, as ``Engine.process`` does once it is wired. The strategy is kept out of the way
(its slow EMA needs far more ticks than a test feeds), so every fill here is a manual one.
Prices are on AAA's binary-exact 0.25 grid, so fill prices compare exactly.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import orjson
import pytest

from engine.brokers import (
    Broker,
    OrderError,
    OrderRequest,
    OrderState,
    OrderUpdate,
    PaperBroker,
)
from engine.config import parse_config
from engine.core import Engine
from engine.events import event_record, trade_records
from engine.journal import Journal, read_journal
from kernels import layout
from kernels import paper as kp

#: 2025-11-21 04:40:00 UTC
T0 = 1_763_700_000_000_000_000
SECOND = 1_000_000_000

#: a strategy that cannot signal within a test's few ticks
QUIET = {"fast": 1000, "slow": 100_000}
#: a second instrument with lots of 25 units on a 0.05 grid
LOTS = {"symbol": "LOT", "tick_size": 0.05, "lot_size": 25, "point_value": 1.0}
AAA = {"symbol": "AAA", "tick_size": 0.25, "lot_size": 1, "point_value": 1.0}
#: the base config: AAA (row 0) and LOT (row 1), the session off, limits far
BASE = {
    "instruments": [AAA, LOTS],
    "strategy": QUIET,
    "risk": {"max_position": 1000, "max_orders_per_second": 1_000_000},
    "session": {"enabled": False},
}


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


class EventLog:
    """An engine sink keeping a copy of every drained event row (the ring is reused)."""

    def __init__(self, symbols: tuple[str, ...]) -> None:
        self.symbols = symbols
        self.blocks: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray, recv_ns: int) -> None:
        self.blocks.append(rows.copy())

    def records(self, kind: str | None = None) -> list[dict]:
        out = [event_record(row, self.symbols) for block in self.blocks for row in block]
        return out if kind is None else [r for r in out if r["type"] == kind]

    def trades(self) -> list[dict]:
        return [t for block in self.blocks for t in trade_records(block, self.symbols)]


class Desk:
    """An engine with its event log, a paper broker on it, and a tick clock."""

    def __init__(self, capacity: int = 64, update_capacity: int = 10_000, **sections) -> None:
        cfg = {**BASE}
        for name, value in sections.items():
            cfg[name] = {**cfg.get(name, {}), **value}
        self.engine = Engine(parse_config(orjson.dumps(cfg)))
        self.state = self.engine.state
        self.log = EventLog(self.state.symbols)
        self.engine.sinks.append(self.log)
        self.broker = PaperBroker(self.engine, capacity, update_capacity)
        self.stream = self.broker.updates()
        self.ts = T0

    def ticks(self, *prices: float, idx: int = 0) -> list[int]:
        """Run one batch of ticks one second apart through the engine, then the broker."""
        rows = []
        for price in prices:
            rows.append((idx, float(price), 1.0, self.ts))
            self.ts += SECOND
        self.batch(rows)
        return [row[3] for row in rows]

    def batch(self, rows: list[tuple[int, float, float, int]]) -> None:
        """Run ``(idx, price, size, ts)`` rows as one batch through the engine, then the broker."""
        idx = np.array([r[0] for r in rows], np.int64)
        price = np.array([r[1] for r in rows], np.float64)
        size = np.array([r[2] for r in rows], np.float64)
        ts = np.array([r[3] for r in rows], np.int64)
        self.engine.process(idx, price, size, ts, len(rows))
        self.broker.on_ticks(idx, price, ts, len(rows), codes=self.state.codes)

    async def updates(self) -> list[OrderUpdate]:
        """Every update queued so far, read through the stream."""
        out = []
        while self.broker.queued_updates:
            out.append(await asyncio.wait_for(anext(self.stream), 5.0))
        return out

    async def kinds(self) -> list[tuple[str, str, str | None]]:
        """(kind, order_id, reason) of every update queued so far."""
        return [(u.kind, u.order.order_id, u.reason) for u in await self.updates()]

    def position(self, symbol: str = "AAA") -> dict | None:
        return self.state.positions().get(symbol)

    async def place(self, side: str, qty: int, type: str = "market", **kw: Any) -> OrderState:
        symbol = kw.pop("symbol", "AAA")
        return await self.broker.place(OrderRequest(symbol, side, qty, type, **kw))  # type: ignore[arg-type]


def mirror(side: str) -> Callable[[float], float]:
    """Map a buy scenario's prices around 100 to the mirrored sell scenario."""
    sign = 1 if side == "buy" else -1
    return lambda price: 100.0 + sign * (price - 100.0)


# -- market orders -----------------------------------------------------------------------------


@run_async
async def test_market_fills_at_the_ltp_plus_slippage_against_the_order() -> None:
    desk = Desk(broker={"slippage_ticks": 2})
    (t,) = desk.ticks(100.0)
    buy = await desk.place("buy", 3, tag="mine")
    assert (buy.status, buy.fill_price, buy.filled_qty, buy.fill_ts) == ("filled", 100.5, 3, t)
    assert buy.tag == "mine"
    assert desk.position()["entry_price"] == 100.5

    sell = await desk.place("sell", 5)
    assert sell.fill_price == 99.5
    position = desk.position()
    assert (position["side"], position["qty"], position["entry_price"]) == ("short", 2, 99.5)
    (exit_,) = desk.log.records("exit")
    assert (exit_["reason"], exit_["qty"], exit_["pnl"]) == ("manual", 3, -3.0)
    assert desk.state.account(layout.A_REALIZED) == -3.0
    assert [k for k, _, _ in await desk.kinds()] == ["accepted", "filled"] * 2


@run_async
async def test_market_without_a_price_is_rejected_but_a_limit_rests() -> None:
    desk = Desk()
    market = await desk.place("buy", 1)
    assert (market.status, market.reason) == ("rejected", "no_price")
    limit = await desk.place("buy", 1, "limit", limit_price=99.0)
    assert limit.status == "working"
    assert await desk.kinds() == [
        ("rejected", market.order_id, "no_price"),
        ("accepted", limit.order_id, None),
    ]
    assert desk.position() is None
    assert desk.log.records() == []


# -- resting orders ----------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["buy", "sell"])
@run_async
async def test_limit_fills_at_its_limit_on_an_exact_touch(side: str) -> None:
    m = mirror(side)
    desk = Desk()
    desk.ticks(m(101.0))
    order = await desk.place(side, 2, "limit", limit_price=m(100.0))
    desk.ticks(m(100.5), m(100.25))
    assert [o.order_id for o in await desk.broker.open_orders()] == [order.order_id]
    (t,) = desk.ticks(m(100.0))
    assert await desk.broker.open_orders() == []
    updates = await desk.updates()
    assert [u.kind for u in updates] == ["accepted", "filled"]
    filled = updates[-1].order
    assert (filled.status, filled.fill_price, filled.fill_ts) == ("filled", m(100.0), t)
    assert desk.position()["entry_price"] == m(100.0)


@pytest.mark.parametrize("side", ["buy", "sell"])
@run_async
async def test_limit_gapped_through_fills_at_the_limit_not_the_better_price(side: str) -> None:
    m = mirror(side)
    desk = Desk()
    desk.ticks(m(101.0))
    await desk.place(side, 1, "limit", limit_price=m(100.0))
    desk.ticks(m(97.5))
    assert desk.position()["entry_price"] == m(100.0)


@run_async
async def test_a_limit_marketable_at_placement_fills_on_the_next_tick_that_satisfies_it() -> None:
    desk = Desk()
    desk.ticks(100.0)
    order = await desk.place("buy", 1, "limit", limit_price=101.0)
    assert order.status == "working"  # not filled against the LTP it was placed at
    desk.ticks(101.5)
    assert desk.position() is None
    desk.ticks(100.75)
    assert desk.position()["entry_price"] == 101.0


@pytest.mark.parametrize("side", ["buy", "sell"])
@run_async
async def test_stop_fills_at_the_tick_price_on_a_touch_and_worse_on_a_gap(side: str) -> None:
    m = mirror(side)
    desk = Desk(broker={"slippage_ticks": 3})  # slippage is for market orders only
    desk.ticks(m(100.0))
    touch = await desk.place(side, 1, "stop", stop_price=m(101.0))
    gap = await desk.place(side, 1, "stop", stop_price=m(102.0))
    desk.ticks(m(100.75))
    assert len(await desk.broker.open_orders()) == 2
    t1, t2 = desk.ticks(m(101.0), m(103.25))
    fills = {u.order.order_id: u.order for u in await desk.updates() if u.kind == "filled"}
    assert (fills[touch.order_id].fill_price, fills[touch.order_id].fill_ts) == (m(101.0), t1)
    assert (fills[gap.order_id].fill_price, fills[gap.order_id].fill_ts) == (m(103.25), t2)
    assert desk.position()["qty"] == 2


@pytest.mark.parametrize("side", ["buy", "sell"])
@run_async
async def test_stop_limit_triggers_and_fills_on_the_same_tick(side: str) -> None:
    m = mirror(side)
    desk = Desk()
    desk.ticks(m(100.0))
    order = await desk.place(side, 1, "stop_limit", stop_price=m(101.0), limit_price=m(101.5))
    desk.ticks(m(100.75))
    (t,) = desk.ticks(m(101.25))
    updates = await desk.updates()
    assert [(u.kind, u.order.order_id) for u in updates] == [
        ("accepted", order.order_id),
        ("triggered", order.order_id),
        ("filled", order.order_id),
    ]
    assert updates[1].order.triggered and updates[1].order.status == "working"
    assert (updates[2].order.fill_price, updates[2].ts) == (m(101.5), t)


@pytest.mark.parametrize("side", ["buy", "sell"])
@run_async
async def test_stop_limit_triggered_beyond_its_limit_rests_as_a_limit(side: str) -> None:
    m = mirror(side)
    desk = Desk()
    desk.ticks(m(100.0))
    order = await desk.place(side, 1, "stop_limit", stop_price=m(101.0), limit_price=m(101.5))
    desk.ticks(m(102.0))  # triggers, but beyond the limit
    (resting,) = await desk.broker.open_orders()
    assert resting.triggered and desk.position() is None
    with pytest.raises(OrderError) as err:
        await desk.broker.modify(order.order_id, stop_price=m(101.25))
    assert err.value.field == "stop_price"
    desk.ticks(m(101.75), m(100.5))  # the stop is not checked again; the limit fills
    assert desk.position()["entry_price"] == m(101.5)
    kinds = [k for k, _, _ in await desk.kinds()]
    assert kinds == ["accepted", "triggered", "filled"]


# -- OCO and brackets --------------------------------------------------------------------------


@run_async
async def test_an_oco_fill_cancels_its_siblings_in_the_same_tick() -> None:
    desk = Desk()
    desk.ticks(100.0)
    desk.ticks(100.0, idx=1)
    take = await desk.place("sell", 1, "limit", limit_price=102.0, oco_group=7)
    stop = await desk.place("sell", 1, "stop", stop_price=98.0, oco_group=7)
    other = await desk.place("buy", 25, "limit", limit_price=99.0, oco_group=7, symbol="LOT")
    unrelated = await desk.place("buy", 1, "limit", limit_price=90.0, oco_group=8)
    await desk.updates()
    desk.ticks(101.0, 102.0, 97.0)
    assert await desk.kinds() == [
        ("filled", take.order_id, None),
        ("cancelled", stop.order_id, "oco"),
        ("cancelled", other.order_id, "oco"),
    ]
    assert [o.order_id for o in await desk.broker.open_orders()] == [unrelated.order_id]
    assert desk.position()["side"] == "short"  # the 97 tick did not fill the cancelled stop


@run_async
async def test_cancelling_one_oco_order_leaves_the_others_working() -> None:
    desk = Desk()
    desk.ticks(100.0)
    first = await desk.place("buy", 1, "limit", limit_price=99.0, oco_group=3)
    second = await desk.place("buy", 1, "limit", limit_price=98.0, oco_group=3)
    await desk.broker.cancel(first.order_id)
    assert [o.order_id for o in await desk.broker.open_orders()] == [second.order_id]


@run_async
async def test_bracket_full_cycle_entry_then_target_cancels_the_stop() -> None:
    desk = Desk()
    desk.ticks(100.0)
    bracket = await desk.broker.place_bracket(
        "AAA", "buy", 2, target_price=102.0, stop_price=99.0, tag="b1"
    )
    entry, target, stop = bracket.entry, bracket.target, bracket.stop
    assert (entry.status, entry.fill_price) == ("filled", 100.0)
    assert (target.status, target.side, target.type, target.limit_price) == (
        "working",
        "sell",
        "limit",
        102.0,
    )
    assert (stop.status, stop.side, stop.type, stop.stop_price) == ("working", "sell", "stop", 99.0)
    assert target.parent_id == stop.parent_id == entry.order_id
    assert target.oco_group == stop.oco_group and target.oco_group < 0
    assert {o.tag for o in (entry, target, stop)} == {"b1"}

    desk.ticks(101.0, 102.0)
    assert await desk.kinds() == [
        ("accepted", entry.order_id, None),
        ("accepted", target.order_id, None),
        ("accepted", stop.order_id, None),
        ("filled", entry.order_id, None),
        ("activated", target.order_id, None),
        ("activated", stop.order_id, None),
        ("filled", target.order_id, "target"),
        ("cancelled", stop.order_id, "oco"),
    ]
    assert desk.position() is None
    assert await desk.broker.open_orders() == []
    (trade,) = desk.log.trades()
    assert (trade["exit_price"], trade["pnl"], trade["exit_reason"]) == (102.0, 4.0, "manual")


@run_async
async def test_bracket_stop_side_with_a_limit_entry_and_a_gap() -> None:
    desk = Desk()
    desk.ticks(101.0)
    bracket = await desk.broker.place_bracket(
        "AAA",
        "buy",
        3,
        "limit",
        entry_limit_price=100.0,
        target_price=103.0,
        stop_price=99.0,
    )
    assert (bracket.entry.status, bracket.target.status) == ("working", "pending")
    later = await desk.place("sell", 1, "limit", limit_price=110.0)  # the tick's scan goes on
    desk.ticks(100.5)
    assert desk.position() is None
    # the tick that fills the entry gaps through the stop too: the exits wait for the next tick
    desk.ticks(98.0)
    assert desk.position()["entry_price"] == 100.0
    assert [(o.order_id, o.status) for o in await desk.broker.open_orders()] == [
        (bracket.target.order_id, "working"),
        (bracket.stop.order_id, "working"),
        (later.order_id, "working"),
    ]
    desk.ticks(98.25)
    updates = await desk.updates()
    (stop_fill,) = [u for u in updates if u.kind == "filled" and u.reason == "stop"]
    assert (stop_fill.order.order_id, stop_fill.order.fill_price) == (bracket.stop.order_id, 98.25)
    assert (updates[-1].kind, updates[-1].order.order_id, updates[-1].reason) == (
        "cancelled",
        bracket.target.order_id,
        "oco",
    )
    (trade,) = desk.log.trades()
    assert trade["pnl"] == -5.25


@run_async
async def test_cancelling_a_bracket_entry_cancels_its_exits() -> None:
    desk = Desk()
    desk.ticks(100.0)
    bracket = await desk.broker.place_bracket(
        "AAA", "sell", 1, "stop", entry_stop_price=99.0, target_price=97.0, stop_price=100.5
    )
    await desk.updates()
    cancelled = await desk.broker.cancel(bracket.entry.order_id)
    assert (cancelled.status, cancelled.reason) == ("cancelled", "user")
    assert await desk.kinds() == [
        ("cancelled", bracket.entry.order_id, "user"),
        ("cancelled", bracket.target.order_id, "parent_cancelled"),
        ("cancelled", bracket.stop.order_id, "parent_cancelled"),
    ]
    assert await desk.broker.open_orders() == []


@run_async
async def test_matching_the_same_batch_twice_changes_nothing() -> None:
    desk = Desk()
    desk.ticks(101.0)
    bracket = await desk.broker.place_bracket(
        "AAA", "buy", 1, "limit", entry_limit_price=100.0, target_price=103.0, stop_price=99.0
    )
    await desk.updates()
    rows = [(0, 98.0, 1.0, desk.ts)]
    desk.batch(rows)
    idx, price, ts = np.array([0]), np.array([98.0]), np.array([rows[0][3]])
    codes = desk.engine.state.codes  # as Engine.process left them
    desk.broker.on_ticks(idx, price, ts, 1, codes=codes)  # as if Engine.process had called it
    assert [k for k, _, _ in await desk.kinds()] == ["filled", "activated", "activated"]
    assert desk.position()["qty"] == 1
    assert bracket.stop.order_id in {o.order_id for o in await desk.broker.open_orders()}


@run_async
async def test_a_bracket_exit_never_opens_a_position_once_the_position_is_gone() -> None:
    desk = Desk()
    desk.ticks(100.0)
    bracket = await desk.broker.place_bracket("AAA", "buy", 1, target_price=101.0, stop_price=99.0)
    desk.engine.flatten("AAA", ts=desk.ts)
    await desk.updates()
    desk.ticks(98.5)
    assert await desk.kinds() == [("cancelled", bracket.stop.order_id, "no_position")]
    assert desk.position() is None
    # its OCO sibling is still working: the position might come back; it is reduce-only too
    desk.ticks(101.0)
    assert await desk.kinds() == [("cancelled", bracket.target.order_id, "no_position")]
    assert desk.position() is None


@run_async
async def test_a_bracket_exit_is_cut_to_the_position_left() -> None:
    desk = Desk()
    desk.ticks(100.0)
    bracket = await desk.broker.place_bracket("AAA", "buy", 4, target_price=101.0, stop_price=99.0)
    await desk.place("sell", 3)
    desk.ticks(101.0)
    target = next(u.order for u in await desk.updates() if u.kind == "filled" and u.reason)
    assert (target.order_id, target.qty, target.filled_qty) == (bracket.target.order_id, 4, 1)
    assert desk.position() is None


@run_async
async def test_a_pending_exit_cancelled_alone_is_forgotten_by_its_entry() -> None:
    desk = Desk(capacity=6)
    desk.ticks(100.0)
    first = await desk.broker.place_bracket(
        "AAA", "buy", 1, "limit", entry_limit_price=99.0, target_price=101.0, stop_price=98.0
    )
    other = await desk.place("buy", 1, "limit", limit_price=90.0)
    await desk.broker.cancel(first.target.order_id)
    await desk.broker.cancel(other.order_id)
    # the freed rows go to the next bracket; its pending target takes the first one's old row
    second = await desk.broker.place_bracket(
        "AAA", "buy", 1, "limit", entry_limit_price=95.0, target_price=101.0, stop_price=94.0
    )
    await desk.updates()
    desk.ticks(99.0)
    assert await desk.kinds() == [
        ("filled", first.entry.order_id, None),
        ("activated", first.stop.order_id, None),
    ]
    statuses = {o.order_id: o.status for o in await desk.broker.open_orders()}
    assert statuses[second.target.order_id] == "pending"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target_price": 99.5, "stop_price": 99.0}, "target_price"),
        ({"target_price": 102.0, "stop_price": 100.5}, "stop_price"),
        ({"target_price": 102.0, "stop_price": 99.1}, "stop_price"),
        ({"entry_type": "limit", "target_price": 102.0, "stop_price": 99.0}, "entry_limit_price"),
        (
            {
                "entry_type": "limit",
                "entry_limit_price": 98.0,
                "target_price": 102.0,
                "stop_price": 99.0,
            },
            "stop_price",
        ),
        ({"entry_type": "twap", "target_price": 102.0, "stop_price": 99.0}, "entry_type"),
    ],
)
@run_async
async def test_bracket_validation_names_the_field(kwargs: dict, field: str) -> None:
    desk = Desk()
    desk.ticks(100.0)
    with pytest.raises(OrderError) as err:
        await desk.broker.place_bracket("AAA", "buy", 1, **kwargs)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert await desk.broker.open_orders() == []
    assert desk.broker.queued_updates == 0


# -- cancel and modify -------------------------------------------------------------------------


@run_async
async def test_modify_changes_price_and_qty_and_the_order_fills_at_the_new_values() -> None:
    desk = Desk()
    desk.ticks(100.0)
    order = await desk.place("buy", 1, "limit", limit_price=98.0)
    modified = await desk.broker.modify(order.order_id, qty=3, limit_price=99.5)
    assert (modified.status, modified.qty, modified.limit_price) == ("working", 3, 99.5)
    desk.ticks(99.75, 99.5)
    position = desk.position()
    assert (position["qty"], position["entry_price"]) == (3, 99.5)
    assert [k for k, _, _ in await desk.kinds()] == ["accepted", "modified", "filled"]
    with pytest.raises(OrderError, match="filled"):
        await desk.broker.modify(order.order_id, qty=1)
    with pytest.raises(OrderError, match="filled"):
        await desk.broker.cancel(order.order_id)


@run_async
async def test_cancel_ends_a_working_order_once() -> None:
    desk = Desk()
    desk.ticks(100.0)
    order = await desk.place("sell", 1, "stop", stop_price=99.0)
    cancelled = await desk.broker.cancel(order.order_id)
    assert (cancelled.status, cancelled.reason) == ("cancelled", "user")
    desk.ticks(98.0)
    assert desk.position() is None
    with pytest.raises(OrderError) as err:
        await desk.broker.cancel(order.order_id)
    assert err.value.field == "order_id" and "cancelled" in str(err.value)
    with pytest.raises(OrderError, match="unknown order"):
        await desk.broker.cancel("paper-nope-1")
    assert [k for k, _, _ in await desk.kinds()] == ["accepted", "cancelled"]


@pytest.mark.parametrize(
    ("otype", "prices", "change", "field"),
    [
        ("limit", {"limit_price": 98.0}, {"stop_price": 101.0}, "stop_price"),
        ("stop", {"stop_price": 101.0}, {"limit_price": 101.0}, "limit_price"),
        ("limit", {"limit_price": 98.0}, {"limit_price": 98.1}, "limit_price"),
        ("limit", {"limit_price": 98.0}, {"limit_price": -1.0}, "limit_price"),
        ("stop", {"stop_price": 101.0}, {"stop_price": math.nan}, "stop_price"),
        ("limit", {"limit_price": 98.0}, {"qty": 0}, "qty"),
        ("limit", {"limit_price": 98.0}, {}, "qty"),
    ],
)
@run_async
async def test_a_refused_modify_names_the_field_and_changes_nothing(
    otype: str, prices: dict, change: dict, field: str
) -> None:
    desk = Desk()
    desk.ticks(100.0)
    order = await desk.place("buy", 1, otype, **prices)
    with pytest.raises(OrderError) as err:
        await desk.broker.modify(order.order_id, **change)
    assert err.value.field == field
    assert await desk.broker.open_orders() == [order]
    assert [k for k, _, _ in await desk.kinds()] == ["accepted"]


@run_async
async def test_modify_checks_the_lot_size() -> None:
    desk = Desk()
    desk.ticks(100.0, idx=1)
    order = await desk.place("buy", 25, "limit", limit_price=99.0, symbol="LOT")
    with pytest.raises(OrderError, match="lot size 25"):
        await desk.broker.modify(order.order_id, qty=30)
    assert (await desk.broker.modify(order.order_id, qty=50)).qty == 50


# -- validation --------------------------------------------------------------------------------

VALID = {"symbol": "AAA", "side": "buy", "qty": 1, "type": "limit", "limit_price": 99.0}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"symbol": "ZZZ"}, "symbol"),
        ({"symbol": ""}, "symbol"),
        ({"side": "long"}, "side"),
        ({"type": "ioc"}, "type"),
        ({"qty": 0}, "qty"),
        ({"qty": -1}, "qty"),
        ({"qty": 1.5}, "qty"),
        ({"qty": True}, "qty"),
        ({"symbol": "LOT", "qty": 30, "limit_price": 99.05}, "qty"),
        ({"limit_price": None}, "limit_price"),
        ({"limit_price": 99.1}, "limit_price"),
        ({"limit_price": math.inf}, "limit_price"),
        ({"limit_price": 0.0}, "limit_price"),
        ({"limit_price": "99"}, "limit_price"),
        ({"stop_price": 101.0}, "stop_price"),
        ({"type": "market"}, "limit_price"),
        ({"type": "stop", "limit_price": None}, "stop_price"),
        ({"type": "stop_limit", "stop_price": 101.1}, "stop_price"),
        ({"oco_group": 0}, "oco_group"),
        ({"oco_group": "a"}, "oco_group"),
        ({"tag": 5}, "tag"),
    ],
)
@run_async
async def test_validation_errors_name_the_field_and_place_nothing(change: dict, field: str) -> None:
    desk = Desk()
    desk.ticks(100.0)
    with pytest.raises(OrderError) as err:
        await desk.broker.place(OrderRequest(**{**VALID, **change}))
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert await desk.broker.open_orders() == []
    assert desk.broker.queued_updates == 0


# -- kill switch and risk ----------------------------------------------------------------------


@run_async
async def test_after_the_kill_switch_orders_are_refused_and_resting_ones_rejected() -> None:
    desk = Desk()
    desk.ticks(100.0)
    resting = await desk.place("buy", 1, "limit", limit_price=99.0)
    await desk.place("buy", 2)
    desk.engine.kill(desk.ts)
    assert desk.position() is None
    refused = await desk.place("sell", 1)
    assert (refused.status, refused.reason) == ("rejected", "halted")
    limit = await desk.place("buy", 1, "limit", limit_price=98.0)
    assert (limit.status, limit.reason) == ("rejected", "halted")
    await desk.updates()
    desk.ticks(99.0)
    assert await desk.kinds() == [("rejected", resting.order_id, "halted")]
    assert desk.position() is None
    desk.engine.resume()
    assert (await desk.place("buy", 1)).status == "filled"


@run_async
async def test_while_halted_only_orders_that_reduce_the_position_are_accepted() -> None:
    desk = Desk()
    desk.ticks(100.0)
    await desk.place("buy", 3)
    # a halt that left a position, as a restart restoring a journal can
    desk.state.set_account_int(layout.A_HALT, layout.G_MAX_LOSS)
    assert (await desk.place("buy", 1)).reason == "halted"
    assert (await desk.place("sell", 4)).reason == "halted"  # would reverse, not only reduce
    assert (await desk.place("sell", 1)).status == "filled"
    reduce = await desk.place("sell", 2, "limit", limit_price=101.0)
    assert reduce.status == "working"
    desk.ticks(101.0)
    assert desk.position() is None
    desk.state.set_account_int(layout.A_HALT, 0)
    desk.state.set_account_int(layout.A_DAY_HALT, layout.G_DAILY_LOSS)
    assert (await desk.place("buy", 1)).reason == "halted"


@run_async
async def test_max_position_is_checked_at_placement_at_the_fill_and_on_modify() -> None:
    desk = Desk(risk={"max_position": 4})
    desk.ticks(100.0)
    assert (await desk.place("buy", 5)).reason == "max_position"
    resting = await desk.place("buy", 3, "limit", limit_price=99.0)
    assert resting.status == "working"
    with pytest.raises(OrderError, match="max_position") as err:
        await desk.broker.modify(resting.order_id, qty=5)
    assert err.value.field == "qty"
    assert (await desk.place("buy", 2)).status == "filled"
    await desk.updates()
    desk.ticks(99.0)  # 2 + 3 would be 5 lots
    assert await desk.kinds() == [("rejected", resting.order_id, "max_position")]
    assert (await desk.place("buy", 2)).status == "filled"
    assert (await desk.place("buy", 1)).reason == "max_position"
    assert (await desk.place("sell", 8)).status == "filled"  # reverses to short 4: allowed
    assert desk.position()["qty"] == 4
    assert (await desk.place("sell", 1)).reason == "max_position"


@run_async
async def test_max_position_counts_lots() -> None:
    desk = Desk(risk={"max_position": 2})
    desk.ticks(100.0, idx=1)
    assert (await desk.place("buy", 50, symbol="LOT")).status == "filled"
    assert (await desk.place("buy", 25, symbol="LOT")).reason == "max_position"


@run_async
async def test_a_manual_fill_that_breaches_the_daily_loss_limit_halts_and_flattens() -> None:
    desk = Desk(broker={"slippage_ticks": 4}, risk={"daily_loss_limit": 1.5})
    desk.ticks(100.0)
    filled = await desk.place("buy", 2)  # at 101, marked at 100: -2.0
    assert filled.fill_price == 101.0
    assert desk.state.halt_reason() == "daily_loss"
    assert desk.position() is None
    assert [r["type"] for r in desk.log.records()] == ["entry", "halt", "exit"]
    assert (await desk.place("buy", 1)).reason == "halted"


# -- state, stream, capacity -------------------------------------------------------------------


@run_async
async def test_positions_agree_with_the_engine_state() -> None:
    desk = Desk(broker={"slippage_ticks": 1})
    desk.ticks(100.0)
    desk.ticks(20.0, idx=1)
    await desk.place("buy", 2)
    await desk.place("sell", 50, symbol="LOT")
    await desk.place("buy", 1, "limit", limit_price=99.5)
    desk.ticks(99.0)
    positions = await desk.broker.positions()
    assert positions == desk.state.positions()
    assert positions["AAA"]["qty"] == 3
    assert positions["AAA"]["entry_price"] == pytest.approx((2 * 100.25 + 99.5) / 3)
    assert positions["AAA"]["unrealized_pnl"] == pytest.approx(3 * 99.0 - (2 * 100.25 + 99.5))
    assert positions["AAA"]["target"] is None  # manual positions carry no strategy bracket
    assert (positions["LOT"]["side"], positions["LOT"]["qty"]) == ("short", 50)
    assert positions["LOT"]["entry_price"] == pytest.approx(19.95)


@run_async
async def test_updates_stream_in_order_with_contiguous_seq() -> None:
    desk = Desk()
    desk.ticks(100.0)
    a = await desk.place("buy", 1, "limit", limit_price=99.0, tag="a")
    b = await desk.place("buy", 1, "limit", limit_price=99.0, tag="b")
    c = await desk.place("buy", 1, "stop", stop_price=101.0, tag="c")
    desk.ticks(99.0, 101.0)
    updates = await desk.updates()
    assert [u.seq for u in updates] == list(range(len(updates)))
    assert [(u.kind, u.order.tag) for u in updates] == [
        ("accepted", "a"),
        ("accepted", "b"),
        ("accepted", "c"),
        ("filled", "a"),  # oldest first on the same tick
        ("filled", "b"),
        ("filled", "c"),
    ]
    assert updates[3].ts < updates[5].ts
    assert len({a.order_id, b.order_id, c.order_id}) == 3
    assert desk.broker.dropped_updates == 0


@run_async
async def test_a_full_update_queue_drops_the_oldest_and_counts() -> None:
    desk = Desk(update_capacity=3)
    desk.ticks(100.0)
    for _ in range(3):
        await desk.place("buy", 1)  # accepted + filled each
    updates = await desk.updates()
    assert desk.broker.dropped_updates == 3
    assert [u.seq for u in updates] == [3, 4, 5]


@run_async
async def test_a_full_order_table_refuses_new_orders_until_a_row_frees() -> None:
    desk = Desk(capacity=3)
    desk.ticks(100.0)
    first = await desk.place("buy", 1, "stop_limit", stop_price=101.0, limit_price=100.5)
    await desk.place("buy", 1, "limit", limit_price=98.0)
    with pytest.raises(OrderError) as err:
        await desk.broker.place_bracket("AAA", "buy", 1, target_price=101.0, stop_price=99.0)
    assert err.value.field == "capacity"
    await desk.place("buy", 1, "limit", limit_price=97.0)
    with pytest.raises(OrderError, match="full"):
        await desk.place("buy", 1, "limit", limit_price=96.0)
    desk.ticks(101.0)  # triggers the stop-limit, which rests beyond its limit
    await desk.broker.cancel(first.order_id)
    reused = await desk.place("sell", 1, "limit", limit_price=100.75)
    (state,) = [o for o in await desk.broker.open_orders() if o.order_id == reused.order_id]
    assert (state.triggered, state.status, state.side) == (False, "working", "sell")
    desk.ticks(100.75)
    assert desk.position()["side"] == "short"


@run_async
async def test_refused_ticks_match_nothing() -> None:
    desk = Desk()
    desk.ticks(100.0)
    await desk.place("buy", 1, "limit", limit_price=99.0)
    stale = desk.ts - 10 * SECOND
    t = desk.ts
    desk.batch(
        [
            (0, math.nan, 1.0, t),
            (0, math.inf, 1.0, t),
            (0, 0.0, 1.0, t),
            (0, -98.0, 1.0, t),
            (5, 98.0, 1.0, t),
            (-1, 98.0, 1.0, t),
            (0, 98.0, math.nan, t),
            (0, 98.0, -1.0, t),
            (0, 98.0, 1.0, stale),
            (0, 1.0, 1.0, t),  # a glitch far below the limit, outside the price band
            (0, 98.0, 1.0, 2**63 - 1),
        ]
    )
    assert desk.state.rejected_ticks() == {
        "unknown_symbol": 2,
        "non_finite": 2,
        "non_positive": 2,
        "bad_size": 2,
        "stale_timestamp": 1,
        "price_band": 1,
        "future_timestamp": 1,
    }
    assert desk.position() is None
    desk.batch([(0, 98.0, 1.0, t)])
    assert desk.position()["entry_price"] == 99.0


@run_async
async def test_a_batch_filling_more_orders_than_the_event_ring_holds_loses_nothing() -> None:
    count = 1500
    desk = Desk(capacity=count, state={"event_capacity": 1024}, risk={"max_position": 10 * count})
    desk.ticks(100.0)
    orders = [await desk.place("buy", 1, "limit", limit_price=99.0) for _ in range(count)]
    await desk.updates()
    (t,) = desk.ticks(99.0)
    entries = desk.log.records("entry")
    assert len(entries) == count and {e["tick_t"] for e in entries} == {t}
    assert desk.state.account_int(layout.A_EVENTS_LOST) == 0
    assert desk.position()["qty"] == count
    fills = await desk.updates()
    assert [u.order.order_id for u in fills] == [o.order_id for o in orders]


@run_async
async def test_a_batch_with_more_updates_than_the_update_ring_holds_loses_nothing() -> None:
    capacity = 8
    desk = Desk(capacity=capacity)
    desk.ticks(100.0)
    orders = [
        await desk.place("buy", 1, "stop_limit", stop_price=101.0, limit_price=101.0)
        for _ in range(capacity)
    ]
    await desk.updates()
    desk.ticks(101.0)  # 16 updates from one tick: more than one kernel call's room
    assert desk.broker.counters[kp.C_UPDATES_LOST] == 0
    expected = [(k, o.order_id, None) for o in orders for k in ("triggered", "filled")]
    assert await desk.kinds() == expected
    assert desk.position()["qty"] == capacity


@run_async
async def test_a_tick_resumed_after_a_full_update_ring_skips_exits_activated_in_it() -> None:
    desk = Desk(capacity=11)  # room for 15 updates per kernel call
    desk.ticks(100.0)
    bracket = await desk.broker.place_bracket(
        "AAA", "sell", 1, "limit", entry_limit_price=100.0, target_price=97.0, stop_price=101.0
    )
    others = [
        await desk.place("buy", 1, "stop_limit", stop_price=101.0, limit_price=102.0)
        for _ in range(8)
    ]
    await desk.updates()
    desk.ticks(102.0)  # 3 + 16 updates: the kernel returns midway through the tick
    assert await desk.kinds() == [
        ("filled", bracket.entry.order_id, None),
        ("activated", bracket.target.order_id, None),
        ("activated", bracket.stop.order_id, None),
    ] + [(k, o.order_id, None) for o in others for k in ("triggered", "filled")]
    statuses = {o.order_id: o.status for o in await desk.broker.open_orders()}
    assert statuses == {bracket.target.order_id: "working", bracket.stop.order_id: "working"}


@run_async
async def test_cancel_all_cancels_every_open_order_or_one_symbols() -> None:
    desk = Desk()
    desk.ticks(100.0)
    desk.ticks(100.0, idx=1)
    await desk.place("buy", 1, "limit", limit_price=99.0)
    lot = await desk.place("buy", 25, "limit", limit_price=99.0, symbol="LOT")
    await desk.broker.place_bracket(
        "AAA", "buy", 1, "limit", entry_limit_price=98.0, target_price=99.0, stop_price=97.0
    )
    cancelled = await desk.broker.cancel_all("AAA")
    assert [o.status for o in cancelled] == ["cancelled"] * 4
    assert await desk.broker.open_orders() == [lot]
    assert [o.order_id for o in await desk.broker.cancel_all()] == [lot.order_id]


@run_async
async def test_manual_orders_and_fills_reach_the_journal(tmp_path) -> None:
    desk = Desk(journal={"path": str(tmp_path / "journal.jsonl")})
    journal = Journal(desk.engine.cfg, desk.state.symbols)
    desk.engine.sinks.append(journal)
    desk.ticks(100.0)
    await desk.place("buy", 2)
    await desk.place("sell", 2, "limit", limit_price=101.0)
    desk.ticks(101.0)
    journal.close()
    fills = [line for line in read_journal(tmp_path / "journal.jsonl") if line["type"] == "fill"]
    assert [(f["action"], f["price"]) for f in fills] == [("entry", 100.0), ("exit", 101.0)]
    assert (fills[1]["reason"], fills[1]["pnl"]) == ("manual", 2.0)


@run_async
async def test_the_paper_broker_is_a_broker() -> None:
    desk = Desk()
    assert isinstance(desk.broker, Broker)
    assert np.all(desk.broker.orders["status"] == kp.OS_FREE)


def test_the_interface_names_match_the_kernel_codes():
    from engine.brokers import base
    from kernels import paper as kp

    assert base.ORDER_TYPES == kp.ORDER_TYPES
    assert kp.ORDER_STATUSES[1:] == base.ORDER_STATUSES  # code 0 is a free slot
    assert kp.UPDATE_KINDS[1:] == base.UPDATE_KINDS
