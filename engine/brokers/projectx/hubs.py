"""ProjectX's two SignalR hubs: the market feed (ticks) and the user hub (order updates).

Market hub. After every connect each configured contract is subscribed with
``SubscribeContractQuotes`` and ``SubscribeContractTrades``. ``GatewayTrade`` events,
``[contractId, [{price, timestamp, type, volume, ...}, ...]]`` (or a single object), become
ticks: price, size = volume, ts = the frame's arrival wall clock (``time.time_ns()``). All
ticks of one WebSocket frame go to the engine as one batch. ``GatewayQuote`` events are
counted but not turned into ticks: every trade already arrives as a ``GatewayTrade`` with its
size, and a quote's ``lastPrice`` repeats the last trade's price without one, so using it would
count that trade twice.

User hub. After every connect: ``SubscribeAccounts``, ``SubscribeOrders``,
``SubscribePositions`` and ``SubscribeTrades`` with the account id. ``GatewayUserOrder`` and
``GatewayUserTrade`` events go through :class:`OrderTracker`, which turns the gateway's orders
into :class:`~engine.brokers.base.OrderState` records and streams each change of one of our
orders once, however many times the stream and the poll report it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from engine.brokers.base import OrderState
from engine.brokers.projectx.signalr import HubConnection, HubHandler
from engine.brokers.stream import UpdateStream
from engine.feeds.ticks import TickBatch

#: ProjectX order status -> OrderState status (None, Open, Filled, Cancelled, Expired,
#: Rejected, Pending, PendingCancellation, Suspended)
STATUSES: dict[int, str] = {
    0: "working",
    1: "working",
    2: "filled",
    3: "cancelled",
    4: "cancelled",
    5: "rejected",
    6: "working",
    7: "working",
    8: "working",
}
#: the reason of a cancel or reject: the gateway's status name (its events carry no message)
STATUS_NAMES: dict[int, str] = {3: "Cancelled", 4: "Expired", 5: "Rejected"}
#: ProjectX order type -> OrderType; a trailing stop counts as a stop, join-bid/ask as limits
ORDER_TYPES: dict[int, str] = {
    1: "limit",
    2: "market",
    3: "stop_limit",
    4: "stop",
    5: "stop",
    6: "limit",
    7: "limit",
}
#: OrderType -> ProjectX order type code
TYPE_CODES: dict[str, int] = {"limit": 1, "market": 2, "stop_limit": 3, "stop": 4}
#: ticks one batch holds; a larger frame goes to the engine in several calls
FRAME_BATCH_TICKS = 4096


def parse_ts(text: object) -> int | None:
    """Return an ISO 8601 gateway timestamp as ns since the epoch.

    Parameters
    ----------
    text : object
        The field's value, e.g. ``"2025-03-14T14:30:01.1234567+00:00"``; without a zone it is
        UTC.

    Returns
    -------
    int or None
        None when the value is absent or not a timestamp.
    """
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


def unwrap(argument: object) -> dict | None:
    """Return the record of a user-hub event: ``{"action", "data": {...}}`` or the record."""
    if isinstance(argument, dict):
        inner = argument.get("data")
        if "id" not in argument and isinstance(inner, dict):
            return inner
        return argument
    return None


class OrderTracker:
    """Our orders as last known, and the update stream of their changes.

    Ours are the orders carrying a ``customTag`` (every order the adapter places has one);
    each is recorded in ``tags``. A state merged in never moves backwards: filled quantity
    never drops and a finished order stays finished, so a late poll cannot undo a fill the
    stream already reported.

    Parameters
    ----------
    symbols : dict of str to str
        Configured symbol by contract id.
    stream : UpdateStream
        Where updates go.
    tags : dict of str to str
        The adapter's tag -> order id map, filled as orders are seen.
    """

    def __init__(self, symbols: dict[str, str], stream: UpdateStream, tags: dict[str, str]):
        self.symbols = symbols
        self.stream = stream
        self.tags = tags
        #: last known state by order id
        self.orders: dict[str, OrderState] = {}
        # fills learned from GatewayUserTrade: order id -> [units, price * units, last ts]
        self._fills: dict[str, list] = {}
        self._trade_ids: set[object] = set()

    def state_of(self, raw: dict) -> OrderState:
        """Return the OrderState of a gateway order record (``Order/search*`` or the hub)."""
        order_id = str(raw.get("id"))
        status_code = int(raw.get("status") or 0)
        status = STATUSES.get(status_code, "working")
        qty = int(raw.get("size") or 0)
        order_type = ORDER_TYPES.get(int(raw.get("type") or 0), "market")
        filled = int(raw.get("fillVolume") or 0)
        if status == "filled" and filled == 0:
            filled = qty
        fill_price = raw.get("filledPrice") if filled else None
        fill_ts = parse_ts(raw.get("updateTimestamp")) if filled else None
        learned = self._fills.get(order_id)
        if learned is not None and learned[0] >= max(filled, 1):
            # trades seen cover the reported fill (or run ahead of a stale report)
            filled, fill_price, fill_ts = learned[0], learned[1] / learned[0], learned[2]
            if filled >= qty and status == "working":
                status = "filled"
        limit = raw.get("limitPrice") if order_type in ("limit", "stop_limit") else None
        stop = raw.get("stopPrice") if order_type in ("stop", "stop_limit") else None
        contract = str(raw.get("contractId"))
        return OrderState(
            order_id=order_id,
            symbol=self.symbols.get(contract, contract),
            side="buy" if raw.get("side") == 0 else "sell",
            qty=qty,
            type=order_type,  # type: ignore[arg-type]
            limit_price=float(limit) if limit is not None else None,
            stop_price=float(stop) if stop is not None else None,
            tag=raw.get("customTag") or None,
            oco_group=None,
            status=status,
            filled_qty=filled,
            fill_price=float(fill_price) if fill_price is not None else None,
            fill_ts=(fill_ts or time.time_ns()) if filled else None,
            reason=STATUS_NAMES.get(status_code),
        )

    def on_order(self, raw: dict) -> OrderState | None:
        """Merge a gateway order record; return the merged state (None when not ours)."""
        if not raw.get("customTag") or raw.get("id") is None:
            return None
        return self.observe(self.state_of(raw))

    def on_trade(self, raw: dict) -> None:
        """Merge one ``GatewayUserTrade`` (a fill of ``size`` at ``price``) into its order."""
        trade_id = raw.get("id")
        size, price = int(raw.get("size") or 0), float(raw.get("price") or 0.0)
        if raw.get("voided") or size <= 0 or trade_id in self._trade_ids:
            return
        self._trade_ids.add(trade_id)
        order_id = str(raw.get("orderId"))
        ts = parse_ts(raw.get("creationTimestamp")) or time.time_ns()
        learned = self._fills.setdefault(order_id, [0, 0.0, ts])
        explained = learned[0]
        learned[0] += size
        learned[1] += price * size
        learned[2] = ts
        known = self.orders.get(order_id)
        # a trade adds to the fill only when the trades seen explain the fill known so far;
        # after a missed trade the order's own cumulative fillVolume is awaited instead
        if known is not None and known.filled_qty == explained:
            status = "filled" if learned[0] >= known.qty else known.status
            self.observe(
                replace(
                    known,
                    status=status,
                    filled_qty=learned[0],
                    fill_price=learned[1] / learned[0],
                    fill_ts=ts,
                )
            )

    def observe(self, state: OrderState) -> OrderState:
        """Merge ``state`` into what is known and stream each change once.

        Parameters
        ----------
        state : OrderState
            The order as just reported (by the hub, a poll, or a REST answer).

        Returns
        -------
        OrderState
            The merged state: ``state``, unless it would move the order backwards.
        """
        if state.tag:
            self.tags[state.tag] = state.order_id
        old = self.orders.get(state.order_id)
        kinds: list[str] = []
        if old is None:
            merged = state
            if state.is_open:
                kinds.append("accepted")
            if state.filled_qty:
                kinds.append("filled")
            if state.status in ("cancelled", "rejected"):
                kinds.append(state.status)
        elif not old.is_open:
            if state.filled_qty <= old.filled_qty:
                return old
            merged = replace(
                old,
                filled_qty=state.filled_qty,
                fill_price=state.fill_price,
                fill_ts=state.fill_ts,
            )
            kinds.append("filled")
        else:
            merged = state
            if state.filled_qty < old.filled_qty:
                merged = replace(
                    state,
                    filled_qty=old.filled_qty,
                    fill_price=old.fill_price,
                    fill_ts=old.fill_ts,
                )
            if merged.filled_qty > old.filled_qty or merged.status == "filled":
                kinds.append("filled")
            if merged.status in ("cancelled", "rejected"):
                kinds.append(merged.status)
            elif merged.status == "working" and (
                (merged.qty, merged.limit_price, merged.stop_price)
                != (old.qty, old.limit_price, old.stop_price)
            ):
                kinds.append("modified")
        self.orders[merged.order_id] = merged
        for kind in kinds:
            reason = merged.reason if kind in ("cancelled", "rejected") else None
            ts = merged.fill_ts if kind == "filled" and merged.fill_ts else time.time_ns()
            self.stream.emit(kind, merged, reason, ts)
        return merged

    def open_ids(self) -> list[str]:
        """Return the ids of our orders still open, as last known."""
        return [order_id for order_id, state in self.orders.items() if state.is_open]


class UserHub(HubHandler):
    """The user hub: subscriptions after every connect, events to the broker's callbacks.

    Parameters
    ----------
    url : callable
        Returns the hub URL with the current token.
    account_id : int
        The account whose orders, positions and trades are followed.
    on_event : callable
        Called with ``(target, arguments)`` of every invocation.
    on_open : callable
        Called after every (re)subscription, so missed events can be polled for.
    on_alert : callable
        Told ``("stream", message)`` on hub errors.
    on_unauthorized : callable
        Called with a message when the upgrade is refused with HTTP 401.
    """

    def __init__(
        self,
        url: Callable[[], str],
        account_id: int,
        on_event: Callable[[str, list], None],
        on_open: Callable[[], None],
        on_alert: Callable[[str, str], None],
        on_unauthorized: Callable[[str], None],
    ) -> None:
        self.account_id = account_id
        self.on_event = on_event
        self.on_open = on_open
        self.on_alert = on_alert
        self.on_unauthorized = on_unauthorized
        self.hub = HubConnection("user", url, self)

    def hub_open(self, hub: HubConnection) -> None:
        """Subscribe to the account's accounts, orders, positions and trades."""
        hub.send("SubscribeAccounts", [])
        for target in ("SubscribeOrders", "SubscribePositions", "SubscribeTrades"):
            hub.send(target, [self.account_id])
        self.on_open()

    def hub_invocation(self, target: str, arguments: list, recv_ns: int) -> None:
        """Forward an event to the broker."""
        self.on_event(target, arguments)

    def hub_error(self, message: str) -> None:
        """Alert ``stream``."""
        self.on_alert("stream", message)

    def hub_unauthorized(self, message: str) -> None:
        """Ask the broker for a new token."""
        self.on_unauthorized(message)


class ProjectXMarketFeed(HubHandler):
    """The market hub as the engine's feed: GatewayTrade events into a preallocated batch.

    Parameters
    ----------
    url : callable
        Returns the market hub URL with the current token.
    rows : callable
        Returns the engine row by contract id (read at every connect, after start resolved
        the contracts).
    deliver : callable
        ``deliver(batch, n, recv_ns)`` runs a batch through the engine.
    on_state : callable
        Called with the new state name whenever it changes.
    stale_after_s : float
        Seconds without a tick, while connected, after which the feed is ``stale``.
    on_alert : callable
        Told ``("stream", message)`` on hub errors.
    on_unauthorized : callable
        Called with a message when the upgrade is refused with HTTP 401.
    on_logout : callable
        Called with the message of a ``GatewayLogout``.
    """

    def __init__(
        self,
        url: Callable[[], str],
        rows: Callable[[], dict[str, int]],
        deliver: Callable[[TickBatch, int, int], None],
        on_state: Callable[[str], None],
        stale_after_s: float,
        on_alert: Callable[[str, str], None],
        on_unauthorized: Callable[[str], None],
        on_logout: Callable[[str], None],
    ) -> None:
        self.rows_of = rows
        self.deliver = deliver
        self.on_state = on_state
        self.stale_after_s = stale_after_s
        self.on_alert = on_alert
        self.on_unauthorized = on_unauthorized
        self.on_logout = on_logout
        self.hub = HubConnection("market", url, self)
        self.batch = TickBatch(FRAME_BATCH_TICKS)
        self.rows: dict[str, int] = {}
        #: ``connecting``, ``connected``, ``stale`` or ``disconnected``
        self.state = "connecting"
        #: ticks delivered, quotes seen, trades dropped (no numeric price)
        self.ticks = self.quotes = self.dropped = 0
        #: ``time.monotonic()`` of the last frame that carried ticks, None before the first
        self.last_tick_at: float | None = None
        self._n = 0
        self._wall_ns = 0

    async def run(self) -> None:
        """Connect, subscribe and deliver ticks until :meth:`stop`, reconnecting with backoff."""
        watchdog = asyncio.create_task(self._watch_staleness())
        try:
            await self.hub.run()
        finally:
            watchdog.cancel()

    def stop(self) -> None:
        """Close the connection and end :meth:`run`."""
        self.hub.stop()

    @property
    def reconnects(self) -> int:
        """Connection attempts after the first."""
        return self.hub.reconnects

    def rejected_frames(self) -> dict[str, int]:
        """Return what was dropped, by reason, nonzero reasons only."""
        counts = {"malformed": self.hub.malformed, "no_price": self.dropped}
        return {reason: count for reason, count in counts.items() if count}

    def last_tick_age(self) -> float | None:
        """Return seconds since the last tick arrived, or None before the first."""
        return None if self.last_tick_at is None else time.monotonic() - self.last_tick_at

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.on_state(state)

    async def _watch_staleness(self) -> None:
        connected_at = time.monotonic()
        while True:
            await asyncio.sleep(min(self.stale_after_s / 4, 0.25))
            if self.state != "connected":
                connected_at = time.monotonic()
                continue
            since = self.last_tick_at if self.last_tick_at is not None else connected_at
            if time.monotonic() - max(since, connected_at) > self.stale_after_s:
                self._set_state("stale")

    # -- hub events ------------------------------------------------------------------------------

    def hub_open(self, hub: HubConnection) -> None:
        """Subscribe every contract's quotes and trades."""
        self.rows = self.rows_of()
        for contract_id in self.rows:
            hub.send("SubscribeContractQuotes", [contract_id])
            hub.send("SubscribeContractTrades", [contract_id])
        self._set_state("connected")

    def hub_invocation(self, target: str, arguments: list, recv_ns: int) -> None:
        """Write GatewayTrade ticks into the batch; count quotes; pass on a logout."""
        if target == "GatewayTrade" and len(arguments) >= 2:
            self._trades(arguments[0], arguments[1], recv_ns)
        elif target == "GatewayQuote":
            self.quotes += 1
        elif target == "GatewayLogout":
            self.on_logout(str(arguments[0]) if arguments else "GatewayLogout")

    def _trades(self, contract_id: object, payload: object, recv_ns: int) -> None:
        if not self._wall_ns:
            self._wall_ns = time.time_ns()
        row = self.rows.get(contract_id, -1) if isinstance(contract_id, str) else -1
        trades = payload if isinstance(payload, list) else (payload,)
        batch = self.batch
        for trade in trades:
            price = trade.get("price") if isinstance(trade, dict) else None
            if isinstance(price, bool) or not isinstance(price, int | float):
                self.dropped += 1
                continue
            volume = trade.get("volume")
            if self._n == batch.capacity:
                self._flush(recv_ns)
            n = self._n
            batch.idx[n] = row
            batch.price[n] = price
            batch.size[n] = volume if isinstance(volume, int | float) else 0.0
            batch.ts[n] = self._wall_ns
            self._n = n + 1

    def hub_frame_done(self, recv_ns: int) -> None:
        """Deliver the frame's ticks as one batch."""
        self._flush(recv_ns)
        self._wall_ns = 0

    def _flush(self, recv_ns: int) -> None:
        n = self._n
        if n:
            self._n = 0
            self.ticks += n
            self.last_tick_at = time.monotonic()
            if self.state != "connected":
                self._set_state("connected")
            self.deliver(self.batch, n, recv_ns)

    def hub_closed(self) -> None:
        """Report the disconnect."""
        self._n = 0
        self._set_state("disconnected")

    def hub_error(self, message: str) -> None:
        """Alert ``stream``."""
        self.on_alert("stream", message)

    def hub_unauthorized(self, message: str) -> None:
        """Ask the broker for a new token."""
        self.on_unauthorized(message)
