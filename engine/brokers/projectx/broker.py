"""The ProjectX (TopstepX) gateway adapter: REST orders and positions, SignalR updates and ticks.

Every REST call goes through one :class:`~engine.brokers.projectx.session.GatewaySession`,
which logs in, renews the 24 h JWT and sends a call refused with HTTP 401 once more when that
is safe. An ``Order/place`` refused so is first looked up by its ``customTag``, which the
gateway keeps unique per account, and resent only when it is not found.

Order updates come from the user hub (:mod:`engine.brokers.projectx.hubs`) into the
:class:`~engine.brokers.projectx.orders.OrderTracker`, with a poll of ``Order/searchOpen``
while orders are open as a safety net (:mod:`engine.brokers.projectx.poll`). The account and
the contracts are looked up at start (:mod:`engine.brokers.projectx.resolve`).

Choice: a refused order's ``order_id`` is its tag (the gateway assigns no id to it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.brokers.base import (
    LIMIT_TYPES,
    STOP_TYPES,
    OrderError,
    OrderRequest,
    OrderState,
    OrderUpdate,
    check_price,
    check_qty,
    price_to_ticks,
)
from engine.brokers.live_base import (
    Alert,
    BrokerError,
    Deliver,
    Dropped,
    Guard,
    RateLimited,
    RestClient,
    TokenExpired,
)
from engine.brokers.projectx.hubs import ProjectXMarketFeed, UserHub
from engine.brokers.projectx.hubs import unwrap as unwrap_event
from engine.brokers.projectx.orders import OrderTracker, place_body, requested, tagged
from engine.brokers.projectx.poll import OrderPoll
from engine.brokers.projectx.resolve import resolve_account, resolve_contract
from engine.brokers.projectx.session import GatewaySession, LoginRefusedError, message_of
from engine.brokers.projectx.signalr import HubConnection
from engine.brokers.stream import UpdateStream
from engine.config_errors import ConfigError
from engine.config_models import EngineConfig

__all__ = ["LoginRefusedError", "ProjectXBroker"]

#: seconds close() waits for the hubs, the poll and the renewals to end
CLOSE_WAIT_S = 2.0
#: how far back Order/search looks for an order by its tag
TAG_LOOKBACK = timedelta(days=1)
#: updates queued for the consumer before the oldest is dropped
UPDATE_CAPACITY = 10_000


class ProjectXBroker:
    """Trade through the ProjectX gateway (TopstepX) under the live adapter contract.

    Parameters
    ----------
    cfg : EngineConfig
        ``broker`` (URLs, env var names, account), ``instruments`` (their ``projectx`` ids).
    on_alert : Alert
        Told ``token_expired``, ``token_renewed``, ``rate_limited``, ``broker_error`` and
        ``stream`` with the gateway's own message.
    """

    name = "projectx"

    def __init__(self, cfg: EngineConfig, on_alert: Alert) -> None:
        self.cfg = cfg
        self.on_alert = on_alert
        #: client tag -> gateway order id, for every tagged order placed or seen
        self.tags: dict[str, str] = {}
        #: the account traded
        self.account_id = 0
        #: the gateway's contract record (id, name, tickSize, tickValue, ...) by symbol
        self.contracts: dict[str, dict] = {}
        self._symbols: dict[str, str] = {}
        self._stream = UpdateStream(UPDATE_CAPACITY)
        self.tracker = OrderTracker(self._symbols, self._stream, self.tags)
        #: the login, its token and every REST call
        self.session = GatewaySession(cfg.broker, on_alert, self._spawn, self._hubs)
        #: the safety-net poll of the open orders
        self.poll = OrderPoll(self.tracker, self._search_open, self._search_orders, on_alert)
        self.user_hub: UserHub | None = None
        self.feeds: list[ProjectXMarketFeed] = []
        self._tasks: set[asyncio.Task] = set()

    @property
    def rest(self) -> RestClient | None:
        """The session's HTTP client, None before :meth:`start`."""
        return self.session.rest

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, pick the account, resolve every contract, start the user hub and the poll.

        Raises
        ------
        ConfigError
            Refused credentials, no usable account, or an instrument that does not resolve
            (``path`` names it).
        """
        session = self.session
        try:
            await session.start()
        except LoginRefusedError as error:
            raise ConfigError(f"broker: ProjectX login refused: {error}", path="broker") from None
        self.account_id = await resolve_account(session.post, self.cfg)
        for i, instrument in enumerate(self.cfg.instruments):
            contract = await resolve_contract(session.post, self.cfg, i)
            self.contracts[instrument.symbol] = contract
            self._symbols[str(contract["id"])] = instrument.symbol
        self.user_hub = UserHub(
            lambda: session.hub_url("user"),
            self.account_id,
            self._user_event,
            self.poll.wake,
            self.on_alert,
            session.renew_in_background,
        )
        for job in (self.user_hub.hub.run(), self.poll.run(), session.keep_token()):
            self._spawn(job)

    async def close(self) -> None:
        """Stop the hubs, the poll and the renewals, and close the HTTP client."""
        if self.user_hub is not None:
            self.user_hub.hub.stop()
        for feed in self.feeds:
            feed.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            # bounded: a task stuck in a handshake must not hold the shutdown
            await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
        await self.session.close()

    async def renew(self) -> bool:
        """Get a working token: ``Auth/validate``, else ``Auth/loginKey``; alert on success."""
        return await self.session.renew()

    # -- the Broker interface ------------------------------------------------------------------

    async def place(self, order: OrderRequest, guard: Guard | None = None) -> OrderState:
        """Send ``order`` to ``Order/place`` with its tag as ``customTag``; see the contract.

        Returns
        -------
        OrderState
            ``working`` (or later, as the stream already reported), or ``rejected`` with the
            gateway's ``errorMessage``.
        """
        contract = self._contract(order.symbol)
        check_qty(order.qty, self.cfg.instrument(order.symbol).lot_size)
        for field in ("limit_price", "stop_price"):
            if getattr(order, field) is not None:
                price_to_ticks(field, getattr(order, field), float(contract["tickSize"]))
        if not order.tag:
            raise OrderError("tag", "required: every ProjectX order carries a unique customTag")
        body = place_body(order, self.account_id, contract["id"])
        gen = self.session.gen
        try:
            data = await self._send_place(body, order.tag, guard)
        except TokenExpired:
            if self.session.gen == gen:
                raise
            # renewed: the 401 came before the gateway acted, but look before sending again
            found = await self.order_by_tag(order.tag)
            if found is not None:
                return found
            data = await self._send_place(body, order.tag, guard)
        if isinstance(data, OrderState):
            return data  # the answer was lost, the order found by its tag
        if not data.get("success") or data.get("orderId") is None:
            reason = message_of(data)
            state = requested(order, order.tag, "rejected", reason)
            self._stream.emit("rejected", state, reason, time.time_ns())
            return state
        return self.tracker.observe(requested(order, str(data["orderId"]), "working"))

    async def _send_place(self, body: dict, tag: str, guard: Guard | None) -> dict | OrderState:
        try:
            return await self.session.post("/Order/place", body, check=False, guard=guard)
        except (TokenExpired, RateLimited, Dropped):
            raise
        except BrokerError as error:
            if 0 < error.status < 500:
                raise
            # no answer, or a server error: the order may exist; its tag says
            found = await self._lookup_quietly(tag)
            if found is not None:
                return found
            raise

    async def modify(
        self,
        order_id: str,
        *,
        qty: int | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderState:
        """Change an open order's size or prices with ``Order/modify``; return its new state.

        Parameters
        ----------
        order_id : str
            The gateway's order id.
        qty : int, optional
            New size in units (a lot multiple).
        limit_price, stop_price : float, optional
            New prices on the tick grid, each allowed only for the types that take it.

        Raises
        ------
        OrderError
            When the order is not open or a new value is invalid; nothing is sent.
        BrokerError
            With the gateway's ``errorMessage`` when it refuses the change.
        """
        known = await self._open_state(order_id)
        body: dict[str, Any] = {"accountId": self.account_id, "orderId": int(order_id)}
        tick = float(self._contract(known.symbol)["tickSize"])
        if qty is not None:
            body["size"] = check_qty(qty, self.cfg.instrument(known.symbol).lot_size)
        for field, value, types, key in (
            ("limit_price", limit_price, LIMIT_TYPES, "limitPrice"),
            ("stop_price", stop_price, STOP_TYPES, "stopPrice"),
        ):
            if value is not None:
                if known.type not in types:
                    raise OrderError(field, f"not allowed for a {known.type} order")
                body[key] = check_price(field, value)
                price_to_ticks(field, body[key], tick)
        await self.session.post("/Order/modify", body)
        changed = replace(
            known,
            qty=body.get("size", known.qty),
            limit_price=body.get("limitPrice", known.limit_price),
            stop_price=body.get("stopPrice", known.stop_price),
        )
        return self.tracker.observe(changed) if changed.tag else changed

    async def cancel(self, order_id: str) -> OrderState:
        """Cancel an open order with ``Order/cancel``; return its final state."""
        known = await self._open_state(order_id)
        try:
            await self.session.post(
                "/Order/cancel", {"accountId": self.account_id, "orderId": int(order_id)}
            )
        except BrokerError:
            now = self.tracker.orders.get(order_id)
            if now is not None and not now.is_open:
                return now  # it finished first (filled, say): that is its final state
            raise
        cancelled = replace(known, status="cancelled", reason="Cancelled")
        return self.tracker.observe(cancelled) if cancelled.tag else cancelled

    async def open_orders(self) -> list[OrderState]:
        """Return every open order of the account (ours are tracked from now on), oldest first."""
        data = await self._search_open()
        raws = sorted(data.get("orders") or [], key=_order_number)
        return [self.tracker.on_order(raw) or self.tracker.state_of(raw) for raw in raws]

    async def day_orders(self, prefix: str) -> list[OrderState]:
        """Return the orders of the last day tagged ``prefix...`` (open or not); follow them."""
        raws = sorted((await self._search_orders()).get("orders") or [], key=_order_number)
        states = (self.tracker.on_order(raw) for raw in raws)
        return [s for s in states if s is not None and (s.tag or "").startswith(prefix)]

    async def order_by_tag(self, tag: str) -> OrderState | None:
        """Return the order carrying ``customTag`` ``tag`` (open, or finished within a day)."""
        match = tagged(await self._search_open(), tag)
        if match is None:
            match = tagged(await self._search_orders(), tag)
        return self.tracker.on_order(match) if match is not None else None

    async def positions(self) -> dict[str, dict]:
        """Return open positions by configured symbol (else the gateway's contract id)."""
        data = await self.session.post("/Position/searchOpen", {"accountId": self.account_id})
        out: dict[str, dict] = {}
        for raw in data.get("positions") or []:
            size = int(raw.get("size") or 0)
            if size:
                contract = str(raw.get("contractId"))
                out[self._symbols.get(contract, contract)] = {
                    "side": "long" if raw.get("type") == 1 else "short",
                    "qty": size,
                    "entry_price": float(raw.get("averagePrice") or 0.0),
                }
        return out

    async def close_contract(self, symbol: str) -> None:
        """Flatten ``symbol``'s position at market with ``Position/closeContract``."""
        contract = self._contract(symbol)
        body = {"accountId": self.account_id, "contractId": contract["id"]}
        await self.session.post("/Position/closeContract", body)

    async def updates(self) -> AsyncIterator[OrderUpdate]:
        """Yield every change of one of our orders, deduplicated, numbered from 0."""
        while True:
            yield await self._stream.get()

    def market_feed(
        self, index: dict[str, int], deliver: Deliver, on_state: Callable[[str], None]
    ) -> ProjectXMarketFeed:
        """Return the market hub feed delivering trades of the configured symbols."""

        def rows() -> dict[str, int]:
            return {
                str(self.contracts[symbol]["id"]): row
                for symbol, row in index.items()
                if symbol in self.contracts
            }

        feed = ProjectXMarketFeed(
            lambda: self.session.hub_url("market"),
            rows,
            deliver,
            on_state,
            self.cfg.feed.stale_after_s,
            self.on_alert,
            self.session.renew_in_background,
            self.session.on_logout,
        )
        self.feeds.append(feed)
        return feed

    # -- helpers ---------------------------------------------------------------------------------

    def _contract(self, symbol: str) -> dict:
        contract = self.contracts.get(symbol)
        if contract is None:
            raise OrderError("symbol", f"unknown or unresolved instrument {symbol!r}")
        return contract

    async def _open_state(self, order_id: str) -> OrderState:
        if not isinstance(order_id, str) or not order_id.isdigit():
            raise OrderError("order_id", f"not a ProjectX order id: {order_id!r}")
        known = self.tracker.orders.get(order_id)
        if known is None:
            known = next((s for s in await self.open_orders() if s.order_id == order_id), None)
        if known is None or not known.is_open:
            raise OrderError("order_id", f"{order_id} is not an open order")
        return known

    async def _search_open(self) -> dict:
        return await self.session.post("/Order/searchOpen", {"accountId": self.account_id})

    async def _search_orders(self) -> dict:
        now = datetime.now(UTC)
        body = {
            "accountId": self.account_id,
            "startTimestamp": (now - TAG_LOOKBACK).isoformat(),
            "endTimestamp": (now + timedelta(minutes=1)).isoformat(),
        }
        return await self.session.post("/Order/search", body)

    async def _lookup_quietly(self, tag: str) -> OrderState | None:
        try:
            return await self.order_by_tag(tag)
        except BrokerError:
            return None

    def _spawn(self, job: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _hubs(self) -> list[HubConnection]:
        hubs = [feed.hub for feed in self.feeds]
        return hubs + ([self.user_hub.hub] if self.user_hub is not None else [])

    # -- the user hub ----------------------------------------------------------------------------

    def _user_event(self, target: str, arguments: list) -> None:
        if target == "GatewayLogout":
            self.session.on_logout(str(arguments[0]) if arguments else "logged out")
            return
        for argument in arguments:
            record = unwrap_event(argument)
            if record is None:
                continue
            if target == "GatewayUserOrder":
                self.tracker.on_order(record)
            elif target == "GatewayUserTrade":
                self.tracker.on_trade(record)
        # GatewayUserPosition and GatewayUserAccount: positions are read when asked


def _order_number(raw: dict) -> int:
    return int(raw.get("id") or 0)
