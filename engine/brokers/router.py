"""Live order routing: the kernels' intents become broker orders, the broker's fills the ledger.

With a live broker the kernels fill nothing: an entry or exit leaves the kernel as an
``intent`` event and the instrument is marked pending (``I_PENDING``) so no second order
follows it. The router sends each intent as a market order tagged with its journal tag, and
books what the broker reports filled through the ``broker_fill`` kernel, so positions, P&L and
risk limits follow the broker's prices, not the intent's.

Brackets are kept by the engine as one-cancels-other pairs of ordinary orders: once an entry
has filled, a stop (Kite ``SL-M``, ProjectX type 4) and a target limit rest at the broker for
the filled quantity; the first to fill cancels the other, and a trailed or breakeven stop is a
modify of the resting stop. The same two orders work at all three brokers, they protect the
position while OTrade is down, and a trail is one modify. Kite's two-leg GTT was not used: GTTs
do not take the intraday ``MIS`` product, and a triggered GTT places a fresh order rather than
moving one. ProjectX's ``stopLossBracket`` is fixed at the entry, so it cannot trail.

Failures never reach the loop: a refused entry clears the pending mark and is journaled with
the broker's message; an exit that cannot be placed is retried (after the token is renewed,
when it expired) as long as the position is open; every broker error is journaled and pushed to
the page as an ``alert``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from engine.brokers.base import OrderRequest, OrderState
from engine.brokers.live_base import BrokerError, LiveAdapter, TokenExpired
from engine.core import Engine
from engine.journal import TAG_PREFIX, Journal, base36
from engine.state import PAUSE_BROKER
from kernels import layout

#: seconds between attempts to renew an expired token, and to resend a failed exit
RETRY_S = 1.0
#: exit reasons of the resting legs
LEG_REASONS = {"target": layout.R_TARGET, "stop": layout.R_STOP}


@dataclass(slots=True)
class Track:
    """What the router knows of one order it sent (or adopted)."""

    tag: str
    #: ``entry``, ``exit``, ``target`` or ``stop``
    role: str
    i: int
    side: int
    qty: int
    #: exit reason booked with its fills (``layout.R_*``)
    reason: int
    order_id: str | None = None
    filled: int = 0
    #: sum of price * units filled so far, to price each new fill from the average
    paid: float = 0.0
    final: bool = False
    #: the router cancelled it (OCO or before an exit), so its cancel is no surprise
    cancelling: bool = False


class Router:
    """Send the kernels' intents to a live broker and book its fills.

    Parameters
    ----------
    engine : Engine
        The engine whose state the fills update.
    adapter : LiveAdapter
        The broker.
    journal : Journal
        Where every order, fill and broker alert is recorded.
    publish : callable
        Pushes a record to the page.
    """

    def __init__(
        self,
        engine: Engine,
        adapter: LiveAdapter,
        journal: Journal,
        publish: Callable[[dict], None],
    ) -> None:
        self.engine = engine
        self.state = engine.state
        self.adapter = adapter
        self.journal = journal
        self.publish = publish
        self.by_tag: dict[str, Track] = {}
        self.by_id: dict[str, Track] = {}
        #: resting target and stop per instrument row
        self.legs: list[dict[str, Track]] = [{} for _ in range(self.state.n)]
        #: the stop price each row's resting stop should have (trail), and rows being modified
        self.wanted_stop: dict[int, float] = {}
        self._moving: set[int] = set()
        self.expired = False
        self._tasks: set[asyncio.Task] = set()
        self._legs_placed = 0

    # -- from the kernels -----------------------------------------------------------------------

    def on_records(self, records: list[dict]) -> None:
        """Act on one drained block's decoded events (intents and stop moves)."""
        for record in records:
            kind = record["type"]
            if kind == "intent":
                self._intent(record)
            elif kind == "stop_moved":
                i = self.state.index[record["symbol"]]
                self.wanted_stop[i] = record["stop"]
                if i not in self._moving and "stop" in self.legs[i]:
                    self._spawn(self._move_stop(i))

    def _intent(self, record: dict) -> None:
        i = self.state.index[record["symbol"]]
        side = layout.LONG if record["side"] == "buy" else layout.SHORT
        entry = record["reason"] == "entry"
        track = Track(
            tag=self.journal.tag(record["seq"]),
            role="entry" if entry else "exit",
            i=i,
            side=side,
            qty=record["qty"],
            reason=layout.R_NONE if entry else layout.EXIT_REASONS.index(record["reason"]),
        )
        self.by_tag[track.tag] = track
        self._spawn(self._send(track) if entry else self._exit(track))

    # -- sending --------------------------------------------------------------------------------

    def _request(self, track: Track, type_: str = "market", price: float | None = None):
        return OrderRequest(
            symbol=self.state.symbols[track.i],
            side="buy" if track.side == layout.LONG else "sell",
            qty=track.qty,
            type=type_,  # type: ignore[arg-type]
            limit_price=price if type_ == "limit" else None,
            stop_price=price if type_ == "stop" else None,
            tag=track.tag,
        )

    async def _send(self, track: Track, type_: str = "market", price: float | None = None) -> bool:
        """Place ``track``'s order; return whether the broker took it (even if it rejected)."""
        request = self._request(track, type_, price)
        try:
            order = await self.adapter.place(request)
        except TokenExpired as error:
            if not self.expired:  # the adapter has usually said so already
                self.alert("token_expired", error.message)
            self._give_up(track, f"token expired: {error.message}")
            return False
        except BrokerError as error:
            self.alert("broker_error", f"{track.role} {request.symbol}: {error.message}")
            self._give_up(track, error.message)
            return False
        self._placed(track, order)
        return True

    def _placed(self, track: Track, order: OrderState) -> None:
        track.order_id = order.order_id
        self.by_id[order.order_id] = track
        self.journal.line(
            "order",
            "placed",
            tag=track.tag,
            order_id=order.order_id,
            role=track.role,
            symbol=self.state.symbols[track.i],
            side=order.side,
            qty=order.qty,
            order_type=order.type,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            status=order.status,
        )
        self.on_order(order)

    def _give_up(self, track: Track, message: str) -> None:
        """An order that never reached the broker: entries are dropped, the rest retried."""
        symbol = self.state.symbols[track.i]
        if track.role == "entry":
            track.final = True
            self.state.book[track.i, layout.I_PENDING] = 0
            self.journal.line("order", "dropped", tag=track.tag, symbol=symbol, reason=message)
            return
        if self.legs[track.i].get(track.role) is track:
            # never placed: protect() places a fresh one in its stead
            del self.legs[track.i][track.role]
            self.by_tag.pop(track.tag, None)
        self._spawn(self._retry(track))

    async def _retry(self, track: Track) -> None:
        while self.expired:
            await asyncio.sleep(RETRY_S)
        await asyncio.sleep(RETRY_S)
        if self.state.book[track.i, layout.I_SIDE] == layout.FLAT:
            self.state.book[track.i, layout.I_PENDING] = 0
            return
        if track.role == "exit":
            track.qty = int(self.state.book[track.i, layout.I_QTY])
            await self._exit(track)
        else:
            await self.protect(track.i)

    async def _exit(self, track: Track) -> None:
        legs = self.legs[track.i]
        await asyncio.gather(*(self._cancel(leg) for leg in list(legs.values())))
        book = self.state.book
        if book[track.i, layout.I_SIDE] == layout.FLAT:
            # a resting leg filled first: nothing left to close
            book[track.i, layout.I_PENDING] = 0
            return
        track.qty = int(book[track.i, layout.I_QTY])
        await self._send(track)

    async def _cancel(self, track: Track) -> None:
        if track.final or track.order_id is None:
            return
        track.cancelling = True
        try:
            order = await self.adapter.cancel(track.order_id)
        except BrokerError as error:
            # already filled or gone: the update stream tells which
            self.alert("broker_error", f"cancel {track.role} {track.tag}: {error.message}")
            return
        self.on_order(order)

    async def protect(self, i: int) -> None:
        """Place the resting target and stop of row ``i``'s position at its bracket levels."""
        book = self.state.book
        side = int(book[i, layout.I_SIDE])
        if side == layout.FLAT or book[i, layout.I_STOP_KIND] == layout.R_NONE:
            return
        tick = book[i, layout.I_TICK_SIZE]
        qty = int(book[i, layout.I_QTY])
        prices = {
            "target": float(round(book[i, layout.I_TARGET]) * tick),
            "stop": float(round(book[i, layout.I_STOP]) * tick),
        }
        sends = []
        for role, type_ in (("target", "limit"), ("stop", "stop")):
            if role in self.legs[i] and not self.legs[i][role].final:
                continue
            self._legs_placed += 1
            leg = Track(
                # upper case: the intents' base-36 tags are lower case, so never the same
                tag=f"{TAG_PREFIX}{self.journal.run_id}L{base36(self._legs_placed)}",
                role=role,
                i=i,
                side=-side,
                qty=qty,
                reason=LEG_REASONS[role],
            )
            self.by_tag[leg.tag] = leg
            self.legs[i][role] = leg
            sends.append(self._send(leg, type_, prices[role]))
        await asyncio.gather(*sends)

    async def _move_stop(self, i: int) -> None:
        self._moving.add(i)
        try:
            sent = None
            while (stop := self.wanted_stop.get(i)) != sent:
                leg = self.legs[i].get("stop")
                if leg is None or leg.final or leg.order_id is None:
                    return
                try:
                    order = await self.adapter.modify(leg.order_id, stop_price=stop)
                except BrokerError as error:
                    self.alert("broker_error", f"move stop {leg.tag}: {error.message}")
                    return
                sent = stop
                self.journal.line("order", "modified", tag=leg.tag, stop_price=stop)
                self.on_order(order)
        finally:
            self._moving.discard(i)

    # -- from the broker ------------------------------------------------------------------------

    async def follow(self) -> None:
        """Book every order update of the broker's stream until cancelled."""
        async for update in self.adapter.updates():
            try:
                self.on_order(update.order)
            except Exception as error:  # noqa: BLE001 - a bad update must not stop the stream
                self.alert("broker_error", f"order update {update.order.order_id}: {error}")

    def on_order(self, order: OrderState) -> None:
        """Book what ``order`` filled since last seen; settle it when it is final."""
        track = self.by_tag.get(order.tag or "") or self.by_id.get(order.order_id)
        if track is None or track.final:
            return
        if track.order_id is None:
            track.order_id = order.order_id
            self.by_id[order.order_id] = track
        new = order.filled_qty - track.filled
        if new > 0 and order.fill_price is not None:
            total = order.fill_price * order.filled_qty
            price = (total - track.paid) / new
            track.filled, track.paid = order.filled_qty, total
            self._book_fill(track, new, price, order.fill_ts or time.time_ns())
        if order.status in ("filled", "cancelled", "rejected"):
            track.final = True
            # forget it: a late repeat of its last update then finds nothing to book
            self.by_tag.pop(track.tag, None)
            self.by_id.pop(order.order_id, None)
            self._settle(track, order)

    def _book_fill(self, track: Track, qty: int, price: float, ts: int) -> None:
        reason = track.reason
        if track.role == "stop":
            reason = int(self.state.book[track.i, layout.I_STOP_KIND]) or layout.R_STOP
        self.engine.broker_fill(
            track.i, track.side, qty, price, reason, ts, tag=track.tag, order_id=track.order_id
        )

    def _settle(self, track: Track, order: OrderState) -> None:
        i, book = track.i, self.state.book
        symbol = self.state.symbols[i]
        if order.status != "filled" and not track.cancelling:
            message = order.reason or order.status
            self.journal.line("order", order.status, tag=track.tag, symbol=symbol, reason=message)
            self.alert("broker_error", f"{track.role} {symbol} {order.status}: {message}")
        if track.role in ("entry", "exit"):
            book[i, layout.I_PENDING] = 0
        if track.role == "entry" and track.filled:
            if self.state.halt_reason() in layout.GATE_REASONS[1:4]:
                # halted while the entry was on its way: close what it opened
                self.engine.flatten(symbol)
            else:
                self._spawn(self.protect(i))
        elif track.role == "exit" and book[i, layout.I_SIDE] != layout.FLAT:
            self._spawn(self._retry(track))
        elif track.role in LEG_REASONS:
            legs = self.legs[i]
            if legs.get(track.role) is track:
                del legs[track.role]
            if order.status == "filled":
                for other in list(legs.values()):
                    self._spawn(self._cancel(other))
            elif not track.cancelling and book[i, layout.I_SIDE] != layout.FLAT:
                # a protective order vanished under an open position: put it back
                self._spawn(self._retry(track))

    def working(self) -> list[dict]:
        """Return the orders sent and not yet final, oldest first."""
        return [
            {
                "tag": track.tag,
                "order_id": track.order_id,
                "role": track.role,
                "symbol": self.state.symbols[track.i],
                "side": "buy" if track.side == layout.LONG else "sell",
                "qty": track.qty,
                "filled_qty": track.filled,
            }
            for track in self.by_tag.values()
            if not track.final
        ]

    # -- token and alerts -----------------------------------------------------------------------

    def alert(self, code: str, message: str) -> None:
        """Journal and publish a broker alert; pause entries while the token is expired."""
        self.journal.line("broker", code, message=message)
        self.publish({"type": "alert", "code": code, "message": message})
        if code == "token_expired" and not self.expired:
            self.expired = True
            self.state.set_pause(PAUSE_BROKER, True)
            self._spawn(self._renew())
        elif code == "token_renewed" and self.expired:
            self.expired = False
            self.state.set_pause(PAUSE_BROKER, False)

    async def _renew(self) -> None:
        while self.expired:
            await asyncio.sleep(RETRY_S)
            try:
                renewed = await self.adapter.renew()
            except BrokerError as error:
                self.journal.line("broker", "renew_failed", message=error.message)
                continue
            if renewed and self.expired:
                self.alert("token_renewed", "token renewed")

    # -- tasks ----------------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.alert("broker_error", f"{type(task.exception()).__name__}: {task.exception()}")

    async def close(self) -> None:
        """Cancel the router's own tasks (orders already sent stay at the broker)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
