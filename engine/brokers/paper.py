"""The paper broker: operator orders filled inside the process, against the engine's ticks.

It implements :class:`engine.brokers.base.Broker` over a preallocated order table
(:mod:`engine.brokers.paper_table`) matched by the kernels of :mod:`kernels.paper`, with the
fill rules of the strategy path (see that module): market at the LTP plus
``broker.slippage_ticks`` against the order, limits at their limit price, stops at the
triggering tick's own price, stop-limits resting as limits once triggered. Fills go through
``apply_fill`` with reason ``manual``, so positions, P&L, the loss limits, the event ring and
the journal see them like any fill. Requests are checked first by
:mod:`engine.brokers.paper_checks`.

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

import functools
from collections.abc import AsyncIterator
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
)
from engine.brokers.paper_checks import (
    check_change,
    check_exits,
    check_order,
    entry_error,
    ltp_ticks,
    refusal,
)
from engine.brokers.paper_table import OrderTable
from engine.brokers.stream import UpdateStream
from kernels import layout
from kernels import paper as kp

if TYPE_CHECKING:
    from engine.core import Engine

__all__ = ["PaperBroker"]

#: default rows of the order table: working and pending orders at once
DEFAULT_CAPACITY = 1024
#: default length of the update stream's queue before the oldest update is dropped
DEFAULT_UPDATE_CAPACITY = 10_000


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
        self._stream = UpdateStream(update_capacity)
        #: the orders: their rows for the kernels and their states for the interface
        self.table = table = OrderTable(engine.state, capacity, self._stream)
        # the table's arrays, for inspection
        self.orders, self.ring = table.orders, table.ring
        self.lists, self.counters = table.lists, table.counters
        self._ticks_matched = self.state.account_int(layout.A_TICKS)
        self._next_group = -1

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
        i, limit_ticks, stop_ticks = check_order(self.state, order)
        reason = refusal(self.state, order, i)
        if reason:
            return self.table.reject(order, reason)
        slot = self.table.take(1)[0]
        order_id = self.table.add(slot, order, i, limit_ticks, stop_ticks)
        if order.type == "market":
            self._fill_market(slot)
        return self.table.current(order_id)

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
        slot = self.table.open_slot(order_id, "modify")
        change = check_change(self.state, self.orders[slot], qty, limit_price, stop_price)
        return self.table.modify(slot, *change)

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
        self.table.cancel(self.table.open_slot(order_id, "cancel"))
        return self.table.current(order_id)

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
        ids = [s.order_id for s in self.table.open_states() if symbol in (None, s.symbol)]
        for order_id in ids:
            if self.table.is_open(order_id):  # a cancelled entry took its pending exits along
                self.table.cancel(self.table.open_slot(order_id, "cancel"))
        return [self.table.current(order_id) for order_id in ids]

    async def open_orders(self) -> list[OrderState]:
        """Return the pending and working orders, oldest first."""
        return self.table.open_states()

    async def positions(self) -> dict[str, dict]:
        """Return the engine's open positions by symbol (see ``State.positions``)."""
        return self.state.positions()

    async def updates(self) -> AsyncIterator[OrderUpdate]:
        """Yield order updates as they happen, oldest first; one consumer at a time."""
        while True:
            yield await self._stream.get()

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
            i, limit_ticks, stop_ticks = check_order(self.state, entry)
        except OrderError as exc:
            raise entry_error(exc) from None
        tick_size = self.state.cfg.instruments[i].tick_size
        reference = {"limit": limit_ticks, "stop_limit": limit_ticks, "stop": stop_ticks}.get(
            entry.type, ltp_ticks(self.state, i)
        )
        target, stop, target_ticks, exit_stop_ticks = check_exits(
            entry, reference, target_price, stop_price, tick_size
        )
        reason = refusal(self.state, entry, i)
        if reason:
            rejected = self.table.reject(entry, reason, "entry")
            parent_id = rejected.order_id
            return Bracket(
                rejected,
                self.table.reject(target, "parent_rejected", "target", parent_id),
                self.table.reject(stop, "parent_rejected", "stop", parent_id),
            )

        table = self.table
        entry_slot, target_slot, stop_slot = table.take(3)
        group = self._next_group
        self._next_group -= 1
        entry_id = table.add(entry_slot, entry, i, limit_ticks, stop_ticks, leg=kp.LEG_ENTRY)
        # the exits wait outside the instrument's list, pending, until the entry fills
        target_id = table.add(
            target_slot, target, i, target_ticks, 0, leg=kp.LEG_TARGET, parent=entry_slot, oco=group
        )
        stop_id = table.add(
            stop_slot, stop, i, 0, exit_stop_ticks, leg=kp.LEG_STOP, parent=entry_slot, oco=group
        )
        if entry.type == "market":
            self._fill_market(entry_slot)
        return Bracket(table.current(entry_id), table.current(target_id), table.current(stop_id))

    def on_ticks(
        self,
        idx: np.ndarray,
        price: np.ndarray,
        ts: np.ndarray,
        n: int,
        *,
        codes: np.ndarray,
        recv_ns: int = 0,
    ) -> None:
        """Match working orders against the first ``n`` ticks the engine just processed.

        Call once per batch, right after ``Engine.process`` ran the same scratch arrays (the
        engine's strategy decisions in that batch do not see these fills; see the module
        notes). Only the ticks the kernels accepted match, as ``codes`` tells. A call when the
        engine accepted no tick since the last one does nothing, so a batch is never matched
        twice. Fill events are drained to the engine's sinks, updates to the stream.

        Parameters
        ----------
        idx, price, ts : np.ndarray
            Scratch arrays of the batch (int64, float64, int64).
        n : int
            Ticks filled.
        codes : np.ndarray
            The codes ``run_ticks`` wrote for the batch (0 = accepted).
        recv_ns : int
            ``time.monotonic_ns()`` when the batch arrived, for the journal.
        """
        if not self.table.has_open:
            return  # nothing can fill; the next order matches from the next batch on
        accepted = self.state.account_int(layout.A_TICKS)
        if n <= 0 or accepted == self._ticks_matched:
            return  # no tick accepted since the last call: nothing new (or this batch again)
        self._ticks_matched = accepted
        drain = functools.partial(self.engine.drain, recv_ns)
        self.table.match(idx, price, codes, ts, n, drain)

    @property
    def queued_updates(self) -> int:
        """Updates waiting in the stream's queue."""
        return self._stream.queued

    @property
    def dropped_updates(self) -> int:
        """Updates dropped because the stream's queue was full."""
        return self._stream.dropped

    # -- internals -----------------------------------------------------------------------------

    def _fill_market(self, slot: int) -> None:
        i, side = int(self.orders[slot]["inst"]), int(self.orders[slot]["side"])
        book = self.state.book
        slippage = side * int(book[i, layout.I_SLIPPAGE_TICKS])
        price_ticks = int(book[i, layout.I_LTP_TICKS]) + slippage
        ts = int(self.state.ints[i, layout.I_LAST_TS])
        self.engine.drain()
        self.table.fill(slot, price_ticks, ts)
        self.engine.drain()
