"""The paper broker's order table: the rows its kernels match, and the orders they stand for.

The kernels of :mod:`kernels.paper` match and fill rows of ``ORDER_DTYPE`` and write every
state change to an update ring. :class:`OrderTable` keeps the Python side of the same orders:
which rows are free, each order's id and the request fields the kernels have no use for, the
:class:`OrderState` snapshots the interface returns, the decoding of the update ring into the
update stream, and a bounded memory of finished orders, so that late cancels and modifies get
a clear error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.brokers.base import OrderError, OrderRequest, OrderState
from engine.brokers.stream import UpdateStream
from kernels import layout
from kernels import paper as kp

if TYPE_CHECKING:
    from engine.state import State

__all__ = ["FINISHED_PER_SLOT", "SIDE_CODE", "OrderTable"]

#: finished orders remembered per table row, so late cancels and modifies get a clear error
FINISHED_PER_SLOT = 4
#: side codes of the kernels by interface name
SIDE_CODE = {"buy": layout.LONG, "sell": layout.SHORT}
_SIDE_NAME = {code: name for name, code in SIDE_CODE.items()}
#: statuses after which an order's row is freed
_TERMINAL = (kp.OS_FILLED, kp.OS_CANCELLED, kp.OS_REJECTED)


@dataclass(slots=True)
class _Meta:
    number: int
    order_id: str
    symbol: str
    tag: str | None
    oco_group: int | None
    limit_price: float | None
    stop_price: float | None
    parent_id: str | None


class OrderTable:
    """Keep a paper broker's orders: the kernels' rows and what the interface says of them.

    Every change is streamed: :meth:`add`, :meth:`modify` and :meth:`reject` stream their
    update themselves; :meth:`fill`, :meth:`cancel` and :meth:`match` run a kernel and then
    stream the updates it wrote to the ring. An order that ends frees its row and is
    remembered as finished.

    Parameters
    ----------
    state : State
        The engine's state: instruments, book and event ring.
    capacity : int
        Rows, i.e. orders open at once.
    stream : UpdateStream
        Where the updates go.
    """

    def __init__(self, state: State, capacity: int, stream: UpdateStream) -> None:
        self.state = state
        self.stream = stream
        self.orders = np.zeros(capacity, kp.ORDER_DTYPE)
        for field in ("parent", "child_target", "child_stop", "prv", "nxt"):
            self.orders[field] = -1
        # room for one call's worth of updates beyond a full table's OCO cancels
        self.ring = np.zeros(2 * capacity + 2 * kp.UPDATES_PER_FILL, kp.UPDATE_DTYPE)
        self.lists = np.full((state.n, kp.N_LIST_COLS), -1, np.int64)
        self.counters = np.zeros(kp.N_COUNTERS, np.int64)
        self.counters[kp.C_CUR_K] = -1
        # the arrays as the kernels take them, after the engine's book and events
        self._arrays = (self.orders, self.ring, self.lists, self.counters)
        self._free = list(range(capacity - 1, -1, -1))
        self._meta: list[_Meta | None] = [None] * capacity
        self._slot_of: dict[str, int] = {}
        self._finished: dict[str, OrderState] = {}
        self._finished_cap = FINISHED_PER_SLOT * capacity
        self._next_id = 1
        self._prefix = f"paper-{time.time_ns() // 1_000_000:x}-"

    # -- orders in and out ---------------------------------------------------------------------

    def take(self, count: int) -> list[int]:
        """Reserve ``count`` free rows for :meth:`add`.

        Raises OrderError, reserving none, when fewer are free.
        """
        if len(self._free) < count:
            raise OrderError(
                "capacity",
                f"the order table is full ({len(self.orders)} open orders); cancel some first",
            )
        return [self._free.pop() for _ in range(count)]

    def add(
        self,
        slot: int,
        order: OrderRequest,
        i: int,
        limit_ticks: int,
        stop_ticks: int,
        *,
        leg: int = kp.LEG_NONE,
        parent: int = -1,
        oco: int | None = None,
    ) -> str:
        """Write ``order`` to row ``slot``, stream its ``accepted`` update, return its id.

        The order is working, last in its instrument's list, unless it is a bracket exit: that
        waits pending, outside the list, until its entry fills.

        Parameters
        ----------
        slot : int
            A row from :meth:`take`.
        order : OrderRequest
            The checked request.
        i, limit_ticks, stop_ticks : int
            Its instrument's row and its prices in ticks, 0 for none.
        leg : int
            ``LEG_*``: the order's role in a bracket.
        parent : int
            A bracket exit's entry row, added just before; -1 for none.
        oco : int, optional
            The OCO group in place of the request's (a bracket's exits).
        """
        number, order_id = self._new_id()
        parent_id = None
        status = kp.OS_WORKING
        if parent >= 0:
            entry = self._meta[parent]
            assert entry is not None
            parent_id = entry.order_id
            status = kp.OS_PENDING
            self.orders[parent]["child_target" if leg == kp.LEG_TARGET else "child_stop"] = slot
        meta = _Meta(
            number,
            order_id,
            order.symbol,
            order.tag,
            order.oco_group if oco is None else oco,
            order.limit_price,
            order.stop_price,
            parent_id,
        )
        side = SIDE_CODE[order.side]
        otype = kp.ORDER_TYPES.index(order.type)
        seq = int(self.counters[kp.C_SEQ])
        # every column, in ORDER_DTYPE order: a reused slot keeps nothing of its last order
        self.orders[slot] = (
            number, i, side, order.qty, otype, limit_ticks, stop_ticks, 0, meta.oco_group or 0,
            status, leg, parent, -1, -1, -1, -1, seq, 0, 0, 0, kp.PR_NONE,
        )  # fmt: skip
        if status == kp.OS_WORKING:
            kp.link(self.orders, self.lists, slot)
        self._meta[slot] = meta
        self._slot_of[order_id] = slot
        self.stream.emit("accepted", self._snapshot(slot), None, time.time_ns())
        return order_id

    def modify(
        self,
        slot: int,
        qty: int,
        limit_ticks: int,
        stop_ticks: int,
        limit_price: float | None,
        stop_price: float | None,
    ) -> OrderState:
        """Change the open order in row ``slot``, stream its ``modified`` update, return it.

        Takes the new quantity and prices in ticks, and the prices as given (None when
        unchanged). A bracket entry's new quantity carries to its pending exits.
        """
        row = self.orders[slot]
        meta = self._meta[slot]
        assert meta is not None
        row["qty"] = qty
        row["limit"] = limit_ticks
        row["stop"] = stop_ticks
        if limit_price is not None:
            meta.limit_price = limit_price
        if stop_price is not None:
            meta.stop_price = stop_price
        if row["leg"] == kp.LEG_ENTRY:
            for child in (int(row["child_target"]), int(row["child_stop"])):
                if child >= 0 and self.orders[child]["status"] == kp.OS_PENDING:
                    self.orders[child]["qty"] = qty
        state = self._snapshot(slot)
        self.stream.emit("modified", state, None, time.time_ns())
        return state

    def reject(
        self,
        order: OrderRequest,
        reason: str,
        leg: str | None = None,
        parent_id: str | None = None,
    ) -> OrderState:
        """Give refused ``order`` an id, no row, and stream its ``rejected`` update; return it.

        ``leg`` and ``parent_id`` place a bracket's order in its bracket.
        """
        state = order.as_state(
            self._new_id()[1], "rejected", reason=reason, leg=leg, parent_id=parent_id
        )
        self._remember(state)
        self.stream.emit("rejected", state, reason, time.time_ns())
        return state

    # -- kernel calls --------------------------------------------------------------------------

    def fill(self, slot: int, price_ticks: int, ts: int) -> None:
        """Fill the working order in row ``slot`` at ``price_ticks``, tick time ``ts``.

        ``fill_order`` rejects it instead when the risk rules refuse it now.
        """
        kp.fill_order(self.state.book, self.state.events, *self._arrays, slot, price_ticks, ts)
        self._decode()

    def cancel(self, slot: int) -> None:
        """Cancel the open order in row ``slot`` (reason ``user``), with its pending exits."""
        kp.finish(*self._arrays, slot, kp.OS_CANCELLED, time.time_ns(), kp.PR_USER)
        self._decode()

    def match(
        self,
        idx: np.ndarray,
        price: np.ndarray,
        codes: np.ndarray,
        ts: np.ndarray,
        n: int,
        drain: Callable[[], None],
    ) -> None:
        """Match the working orders against the first ``n`` > 0 ticks of a batch.

        Parameters
        ----------
        idx, price, ts : np.ndarray
            Scratch arrays of the batch (int64, float64, int64).
        codes : np.ndarray
            The kernels' code of each tick; only accepted ones (0) match.
        n : int
            Ticks filled.
        drain : callable
            Empties the engine's event ring; called after every ``match_ticks`` call, which
            stops early when the ring is nearly full.
        """
        book, events = self.state.book, self.state.events
        self.counters[kp.C_CUR_K] = -1
        start = 0
        while start < n:
            start = kp.match_ticks(book, events, *self._arrays, idx, price, codes, ts, start, n)
            self._decode()
            drain()

    # -- lookups -------------------------------------------------------------------------------

    def open_slot(self, order_id: str, action: str) -> int:
        """Return the row of open order ``order_id``.

        Raises OrderError, saying the ``action`` cannot be done, when it is unknown or no
        longer open.
        """
        slot = self._slot_of.get(order_id)
        if slot is not None:
            return slot
        done = self._finished.get(order_id)
        if done is None:
            raise OrderError("order_id", f"unknown order {order_id!r}")
        raise OrderError(
            "order_id", f"cannot {action} order {order_id!r}: it is {done.status}, not open"
        )

    @property
    def has_open(self) -> bool:
        """Whether any order is pending or working."""
        return bool(self._slot_of)

    def is_open(self, order_id: str) -> bool:
        """Whether ``order_id`` is pending or working."""
        return order_id in self._slot_of

    def current(self, order_id: str) -> OrderState:
        """Return the state of ``order_id``, open or remembered as finished."""
        slot = self._slot_of.get(order_id)
        return self._snapshot(slot) if slot is not None else self._finished[order_id]

    def open_states(self) -> list[OrderState]:
        """Return the pending and working orders, oldest first."""
        slots = sorted(self._slot_of.values(), key=lambda s: int(self.orders[s]["id"]))
        return [self._snapshot(slot) for slot in slots]

    # -- internals -----------------------------------------------------------------------------

    def _new_id(self) -> tuple[int, str]:
        number = self._next_id
        self._next_id += 1
        return number, f"{self._prefix}{number}"

    def _snapshot(self, slot: int) -> OrderState:
        row = self.orders[slot]
        return self._state(
            slot,
            int(row["status"]),
            bool(row["triggered"]),
            int(row["filled"]),
            int(row["fill_ticks"]),
            int(row["fill_ts"]),
            int(row["reason"]),
        )

    def _state(
        self,
        slot: int,
        status: int,
        triggered: bool,
        filled: int,
        fill_ticks: int,
        fill_ts: int,
        reason: int,
    ) -> OrderState:
        row = self.orders[slot]
        meta = self._meta[slot]
        assert meta is not None
        is_filled = status == kp.OS_FILLED
        tick_size = self.state.book[int(row["inst"]), layout.I_TICK_SIZE]
        leg = kp.LEGS[int(row["leg"])]
        return OrderState(
            order_id=meta.order_id,
            symbol=meta.symbol,
            side=_SIDE_NAME[int(row["side"])],  # type: ignore[arg-type]
            qty=int(row["qty"]),
            type=kp.ORDER_TYPES[int(row["otype"])],  # type: ignore[arg-type]
            limit_price=meta.limit_price,
            stop_price=meta.stop_price,
            tag=meta.tag,
            oco_group=meta.oco_group,
            status=kp.ORDER_STATUSES[status],
            filled_qty=filled,
            fill_price=float(fill_ticks * tick_size) if is_filled else None,
            fill_ts=fill_ts if is_filled else None,
            triggered=triggered,
            reason=kp.ORDER_REASONS[reason] or None,
            leg=leg or None,
            parent_id=meta.parent_id,
        )

    def _decode(self) -> None:
        rows = self.ring[: int(self.counters[kp.C_UPDATES])].tolist()
        for kind, slot, _id, status, triggered, filled, fill_ticks, ts, reason in rows:
            state = self._state(slot, status, bool(triggered), filled, fill_ticks, ts, reason)
            why = state.reason
            if status == kp.OS_FILLED and state.leg in ("target", "stop"):
                why = state.leg
            self.stream.emit(kp.UPDATE_KINDS[kind], state, why, ts)
            if status in _TERMINAL:
                self._retire(slot, state)
        self.counters[kp.C_UPDATES] = 0

    def _retire(self, slot: int, state: OrderState) -> None:
        self._remember(state)
        del self._slot_of[state.order_id]
        self._meta[slot] = None
        self.orders[slot]["status"] = kp.OS_FREE
        self._free.append(slot)

    def _remember(self, state: OrderState) -> None:
        self._finished[state.order_id] = state
        if len(self._finished) > self._finished_cap:
            del self._finished[next(iter(self._finished))]
