"""Live order routing: the kernels' intents become broker orders, the broker's fills the ledger.

With a live broker the kernels fill nothing: an entry or exit leaves the kernel as an
``intent`` event and the instrument is marked pending (``I_PENDING``) so no second order
follows it. The router sends each intent as a market order tagged with its journal tag, and
books what the broker reports filled through the ``broker_fill`` kernel, so positions, P&L and
risk limits follow the broker's prices, not the intent's.

Each position is one :class:`~engine.brokers.routing.brackets.Bracket`: entry -> working legs ->
exit -> done. Once its entry has filled, a stop (Kite ``SL-M``, ProjectX type 4) and a target limit
rest at the broker for the filled quantity; the first to fill cancels the other, and a trailed or
breakeven stop is a modify of the resting stop. The same two orders work at all three brokers, they
protect the position while OTrade is down, and a trail is one modify. Kite's two-leg GTT was not
used: GTTs do not take the intraday ``MIS`` product, and a triggered GTT places a fresh order rather
than moving one. ProjectX's ``stopLossBracket`` is fixed at the entry, so it cannot trail.

When something goes wrong the position is never left without its stop:

- a stop leg the broker refuses or rejects (a trigger already through the price, say), or a
  trail it will not take, closes the position at market at once (reason ``stop``), journaled
  with the broker's message; the kernels do the same when the price goes through the stop while
  no stop rests (``I_STOP_RESTING``), e.g. before the legs are placed;
- a leg whose position is gone is cancelled, and the cancel is retried (after a token renewal,
  after a 429 or a 5xx) until the broker reports the leg final; a leg still queued behind the
  client-side rate limit when its position closes is dropped before it is sent;
- a leftover leg that fills anyway (``orphan``) is booked, since the broker holds what it
  opened, and closed at market at once (reason ``orphan``);
- an exit that cannot be placed is retried while the position is open; a refused entry clears
  the pending mark; every broker error is journaled and pushed to the page as an ``alert``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from engine.brokers.base import OrderRequest, OrderState
from engine.brokers.live_base import BrokerError, Dropped, LiveAdapter, RateLimited, TokenExpired
from engine.brokers.routing import invariants
from engine.brokers.routing.brackets import GRACE_S, Bracket, Track
from engine.brokers.routing.legs import LEG_TYPES, RETRY_S, LegKeeper
from engine.core import Engine
from engine.journal import TAG_PREFIX, Journal, base36
from engine.state import PAUSE_BROKER
from kernels import layout

#: halts under which an entry that filled anyway is closed at once
HALTS = ("halted", "max_loss", "daily_loss", "profit_target")


class Router(LegKeeper):
    """Send the kernels' intents to a live broker, keep each position's bracket, book fills.

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
        #: orders not yet final, by tag and by broker id
        self.by_tag: dict[str, Track] = {}
        self.by_id: dict[str, Track] = {}
        #: each instrument row's current bracket, and every bracket with live orders by key
        self.current: list[Bracket | None] = [None] * self.state.n
        self.brackets: dict[str, Bracket] = {}
        #: the stop price each row's resting stop should have (trail), and rows being modified
        self.wanted_stop: dict[int, float] = {}
        self._moving: set[int] = set()
        #: rows whose legs are being resized (:meth:`fit`)
        self._fitting: set[int] = set()
        #: set by :func:`~engine.brokers.routing.reconcile.reconcile` once the journal's orders
        #: are back
        self.rebuilt = False
        self._tasks: set[asyncio.Task] = set()
        self._made = 0
        #: clear while the broker's token is expired (what waits for a renewal waits on it)
        self._renewed = asyncio.Event()
        self._renewed.set()

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
                if i not in self._moving:
                    self.spawn(self._move_stop(i))

    def _intent(self, record: dict) -> None:
        i = self.state.index[record["symbol"]]
        side = layout.LONG if record["side"] == "buy" else layout.SHORT
        tag = self.journal.tag(record["seq"])
        if record["reason"] == "entry":
            bracket = self.start_bracket(i, tag)
            bracket.entry = self.track(tag, "entry", i, side, record["qty"], layout.R_NONE, tag)
            self.spawn(self._send(bracket.entry))
            return
        bracket = self.current[i] or self.start_bracket(i, tag, "open")
        if bracket.exiting():
            return  # one exit per position: the one on its way closes all of it
        reason = layout.EXIT_REASONS.index(record["reason"])
        bracket.phase = "exiting"
        bracket.exit = self.track(tag, "exit", i, side, record["qty"], reason, bracket.key)
        self.refresh(i)
        self.spawn(self._exit(bracket))

    # -- brackets and tracks --------------------------------------------------------------------

    def start_bracket(self, i: int, key: str, phase: str = "entering") -> Bracket:
        """Make ``key`` row ``i``'s current bracket; the one before it is retired."""
        self._retire(i)
        bracket = self.current[i] = self.brackets[key] = Bracket(key, i, phase)
        return bracket

    def track(
        self,
        tag: str,
        role: str,
        i: int,
        side: int,
        qty: int,
        reason: int,
        key: str,
        order_type: str = "market",
        price: float | None = None,
        order_id: str | None = None,
    ) -> Track:
        """Register and return an order of position ``key``; with ``order_id`` one already at
        the broker (found there, or put back from the journal), working."""
        track = Track(tag, role, i, side, int(qty), reason, key, order_type, price)
        self.by_tag[tag] = track
        if order_id:
            track.order_id, track.status = order_id, "working"
            self.by_id[order_id] = track
        return track

    def new_tag(self) -> str:
        """Return a fresh tag for an order (or a position) the router makes itself."""
        self._made += 1
        # upper case: the intents' base-36 tags are lower case, so never the same
        return f"{TAG_PREFIX}{self.journal.run_id}L{base36(self._made)}"

    def _retire(self, i: int) -> None:
        old = self.current[i]
        if old is None:
            return
        self.current[i] = None
        old.phase, old.retired_at = "done", time.monotonic()
        for leg in list(old.legs.values()):
            self.cancel_later(leg)
        self._forget(old)

    def hold(self, i: int) -> int:
        """Give row ``i``'s held position a current bracket if it has none; return ``i``."""
        if self.current[i] is None and self.held(i)[0] != layout.FLAT:
            self.start_bracket(i, self.new_tag(), "open")
        return i

    def drop(self, track: Track, reason: str, retry: bool = False) -> None:
        """Give up ``track`` as never placed (the broker does not know it); with ``retry`` a
        leg is placed anew rather than its position closed."""
        self._finish(track, "dropped", reason, retry=retry)

    def _forget(self, bracket: Bracket) -> None:
        if bracket is not self.current[bracket.i] and all(t.final for t in bracket.tracks()):
            self.brackets.pop(bracket.key, None)

    def held(self, i: int) -> tuple[int, int]:
        """Return row ``i``'s side and units as the engine (and so the broker) holds them."""
        book = self.state.book
        return int(book[i, layout.I_SIDE]), int(book[i, layout.I_QTY])

    @property
    def expired(self) -> bool:
        """Whether the broker's token is expired (entries paused, renewal being tried)."""
        return not self._renewed.is_set()

    def _wanted(self, track: Track) -> bool:
        bracket = self.brackets.get(track.key)
        if track.cancelling or bracket is None or bracket is not self.current[track.i]:
            return False
        side, _ = self.held(track.i)
        if track.role == "entry":
            # an entry whose journal line may be lost never leaves
            entering = bracket.phase == "entering" and self.journal.writable
            return entering and self.state.halt_reason() not in HALTS
        if track.role == "exit":
            return side != layout.FLAT and bracket.exit is track
        return (
            side == -track.side
            and bracket.phase == "open"
            and bracket.legs.get(track.role) is track
        )

    def refresh(self, i: int) -> str:
        """Set row ``i``'s pending mark and stop flag from its bracket; return its protection."""
        book, bracket = self.state.book, self.current[i]
        _, qty = self.held(i)
        pending = 0
        if bracket is not None and bracket.exiting():
            pending = layout.PENDING_EXIT
        elif bracket is not None and bracket.entry is not None and not bracket.entry.final:
            pending = bracket.entry.side
        book[i, layout.I_PENDING] = pending
        resting = bracket is not None and bracket.stop_resting(qty)
        book[i, layout.I_STOP_RESTING] = 1.0 if resting else 0.0
        if bracket is None:
            return "unprotected" if qty else "flat"
        return bracket.note(qty)

    # -- sending --------------------------------------------------------------------------------

    async def _send(self, track: Track) -> None:
        request = OrderRequest(
            symbol=self.state.symbols[track.i],
            side="buy" if track.side == layout.LONG else "sell",
            qty=track.qty,
            type=track.order_type,  # type: ignore[arg-type]
            limit_price=track.price if track.order_type == "limit" else None,
            stop_price=track.price if track.order_type == "stop" else None,
            tag=track.tag,
        )
        # journaled before it leaves: a restart finds it at the broker by its tag even when
        # OTrade died before the broker's answer
        self.record("sending", track)
        try:
            order = await self.adapter.place(request, guard=lambda: self._wanted(track))
        except Dropped:
            self._finish(track, "dropped", "no longer wanted when the rate limit let it go")
        except TokenExpired as error:
            if not self.expired:  # the adapter has usually said so already
                self.alert("token_expired", error.message)
            self._finish(track, "dropped", f"token expired: {error.message}", retry=True)
        except BrokerError as error:
            self.alert("broker_error", f"{track.role} {request.symbol}: {error.message}")
            transient = isinstance(error, RateLimited) or not 400 <= error.status < 500
            status = "dropped" if transient or track.role == "entry" else "rejected"
            self._finish(track, status, error.message, retry=transient)
        else:
            self._placed(track, order)

    def _placed(self, track: Track, order: OrderState) -> None:
        track.order_id = order.order_id
        if not track.final:  # else the update stream settled it before the answer came
            self.by_id[order.order_id] = track
        self.record("placed", track, status=order.status)
        self.on_order(order)
        if not track.final and not self._wanted(track) and track.role != "entry":
            # its position closed while the placement was on its way
            self.cancel_later(track, force=True)

    def record(self, action: str, track: Track, **fields) -> None:
        """Journal an ``order`` line of ``track`` (``sending``, ``placed``, ``adopted``)."""
        self.journal.line(
            "order",
            action,
            tag=track.tag,
            order_id=track.order_id,
            role=track.role,
            position=track.key,
            symbol=self.state.symbols[track.i],
            side="buy" if track.side == layout.LONG else "sell",
            qty=track.qty,
            order_type=track.order_type,
            limit_price=track.price if track.order_type == "limit" else None,
            stop_price=track.price if track.order_type == "stop" else None,
            reason=layout.EXIT_REASONS[track.reason],
            **fields,
        )

    # -- from the broker ------------------------------------------------------------------------

    async def follow(self) -> None:
        """Book every order update of the broker's stream, and watch every position's
        protection (:func:`~engine.brokers.routing.invariants.watch`), until cancelled."""
        watchdog = asyncio.get_running_loop().create_task(invariants.watch(self))
        try:
            async for update in self.adapter.updates():
                try:
                    self.on_order(update.order)
                except Exception as error:  # noqa: BLE001 - a bad update must not stop the stream
                    self.alert("broker_error", f"order update {update.order.order_id}: {error}")
        finally:
            watchdog.cancel()

    def on_order(self, order: OrderState) -> None:
        """Book what ``order`` filled since last seen; settle it when it is final."""
        track = self.by_tag.get(order.tag or "") or self.by_id.get(order.order_id)
        if track is None or track.final:
            return  # not ours, or a late repeat of an update already settled
        if track.order_id is None and order.order_id:
            track.order_id = order.order_id
            self.by_id[order.order_id] = track
        new = order.filled_qty - track.filled
        if new > 0 and order.fill_price is not None:
            total = order.fill_price * order.filled_qty
            price = (total - track.paid) / new
            track.filled, track.paid = order.filled_qty, total
            self._book_fill(track, new, price, order.fill_ts or time.time_ns())
        if order.status in ("filled", "cancelled", "rejected"):
            self._finish(track, order.status, order.reason)
        elif order.status == "working" and track.status == "sending":
            track.status = "working"
            self.refresh(track.i)
            wanted = self.wanted_stop.get(track.i)
            if track.role == "stop" and wanted not in (None, track.price):
                self.spawn(self._move_stop(track.i))  # the trail moved while it was placed

    def _book_fill(self, track: Track, qty: int, price: float, ts: int) -> None:
        i = track.i
        bracket = self.brackets.get(track.key)
        side, _ = self.held(i)
        mine = track.role == "entry" or (
            bracket is not None and bracket is self.current[i] and side == -track.side
        )
        reason = track.reason
        if track.role == "stop":
            reason = int(self.state.book[i, layout.I_STOP_KIND]) or layout.R_STOP
        if not mine:
            reason = layout.R_ORPHAN
        note = {"tag": track.tag, "order_id": track.order_id}
        self.engine.broker_fill(i, track.side, qty, price, reason, ts, **note)
        after, _ = self.held(i)
        if mine and (track.role == "entry" or after != track.side):
            if track.role != "entry" and after != layout.FLAT:
                self.spawn(self.protect(i))  # a partial fill: the rest of the legs fit what is left
            return
        # a position no strategy chose: opened by a leg of a closed position, or by a leg that
        # filled through the position it protected (sized for more than was left)
        symbol = self.state.symbols[i]
        self.alert("orphan_fill", f"{symbol}: {track.role} {track.tag} filled {qty} at "
                   f"{price:g} beyond its position; closing what it opened")  # fmt: skip
        if after == layout.FLAT:
            self._retire(i)
        else:
            self.start_bracket(i, track.tag, "open")
            self.close_position(i, layout.R_ORPHAN, f"{track.tag} filled after its position closed")

    def _finish(self, track: Track, status: str, reason: str | None, retry: bool = False) -> None:
        if track.final:
            return
        track.status = status
        track.settled.set()
        self.by_tag.pop(track.tag, None)
        if track.order_id is not None:
            self.by_id.pop(track.order_id, None)
        symbol = self.state.symbols[track.i]
        self.journal.line("order", status, tag=track.tag, order_id=track.order_id,
                          role=track.role, position=track.key, symbol=symbol,
                          filled_qty=track.filled, reason=reason)  # fmt: skip
        if status in ("cancelled", "rejected") and not track.cancelling:
            self.alert("broker_error", f"{track.role} {symbol} {status}: {reason or status}")
        self._settle(track, status, reason or status, retry)

    def _settle(self, track: Track, status: str, reason: str, retry: bool) -> None:
        i, bracket = track.i, self.brackets.get(track.key)
        current = bracket is not None and bracket is self.current[i]
        side, _ = self.held(i)
        if current and track.role == "entry":
            if track.filled and self.state.halt_reason() in HALTS:
                self.engine.flatten(self.state.symbols[i])  # halted while it was on its way
            elif track.filled and bracket.phase == "entering":
                bracket.phase = "open"
                self.spawn(self.protect(i))
            elif side == layout.FLAT:
                self._retire(i)
        elif track.role in LEG_TYPES and bracket is not None:
            if bracket.legs.get(track.role) is track:
                del bracket.legs[track.role]
            open_ = current and bracket.phase == "open" and side != layout.FLAT
            if status == "filled":
                for other in list(bracket.legs.values()):
                    self.cancel_later(other)
                if current and side == layout.FLAT:
                    self._retire(i)
                elif open_:
                    self.spawn(self.protect(i))
            elif open_ and not track.cancelling and track.role == "stop" and not retry:
                # a refused or rejected stop: nothing protects the position but closing it
                self.close_position(i, layout.R_STOP, f"stop {status}: {reason}")
            elif open_ and not track.cancelling and (retry or status == "cancelled"):
                # never placed, or cancelled by someone else: put it back
                self.spawn(self._later(self.protect(i)) if retry else self.protect(i))
        if bracket is not None:
            self._forget(bracket)
        self.refresh(i)

    async def _later(self, work: Coroutine[Any, Any, Any]) -> None:
        await self._pause()
        await work

    # -- what it shows --------------------------------------------------------------------------

    def violations(self, grace_s: float = GRACE_S) -> list[str]:
        """Return what breaks the bracket invariants now (after ``grace_s`` of leeway)."""
        return list(invariants.breaches(self, grace_s).values())

    def legs_view(self, symbol: str) -> dict:
        """Return ``symbol``'s protection state and its resting legs, for the page and API."""
        return invariants.legs_view(self, symbol)

    def working(self) -> list[dict]:
        """Return the orders sent and not yet final, oldest first."""
        return invariants.working(self)

    # -- token and alerts -----------------------------------------------------------------------

    def alert(self, code: str, message: str) -> None:
        """Journal and publish a broker alert; pause entries while the token is expired."""
        self.journal.line("broker", code, message=message)
        self.publish({"type": "alert", "code": code, "message": message})
        if code == "token_expired" and not self.expired:
            self._renewed.clear()
            self.state.set_pause(PAUSE_BROKER, True)
            self.spawn(self._renew())
        elif code == "token_renewed" and self.expired:
            self._renewed.set()
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

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
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
