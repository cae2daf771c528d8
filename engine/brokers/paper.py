"""The paper broker: operator orders filled inside the process, against the engine's ticks.

It implements :class:`engine.brokers.base.Broker` over a preallocated order table matched by
the kernels of :mod:`kernels.paper`, with the fill rules of the strategy path (see that
module): market at the LTP plus ``broker.slippage_ticks`` against the order, limits at their
limit price, stops at the triggering tick's own price, stop-limits resting as limits once
triggered. Fills go through ``apply_fill`` with reason ``manual``, so positions, P&L, the
loss limits, the event ring and the journal see them like any fill.

Wiring and ordering. ``Engine.process`` runs the strategy over a whole batch first and calls
:meth:`PaperBroker.on_ticks` with the same scratch arrays right after it. Working orders are
therefore matched tick by tick at the right prices and tick times, but after the strategy has
seen the whole batch: within one batch, strategy decisions (entries, bracket exits, the risk
gate's position check) see manual fills only from the next batch, and a manual fill's events
follow the batch's strategy events in the ring. Market orders fill at placement, between
batches, at the LTP of the last tick processed and with that tick's time.

Choices where the interface is silent:

- an order is matched from the tick after the one it became working on: a limit already
  marketable at placement fills on the next tick that satisfies it (at its limit), and a
  bracket's exits wait for the tick after their entry's fill;
- orders of one instrument are matched oldest first on each tick;
- a risk refusal (halted engine, max position, market without a price) returns the order
  ``rejected`` with a reason and streams a ``rejected`` update; the same rules are applied
  again when a working order would fill, so a resting order that would open a position after
  a kill, or breach max_position by then, is rejected at that tick instead of filling;
- "halted" covers the kill switch and max-loss halt (``A_HALT``) and the day's loss-limit halt
  (``A_DAY_HALT``); the operator's pause and the session hours do not stop operator orders;
- a bracket's exits are reduce-only: at their fill they are cut to the opposite position
  left, and cancelled (``no_position``) when none is left (flattened by the kill switch, the
  session's end, or another order), so an orphaned stop never opens a position;
- every manual fill counts against ``max_orders_per_second`` (like the strategy's fills), but
  manual orders are not refused by it;
- cancelling one order of an OCO group leaves the others working; only a fill cancels them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.brokers.base import (
    Bracket,
    OrderError,
    OrderRequest,
    OrderState,
    OrderType,
    OrderUpdate,
    Side,
    check_price,
    check_qty,
    price_to_ticks,
)
from kernels import layout
from kernels import paper as kp

if TYPE_CHECKING:
    from engine.core import Engine

__all__ = ["PaperBroker"]

#: default rows of the order table: working and pending orders at once
DEFAULT_CAPACITY = 1024
#: default length of the update stream's queue before the oldest update is dropped
DEFAULT_UPDATE_CAPACITY = 10_000
#: finished orders remembered per table row, so late cancels and modifies get a clear error
FINISHED_PER_SLOT = 4

#: side codes of the kernels by interface name, and back
_SIDE_CODE = {"buy": layout.LONG, "sell": layout.SHORT}
_SIDE_NAME = {layout.LONG: "buy", layout.SHORT: "sell"}
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


class PaperBroker:
    """Fill orders inside the process against the ticks the engine processes.

    Parameters
    ----------
    engine : Engine
        The engine whose state the fills go to; its ``drain`` hands their events to the sinks.
    capacity : int, optional
        Rows of the order table, i.e. orders open at once. Default 1024; a full table refuses
        new orders with OrderError.
    update_capacity : int, optional
        Length of the update stream's queue. When it is full the oldest update is dropped and
        counted in :attr:`dropped_updates`. Default 10 000.
    """

    def __init__(
        self,
        engine: Engine,
        capacity: int = DEFAULT_CAPACITY,
        update_capacity: int = DEFAULT_UPDATE_CAPACITY,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if update_capacity < 1:
            raise ValueError(f"update_capacity must be >= 1, got {update_capacity}")
        self.engine = engine
        self.state = engine.state
        self.capacity = capacity
        state = self.state
        self.orders = np.zeros(capacity, kp.ORDER_DTYPE)
        for field in ("parent", "child_target", "child_stop", "prv", "nxt"):
            self.orders[field] = -1
        # room for one call's worth of updates beyond a full table's OCO cancels
        self.ring = np.zeros(2 * capacity + 2 * kp.UPDATES_PER_FILL, kp.UPDATE_DTYPE)
        self.lists = np.full((state.n, kp.N_LIST_COLS), -1, np.int64)
        self.lists[:, kp.LIST_LAST_TS] = state.ints[: state.n, layout.I_LAST_TS]
        self.counters = np.zeros(kp.N_COUNTERS, np.int64)
        self.counters[kp.C_CUR_K] = -1
        self._ticks_matched = state.account_int(layout.A_TICKS)
        self._free = list(range(capacity - 1, -1, -1))
        self._meta: list[_Meta | None] = [None] * capacity
        self._slot_of: dict[str, int] = {}
        self._finished: dict[str, OrderState] = {}
        self._finished_cap = FINISHED_PER_SLOT * capacity
        self._queue: asyncio.Queue[OrderUpdate] = asyncio.Queue(maxsize=update_capacity)
        #: updates dropped because the stream's queue was full
        self.dropped_updates = 0
        self._seq = 0
        self._next_id = 1
        self._next_group = -1
        self._prefix = f"paper-{time.time_ns() // 1_000_000:x}-"

    # -- the Broker interface ------------------------------------------------------------------

    async def place(self, order: OrderRequest) -> OrderState:
        """Place ``order``; a market order fills at once, the others rest until matched.

        Parameters
        ----------
        order : OrderRequest
            The order.

        Returns
        -------
        OrderState
            ``filled`` (market), ``working``, or ``rejected`` with the reason ``halted``,
            ``max_position`` or ``no_price``.

        Raises
        ------
        OrderError
            Unknown symbol, quantity not a lot multiple, a price off the tick grid, or a full
            order table; nothing is placed.
        """
        i, limit_ticks, stop_ticks = self._check(order)
        side = _SIDE_CODE[order.side]
        refusal = self._refusal(order.type, i, side, order.qty)
        if refusal:
            return self._reject(order, refusal)
        slot = self._take_slots(1)[0]
        otype = kp.ORDER_TYPES.index(order.type)
        meta = self._meta_for(order, None)
        self._write(slot, meta, i, side, order.qty, otype, limit_ticks, stop_ticks)
        self.orders[slot]["oco"] = order.oco_group or 0
        self._accepted(slot)
        if otype == kp.OT_MARKET:
            self._fill_market(slot)
        return self._current(meta.order_id)

    async def modify(
        self,
        order_id: str,
        *,
        qty: int | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderState:
        """Change an open order's quantity or prices; return its new state.

        The order keeps its place in the queue. A bracket entry's new quantity carries to its
        pending exits. A larger quantity is checked against the risk rules again.

        Parameters
        ----------
        order_id : str
            An open (pending or working) order.
        qty : int, optional
            New units, a lot multiple.
        limit_price : float, optional
            New limit, for limit and stop-limit orders.
        stop_price : float, optional
            New trigger, for stop and untriggered stop-limit orders.

        Returns
        -------
        OrderState

        Raises
        ------
        OrderError
            The order is not open, nothing to change, or a new value is invalid or refused;
            the order is then unchanged.
        """
        slot = self._open_slot(order_id, "modify")
        if qty is None and limit_price is None and stop_price is None:
            raise OrderError("qty", "give qty, limit_price or stop_price to modify")
        row = self.orders[slot]
        meta = self._meta[slot]
        assert meta is not None
        i = int(row["inst"])
        inst = self.state.cfg.instruments[i]
        otype = kp.ORDER_TYPES[int(row["otype"])]
        new_qty = int(row["qty"]) if qty is None else check_qty(qty, inst.lot_size)
        limit_ticks = int(row["limit"])
        stop_ticks = int(row["stop"])
        if limit_price is not None:
            if otype not in ("limit", "stop_limit"):
                raise OrderError("limit_price", f"not allowed for a {otype} order")
            limit_price = check_price("limit_price", limit_price)
            limit_ticks = price_to_ticks("limit_price", limit_price, inst.tick_size)
        if stop_price is not None:
            if otype not in ("stop", "stop_limit"):
                raise OrderError("stop_price", f"not allowed for a {otype} order")
            if row["triggered"]:
                raise OrderError("stop_price", "the stop already triggered")
            stop_price = check_price("stop_price", stop_price)
            stop_ticks = price_to_ticks("stop_price", stop_price, inst.tick_size)
        leg = int(row["leg"])
        if new_qty > row["qty"] and leg in (kp.LEG_NONE, kp.LEG_ENTRY):
            gate = kp.order_gate(self.state.book, i, int(row["side"]), new_qty, leg)
            if gate != kp.PR_NONE:
                raise OrderError("qty", f"refused: {kp.ORDER_REASONS[gate]}")
        row["qty"] = new_qty
        row["limit"] = limit_ticks
        row["stop"] = stop_ticks
        if limit_price is not None:
            meta.limit_price = limit_price
        if stop_price is not None:
            meta.stop_price = stop_price
        if leg == kp.LEG_ENTRY:
            for child in (int(row["child_target"]), int(row["child_stop"])):
                if child >= 0 and self.orders[child]["status"] == kp.OS_PENDING:
                    self.orders[child]["qty"] = new_qty
        self._emit("modified", self._snapshot(slot), None, time.time_ns())
        return self._snapshot(slot)

    async def cancel(self, order_id: str) -> OrderState:
        """Cancel an open order (reason ``user``); return its final state.

        Cancelling a bracket's entry cancels its pending exits (``parent_cancelled``).

        Parameters
        ----------
        order_id : str
            An open (pending or working) order.

        Returns
        -------
        OrderState

        Raises
        ------
        OrderError
            The order is unknown, filled, cancelled or rejected.
        """
        slot = self._open_slot(order_id, "cancel")
        self._cancel_slot(slot)
        return self._current(order_id)

    async def cancel_all(self, symbol: str | None = None) -> list[OrderState]:
        """Cancel every open order, or those of ``symbol``; return their final states.

        Parameters
        ----------
        symbol : str, optional
            Only this instrument's orders.

        Returns
        -------
        list of OrderState
            Oldest first.
        """
        if symbol is not None and symbol not in self.state.index:
            raise OrderError("symbol", f"unknown symbol {symbol!r}")
        ids = [s.order_id for s in self._open_states() if symbol in (None, s.symbol)]
        for order_id in ids:
            slot = self._slot_of.get(order_id)
            if slot is not None:  # a cancelled entry took its pending exits with it
                self._cancel_slot(slot)
        return [self._current(order_id) for order_id in ids]

    async def open_orders(self) -> list[OrderState]:
        """Return the pending and working orders, oldest first."""
        return self._open_states()

    async def positions(self) -> dict[str, dict]:
        """Return the engine's open positions by symbol (see ``State.positions``)."""
        return self.state.positions()

    async def updates(self) -> AsyncIterator[OrderUpdate]:
        """Yield order updates as they happen, oldest first; one consumer at a time."""
        while True:
            yield await self._queue.get()

    # -- beyond the interface ------------------------------------------------------------------

    async def place_bracket(
        self,
        symbol: str,
        side: Side,
        qty: int,
        entry_type: OrderType = "market",
        *,
        entry_limit_price: float | None = None,
        entry_stop_price: float | None = None,
        target_price: float,
        stop_price: float,
        tag: str | None = None,
    ) -> Bracket:
        """Place an entry and, once it fills, a target limit and a stop as an OCO pair.

        The exits are on the opposite side, for the entry's quantity, pending until the entry
        fills and matched from the next tick on; they share a negative OCO group, so the first
        to fill cancels the other, and they are reduce-only (see the module notes).

        Parameters
        ----------
        symbol, side, qty
            As for :class:`OrderRequest`.
        entry_type : {"market", "limit", "stop", "stop_limit"}
            The entry's order type.
        entry_limit_price, entry_stop_price : float, optional
            The entry's prices, as its type needs them.
        target_price : float
            Take-profit limit: above the entry's reference price for a buy (the limit, the
            stop of a stop entry, or the LTP of a market entry), below for a sell.
        stop_price : float
            Stop-market trigger, on the other side of the reference price.
        tag : str, optional
            Kept on all three orders.

        Returns
        -------
        Bracket
            The three orders' states. When the entry is refused, it is ``rejected`` and the
            exits ``rejected`` with reason ``parent_rejected``.

        Raises
        ------
        OrderError
            A malformed request (fields named as in this signature) or a table without three
            free rows; nothing is placed.
        """
        try:
            entry = OrderRequest(
                symbol, side, qty, entry_type, entry_limit_price, entry_stop_price, tag
            )
        except OrderError as exc:
            raise _entry_error(exc) from None
        try:
            i, limit_ticks, stop_ticks = self._check(entry)
        except OrderError as exc:
            raise _entry_error(exc) from None
        inst = self.state.cfg.instruments[i]
        target_price = check_price("target_price", target_price)
        stop_price = check_price("stop_price", stop_price)
        target_ticks = price_to_ticks("target_price", target_price, inst.tick_size)
        exit_stop_ticks = price_to_ticks("stop_price", stop_price, inst.tick_size)
        sign = _SIDE_CODE[entry.side]
        reference = {"limit": limit_ticks, "stop_limit": limit_ticks, "stop": stop_ticks}.get(
            entry.type, self._ltp_ticks(i)
        )
        above, below = ("above", "below") if sign == layout.LONG else ("below", "above")
        if reference is not None and sign * (target_ticks - reference) <= 0:
            raise OrderError("target_price", f"must be {above} the entry's price for a {side}")
        if reference is not None and sign * (exit_stop_ticks - reference) >= 0:
            raise OrderError("stop_price", f"must be {below} the entry's price for a {side}")
        if sign * (target_ticks - exit_stop_ticks) <= 0:
            raise OrderError("target_price", f"must be {above} stop_price for a {side}")

        exit_side = "sell" if entry.side == "buy" else "buy"
        target = OrderRequest(symbol, exit_side, qty, "limit", limit_price=target_price, tag=tag)
        stop = OrderRequest(symbol, exit_side, qty, "stop", stop_price=stop_price, tag=tag)
        refusal = self._refusal(entry.type, i, sign, entry.qty)
        if refusal:
            rejected = self._reject(entry, refusal, leg="entry")
            return Bracket(
                rejected,
                self._reject(target, "parent_rejected", leg="target", parent=rejected.order_id),
                self._reject(stop, "parent_rejected", leg="stop", parent=rejected.order_id),
            )

        entry_slot, target_slot, stop_slot = self._take_slots(3)
        group = self._next_group
        self._next_group -= 1
        entry_meta = self._meta_for(entry, None)
        parent_id = entry_meta.order_id
        target_meta = self._meta_for(target, parent_id, group)
        stop_meta = self._meta_for(stop, parent_id, group)
        otype = kp.ORDER_TYPES.index(entry.type)
        self._write(entry_slot, entry_meta, i, sign, qty, otype, limit_ticks, stop_ticks)
        # the exits wait outside the instrument's list, pending, until the entry fills
        pending = kp.OS_PENDING
        self._write(target_slot, target_meta, i, -sign, qty, kp.OT_LIMIT, target_ticks, 0, pending)
        self._write(stop_slot, stop_meta, i, -sign, qty, kp.OT_STOP, 0, exit_stop_ticks, pending)
        rows = self.orders
        rows[entry_slot]["leg"] = kp.LEG_ENTRY
        rows[entry_slot]["child_target"] = target_slot
        rows[entry_slot]["child_stop"] = stop_slot
        for slot, leg in ((target_slot, kp.LEG_TARGET), (stop_slot, kp.LEG_STOP)):
            rows[slot]["leg"] = leg
            rows[slot]["oco"] = group
            rows[slot]["parent"] = entry_slot
        for slot in (entry_slot, target_slot, stop_slot):
            self._accepted(slot)
        if otype == kp.OT_MARKET:
            self._fill_market(entry_slot)
        return Bracket(
            self._current(parent_id),
            self._current(target_meta.order_id),
            self._current(stop_meta.order_id),
        )

    def on_ticks(
        self,
        idx: np.ndarray,
        price: np.ndarray,
        ts: np.ndarray,
        n: int,
        *,
        size: np.ndarray | None = None,
        recv_ns: int = 0,
    ) -> None:
        """Match working orders against the first ``n`` ticks the engine just processed.

        Call once per batch, right after ``Engine.process`` ran the same scratch arrays (the
        engine's strategy decisions in that batch do not see these fills; see the module
        notes). Ticks the engine refused are skipped; pass ``size`` so that ticks refused for
        a bad size are skipped too. A call when the engine accepted no tick since the last one
        does nothing, so a batch is never matched twice. Fill events are drained to the
        engine's sinks, updates to the stream.

        Parameters
        ----------
        idx, price, ts : np.ndarray
            Scratch arrays of the batch (int64, float64, int64).
        n : int
            Ticks filled.
        size : np.ndarray, optional
            The batch's float64 sizes.
        recv_ns : int
            ``time.monotonic_ns()`` when the batch arrived, for the journal.
        """
        accepted = self.state.account_int(layout.A_TICKS)
        if n <= 0 or accepted == self._ticks_matched:
            return  # no tick accepted since the last call: nothing new (or this batch again)
        self._ticks_matched = accepted
        book, events = self.state.book, self.state.events
        check_size = size is not None
        sizes = size if size is not None else price
        self.counters[kp.C_CUR_K] = -1
        start = 0
        while True:
            start = kp.match_ticks(
                book,
                events,
                self.orders,
                self.ring,
                self.lists,
                self.counters,
                idx,
                price,
                sizes,
                check_size,
                ts,
                start,
                n,
            )
            self._decode()
            self.engine.drain(recv_ns)
            if start >= n:
                return

    @property
    def queued_updates(self) -> int:
        """Updates waiting in the stream's queue."""
        return self._queue.qsize()

    # -- internals -----------------------------------------------------------------------------

    def _check(self, order: OrderRequest) -> tuple[int, int, int]:
        i = self.state.index.get(order.symbol)
        if i is None:
            known = ", ".join(self.state.symbols)
            raise OrderError("symbol", f"unknown symbol {order.symbol!r} (known: {known})")
        inst = self.state.cfg.instruments[i]
        check_qty(order.qty, inst.lot_size)
        limit_ticks = stop_ticks = 0
        if order.limit_price is not None:
            limit_ticks = price_to_ticks("limit_price", order.limit_price, inst.tick_size)
        if order.stop_price is not None:
            stop_ticks = price_to_ticks("stop_price", order.stop_price, inst.tick_size)
        return i, limit_ticks, stop_ticks

    def _ltp_ticks(self, i: int) -> int | None:
        if self.state.book[i, layout.I_TICKS] <= 0.0:
            return None
        return int(self.state.book[i, layout.I_LTP_TICKS])

    def _refusal(self, otype: str, i: int, side: int, qty: int) -> str | None:
        if otype == "market" and self._ltp_ticks(i) is None:
            return "no_price"
        gate = kp.order_gate(self.state.book, i, side, qty, kp.LEG_NONE)
        return kp.ORDER_REASONS[gate] if gate != kp.PR_NONE else None

    def _new_id(self) -> tuple[int, str]:
        number = self._next_id
        self._next_id += 1
        return number, f"{self._prefix}{number}"

    def _meta_for(
        self, order: OrderRequest, parent_id: str | None, group: int | None = None
    ) -> _Meta:
        number, order_id = self._new_id()
        return _Meta(
            number,
            order_id,
            order.symbol,
            order.tag,
            order.oco_group if group is None else group,
            order.limit_price,
            order.stop_price,
            parent_id,
        )

    def _take_slots(self, count: int) -> list[int]:
        if len(self._free) < count:
            raise OrderError(
                "capacity",
                f"the order table is full ({self.capacity} open orders); cancel some first",
            )
        return [self._free.pop() for _ in range(count)]

    def _write(
        self,
        slot: int,
        meta: _Meta,
        i: int,
        side: int,
        qty: int,
        otype: int,
        limit_ticks: int,
        stop_ticks: int,
        status: int = kp.OS_WORKING,
    ) -> None:
        seq = int(self.counters[kp.C_SEQ])
        # every column, in ORDER_DTYPE order: a reused slot keeps nothing of its last order
        self.orders[slot] = (
            meta.number, i, side, qty, otype, limit_ticks, stop_ticks, 0, 0, status,
            kp.LEG_NONE, -1, -1, -1, -1, -1, seq, 0, 0, 0, kp.PR_NONE,
        )  # fmt: skip
        if status == kp.OS_WORKING:
            kp.link(self.orders, self.lists, slot)
        self._meta[slot] = meta
        self._slot_of[meta.order_id] = slot

    def _fill_market(self, slot: int) -> None:
        i = int(self.orders[slot]["inst"])
        side = int(self.orders[slot]["side"])
        book = self.state.book
        price_ticks = int(book[i, layout.I_LTP_TICKS]) + side * int(
            book[i, layout.I_SLIPPAGE_TICKS]
        )
        ts = int(self.state.ints[i, layout.I_LAST_TS])
        self.engine.drain()
        kp.fill_order(
            book,
            self.state.events,
            self.orders,
            self.ring,
            self.lists,
            self.counters,
            slot,
            price_ticks,
            ts,
        )
        self._decode()
        self.engine.drain()

    def _cancel_slot(self, slot: int) -> None:
        kp.finish(
            self.orders,
            self.ring,
            self.lists,
            self.counters,
            slot,
            kp.OS_CANCELLED,
            time.time_ns(),
            kp.PR_USER,
        )
        self._decode()

    def _open_slot(self, order_id: str, action: str) -> int:
        slot = self._slot_of.get(order_id)
        if slot is not None:
            return slot
        done = self._finished.get(order_id)
        if done is None:
            raise OrderError("order_id", f"unknown order {order_id!r}")
        raise OrderError(
            "order_id", f"cannot {action} order {order_id!r}: it is {done.status}, not open"
        )

    def _current(self, order_id: str) -> OrderState:
        slot = self._slot_of.get(order_id)
        return self._snapshot(slot) if slot is not None else self._finished[order_id]

    def _open_states(self) -> list[OrderState]:
        slots = sorted(self._slot_of.values(), key=lambda s: int(self.orders[s]["id"]))
        return [self._snapshot(slot) for slot in slots]

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
        count = int(self.counters[kp.C_UPDATES])
        if count == 0:
            return
        for kind, slot, _id, status, triggered, filled, fill_ticks, ts, reason in self.ring[
            :count
        ].tolist():
            state = self._state(slot, status, bool(triggered), filled, fill_ticks, ts, reason)
            why = state.reason
            if status == kp.OS_FILLED and state.leg in ("target", "stop"):
                why = state.leg
            self._emit(kp.UPDATE_KINDS[kind], state, why, ts)
            if status in _TERMINAL:
                self._retire(slot, state)
        self.counters[kp.C_UPDATES] = 0

    def _accepted(self, slot: int) -> None:
        self._emit("accepted", self._snapshot(slot), None, time.time_ns())

    def _reject(
        self,
        order: OrderRequest,
        reason: str,
        leg: str | None = None,
        parent: str | None = None,
    ) -> OrderState:
        state = OrderState(
            order_id=self._new_id()[1],
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            type=order.type,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            tag=order.tag,
            oco_group=order.oco_group,
            status="rejected",
            reason=reason,
            leg=leg,
            parent_id=parent,
        )
        self._remember(state)
        self._emit("rejected", state, reason, time.time_ns())
        return state

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

    def _emit(self, kind: str, state: OrderState, reason: str | None, ts: int) -> None:
        update = OrderUpdate(self._seq, kind, state, reason, ts)
        self._seq += 1
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped_updates += 1
        self._queue.put_nowait(update)


def _entry_error(exc: OrderError) -> OrderError:
    if exc.field in ("limit_price", "stop_price"):
        return OrderError(
            f"entry_{exc.field}", exc.message.replace(exc.field, "entry_" + exc.field)
        )
    if exc.field == "type":
        return OrderError("entry_type", exc.message)
    return exc
