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
``GatewayUserTrade`` events go through :class:`~engine.brokers.projectx.orders.OrderTracker`,
which turns the gateway's orders into :class:`~engine.brokers.base.OrderState` records and
streams each change of one of our orders once, however many times the stream and the poll
report it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from engine.brokers.projectx.orders import OrderTracker, parse_ts
from engine.brokers.projectx.signalr import HubConnection, HubHandler
from engine.feeds.ticks import FRAME_BATCH_TICKS, TickBatch
from engine.feeds.upkeep import FeedUpkeep

# OrderTracker and parse_ts live in orders.py; they stay importable from here
__all__ = ["OrderTracker", "ProjectXMarketFeed", "UserHub", "parse_ts", "unwrap"]


def unwrap(argument: object) -> dict | None:
    """Return the record of a user-hub event: ``{"action", "data": {...}}`` or the record."""
    if isinstance(argument, dict):
        inner = argument.get("data")
        if "id" not in argument and isinstance(inner, dict):
            return inner
        return argument
    return None


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


class ProjectXMarketFeed(HubHandler, FeedUpkeep):
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
