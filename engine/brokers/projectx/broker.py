"""The ProjectX (TopstepX) gateway adapter: REST orders and positions, SignalR updates and ticks.

Every REST call is a JSON ``POST`` under ``{broker.rest_url}/api`` with a Bearer JWT from
``Auth/loginKey``, through one :class:`~engine.brokers.live_base.RestClient` and one token
bucket of 200 requests per 60 s. The JWT lives 24 h: it is renewed with ``Auth/validate``
after :data:`TOKEN_RENEW_AFTER_S` and whenever a call gets HTTP 401 (``Auth/loginKey`` again
when validation fails). A 401 is answered before the gateway acts, so the call is then sent
once more when it is a read, a cancel or a modify (:data:`RETRY_AFTER_401`); an
``Order/place`` is first looked up by its ``customTag``, which the gateway keeps unique per
account, and resent only when it is not found. ``GatewayLogout`` on a hub alerts
``token_expired`` and logs in again by itself; hubs still on the old token then reconnect.

Order updates come from the user hub (:mod:`engine.brokers.projectx.hubs`), with a poll of
``Order/searchOpen`` every :data:`POLL_INTERVAL_S` while orders are open as a safety net; an
order that left the open list is read back from ``Order/search`` to learn how it ended.

Choices: a configured ``tick_size`` that differs from the contract's ``tickSize`` stops the
start with a ConfigError (orders would be priced off the gateway's grid); when a
``contract_search`` finds several active contracts, the one whose name without its expiry
code equals the search text is taken, else the first; a refused order's ``order_id`` is its
tag (the gateway assigns no id to it).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

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
    RateLimited,
    RestClient,
    TokenBucket,
    TokenExpired,
    secret,
)
from engine.brokers.projectx.hubs import TYPE_CODES, OrderTracker, ProjectXMarketFeed, UserHub
from engine.brokers.projectx.hubs import unwrap as unwrap_event
from engine.brokers.stream import UpdateStream
from engine.config_errors import ConfigError
from engine.config_models import EngineConfig

__all__ = ["LoginRefusedError", "ProjectXBroker"]

#: seconds close() waits for the hubs, the poll and the renewals to end
CLOSE_WAIT_S = 2.0
#: seconds after a token was issued that it is renewed (it lives 24 h)
TOKEN_RENEW_AFTER_S = 23 * 3600.0
#: seconds before a failed scheduled renewal is tried again
RENEW_RETRY_S = 60.0
#: seconds between polls of Order/searchOpen while our orders are open
POLL_INTERVAL_S = 1.0
#: requests per window of the gateway's limit for everything but History/retrieveBars
RATE_REQUESTS, RATE_WINDOW_S = 200, 60.0
#: how far back Order/search looks for an order by its tag
TAG_LOOKBACK = timedelta(days=1)
#: updates queued for the consumer before the oldest is dropped
UPDATE_CAPACITY = 10_000
#: calls sent once more after a 401 and a renewed token (reads, cancel, modify)
RETRY_AFTER_401 = frozenset(
    {
        "/Account/search",
        "/Contract/search",
        "/Contract/searchById",
        "/Order/search",
        "/Order/searchOpen",
        "/Order/cancel",
        "/Order/modify",
        "/Position/searchOpen",
        "/Trade/search",
    }
)
#: calls that must never trigger a renewal themselves
AUTH_PATHS = frozenset({"/Auth/loginKey", "/Auth/validate"})
_EXPIRY_CODE = re.compile(r"[FGHJKMNQUVXZ]\d{1,2}$")


class LoginRefusedError(BrokerError):
    """``Auth/loginKey`` answered ``success: false``; the message is its ``errorMessage``."""


def _error_of(response: httpx.Response) -> BrokerError | None:
    if response.status_code < 400:
        return None
    message = response.reason_phrase or "error"
    try:
        body = response.json()
        if isinstance(body, dict):
            message = body.get("errorMessage") or body.get("title") or message
    except ValueError:
        if response.text.strip():
            message = response.text.strip()[:200]
    text = f"HTTP {response.status_code}: {message}"
    if response.status_code == 401:
        return TokenExpired(text, 401)
    return BrokerError(text, response.status_code)


def _message(data: dict) -> str:
    return data.get("errorMessage") or f"errorCode {data.get('errorCode')}"


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
        self._buckets = (TokenBucket(RATE_REQUESTS, RATE_WINDOW_S),)
        self.rest: RestClient | None = None
        self.user_hub: UserHub | None = None
        self.feeds: list[ProjectXMarketFeed] = []
        self._tasks: set[asyncio.Task] = set()
        self._token = ""
        self._token_gen = 0
        self._token_at = 0.0
        self._expired = False
        self._renew_lock = asyncio.Lock()
        self._renewing: asyncio.Task | None = None
        self._wake: asyncio.Future | None = None
        self._poll_error = ""

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, pick the account, resolve every contract, start the user hub and the poll.

        Raises
        ------
        ConfigError
            Refused credentials, no usable account, or an instrument that does not resolve
            (``path`` names it).
        """
        broker = self.cfg.broker
        self.rest = RestClient(f"{broker.rest_url}/api", broker.timeout_s, _error_of, self.on_alert)
        try:
            await self._login()
        except LoginRefusedError as error:
            raise ConfigError(f"broker: ProjectX login refused: {error}", path="broker") from None
        self.account_id = await self._account()
        for i, instrument in enumerate(self.cfg.instruments):
            contract = await self._resolve(i)
            tick = contract.get("tickSize")
            if isinstance(tick, int | float) and abs(tick - instrument.tick_size) > 1e-9 * tick:
                raise ConfigError(
                    f"instruments[{i}].tick_size: {instrument.symbol} has tick_size"
                    f" {instrument.tick_size} but ProjectX contract {contract.get('id')} has"
                    f" tickSize {tick}",
                    path=f"instruments[{i}].tick_size",
                )
            self.contracts[instrument.symbol] = contract
            self._symbols[str(contract["id"])] = instrument.symbol
        self.user_hub = UserHub(
            lambda: self._hub_url("user"),
            self.account_id,
            self._user_event,
            self._poll_soon,
            self.on_alert,
            self._hub_unauthorized,
        )
        for job in (self.user_hub.hub.run(), self._poll(), self._keep_token()):
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
        if self.rest is not None:
            await self.rest.close()

    async def _account(self) -> int:
        data = await self._post("/Account/search", {"onlyActiveAccounts": True})
        accounts = [a for a in data.get("accounts") or [] if isinstance(a, dict)]
        listing = ", ".join(f"{a.get('id')} ({a.get('name')})" for a in accounts) or "none"
        wanted = self.cfg.broker.account_id
        if wanted is not None:
            if any(a.get("id") == wanted for a in accounts):
                return wanted
            problem = f"{wanted} is not an active ProjectX account; active: {listing}"
        elif len(accounts) == 1:
            return int(accounts[0]["id"])
        elif not accounts:
            problem = "no active ProjectX account"
        else:
            problem = f"several active ProjectX accounts, set one of: {listing}"
        raise ConfigError(f"broker.account_id: {problem}", path="broker.account_id")

    async def _resolve(self, i: int) -> dict:
        instrument = self.cfg.instruments[i]
        ids, path = instrument.projectx, f"instruments[{i}].projectx"
        if ids is None:
            raise ConfigError(f"{path}: required when broker.name is 'projectx'", path=path)
        if ids.contract_id is not None:
            data = await self._post(
                "/Contract/searchById", {"contractId": ids.contract_id}, check=False
            )
            contract = data.get("contract") if data.get("success") else None
            if not isinstance(contract, dict):
                reason = data.get("errorMessage") or "no such contract"
                raise ConfigError(
                    f"{path}: contract {ids.contract_id} of {instrument.symbol} did not"
                    f" resolve: {reason}",
                    path=path,
                )
            return contract
        search = ids.contract_search or ""
        body = {"live": self.cfg.broker.live_contracts, "searchText": search}
        found = [c for c in (await self._post("/Contract/search", body)).get("contracts") or []]
        # "NQ" also finds "MNQH5": contracts named the search text plus an expiry come first
        exact = [c for c in found if _EXPIRY_CODE.sub("", str(c.get("name"))) == search.upper()]
        active = [c for c in exact or found if c.get("activeContract")]
        if not active:
            names = ", ".join(str(c.get("id")) for c in found if isinstance(c, dict)) or "none"
            raise ConfigError(
                f"{path}: no active contract for {instrument.symbol} found by"
                f" contract_search {search!r} (found: {names})",
                path=path,
            )
        return active[0]

    # -- the Broker interface ------------------------------------------------------------------

    async def place(self, order: OrderRequest) -> OrderState:
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
        body = {
            "accountId": self.account_id,
            "contractId": contract["id"],
            "type": TYPE_CODES[order.type],
            "side": 0 if order.side == "buy" else 1,
            "size": order.qty,
            "limitPrice": order.limit_price,
            "stopPrice": order.stop_price,
            "customTag": order.tag,
        }
        gen = self._token_gen
        try:
            data = await self._post("/Order/place", body, check=False)
        except TokenExpired:
            if self._token_gen == gen:
                raise
            # renewed: the 401 came before the gateway acted, but look before sending again
            found = await self.order_by_tag(order.tag)
            if found is not None:
                return found
            data = await self._post("/Order/place", body, check=False)
        except RateLimited:
            raise
        except BrokerError as error:
            if 0 < error.status < 500:
                raise
            # no answer, or a server error: the order may exist; its tag says
            found = await self._lookup_quietly(order.tag)
            if found is not None:
                return found
            raise
        if not data.get("success") or data.get("orderId") is None:
            reason = _message(data)
            state = _requested(order, order.tag, "rejected", reason)
            self._stream.emit("rejected", state, reason, time.time_ns())
            return state
        return self.tracker.observe(_requested(order, str(data["orderId"]), "working"))

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
        await self._post("/Order/modify", body)
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
            await self._post(
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
        data = await self._post("/Order/searchOpen", {"accountId": self.account_id})
        raws = sorted(data.get("orders") or [], key=lambda raw: int(raw.get("id") or 0))
        return [self.tracker.on_order(raw) or self.tracker.state_of(raw) for raw in raws]

    async def order_by_tag(self, tag: str) -> OrderState | None:
        """Return the order carrying ``customTag`` ``tag`` (open, or finished within a day)."""
        data = await self._post("/Order/searchOpen", {"accountId": self.account_id})
        match = _tagged(data, tag)
        if match is None:
            match = _tagged(await self._search_orders(), tag)
        return self.tracker.on_order(match) if match is not None else None

    async def positions(self) -> dict[str, dict]:
        """Return open positions by configured symbol (else the gateway's contract id)."""
        data = await self._post("/Position/searchOpen", {"accountId": self.account_id})
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
        await self._post("/Position/closeContract", body)

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
            lambda: self._hub_url("market"),
            rows,
            deliver,
            on_state,
            self.cfg.feed.stale_after_s,
            self.on_alert,
            self._hub_unauthorized,
            self._on_logout,
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

    async def _search_orders(self) -> dict:
        now = datetime.now(UTC)
        body = {
            "accountId": self.account_id,
            "startTimestamp": (now - TAG_LOOKBACK).isoformat(),
            "endTimestamp": (now + timedelta(minutes=1)).isoformat(),
        }
        return await self._post("/Order/search", body)

    async def _lookup_quietly(self, tag: str) -> OrderState | None:
        try:
            return await self.order_by_tag(tag)
        except BrokerError:
            return None

    def _hub_url(self, hub: str) -> str:
        return f"{self.cfg.broker.stream_url}/{hub}?access_token={quote(self._token, safe='')}"

    def _spawn(self, job: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- REST and the token ----------------------------------------------------------------------

    async def _post(self, path: str, body: dict | None, *, check: bool = True) -> dict:
        """POST ``body``; return the JSON object. ``success: false`` raises when ``check``."""
        if self.rest is None:
            raise BrokerError("ProjectX adapter not started")
        gen = self._token_gen
        try:
            response = await self.rest.request("POST", path, self._buckets, json=body)
        except TokenExpired as error:
            if path in AUTH_PATHS:
                raise
            if not await self._renew_after(gen, error.message) or path not in RETRY_AFTER_401:
                raise
            try:
                response = await self.rest.request("POST", path, self._buckets, json=body)
            except TokenExpired as again:
                self._token_expired(again.message)
                raise
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise BrokerError(f"{path}: not a JSON object", response.status_code)
        if check and not data.get("success", False):
            code = str(data.get("errorCode", ""))
            raise BrokerError(f"{path}: {_message(data)}", response.status_code, code)
        return data

    async def _login(self) -> None:
        broker = self.cfg.broker
        user = secret(broker.env_name("user_name"), "broker.user_name_env")
        key = secret(broker.env_name("api_key"), "broker.api_key_env")
        assert self.rest is not None
        self.rest.headers.pop("Authorization", None)
        data = await self._post("/Auth/loginKey", {"userName": user, "apiKey": key}, check=False)
        if not data.get("success") or not data.get("token"):
            raise LoginRefusedError(_message(data), 200, str(data.get("errorCode", "")))
        self._set_token(data["token"])

    async def _validate(self) -> bool:
        if not self._token:
            return False
        try:
            data = await self._post("/Auth/validate", None, check=False)
        except BrokerError:
            return False
        if not data.get("success"):
            return False
        if data.get("newToken"):
            self._set_token(data["newToken"])
        return True

    def _set_token(self, token: str) -> None:
        assert self.rest is not None
        self._token = token
        self._token_gen += 1
        self._token_at = time.monotonic()
        self.rest.headers["Authorization"] = f"Bearer {token}"

    async def renew(self) -> bool:
        """Get a working token: ``Auth/validate``, else ``Auth/loginKey``; alert on success."""
        async with self._renew_lock:
            return await self._renew_locked()

    async def _renew_locked(self) -> bool:
        how = "Auth/validate"
        ok = await self._validate()
        if not ok:
            how = "Auth/loginKey"
            try:
                await self._login()
                ok = True
            except (BrokerError, ConfigError) as error:
                self.on_alert("broker_error", f"ProjectX login failed: {error}")
        if ok:
            self._expired = False
            self.on_alert("token_renewed", f"ProjectX session renewed with {how}")
            for hub in self._hubs():
                # a hub still on the old token reconnects with the new one
                if hub.connected_url is not None and hub.connected_url != hub.url():
                    hub.disconnect()
        return ok

    async def _renew_after(self, gen: int, message: str) -> bool:
        """Renew after token generation ``gen`` was refused (unless already renewed since)."""
        self._token_expired(message)
        async with self._renew_lock:
            if self._token_gen != gen:
                return True
            return await self._renew_locked()

    def _token_expired(self, message: str) -> None:
        if not self._expired:
            self._expired = True
            self.on_alert("token_expired", message)

    def _hubs(self) -> list:
        hubs = [feed.hub for feed in self.feeds]
        return hubs + ([self.user_hub.hub] if self.user_hub is not None else [])

    def _renew_in_background(self, message: str) -> None:
        if self.rest is None:
            return  # not started: start() logs in
        if self._renewing is None or self._renewing.done():
            self._renewing = self._spawn(self._renew_after(self._token_gen, message))

    def _hub_unauthorized(self, message: str) -> None:
        self._renew_in_background(message)

    def _on_logout(self, message: str) -> None:
        self._renew_in_background(f"GatewayLogout: {message}")

    async def _keep_token(self) -> None:
        while True:
            wait = self._token_at + TOKEN_RENEW_AFTER_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                renewed = await self.renew()
            except Exception as error:  # noqa: BLE001 - the renewals must outlive any failure
                self.on_alert("broker_error", f"ProjectX token renewal: {error!r}")
                renewed = False
            if not renewed:
                await asyncio.sleep(RENEW_RETRY_S)

    # -- the user hub and the poll ---------------------------------------------------------------

    def _user_event(self, target: str, arguments: list) -> None:
        if target == "GatewayLogout":
            self._on_logout(str(arguments[0]) if arguments else "logged out")
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

    def _poll_soon(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # a plain future woken by a timer or _poll_soon: 3.11's wait_for can swallow a
            # cancel that races its timeout, which would hang close()
            self._wake = loop.create_future()
            timer = loop.call_later(POLL_INTERVAL_S, self._poll_soon)
            try:
                await self._wake
            finally:
                timer.cancel()
            if not self.tracker.open_ids():
                continue
            try:
                await self._reconcile()
                self._poll_error = ""
            except Exception as error:  # noqa: BLE001 - the poll must outlive any failure
                message = f"ProjectX order poll: {error}"
                if message != self._poll_error:
                    self._poll_error = message
                    self.on_alert("broker_error", message)

    async def _reconcile(self) -> None:
        """Merge the open orders; learn how our orders that left the open list ended."""
        known_open = set(self.tracker.open_ids())
        data = await self._post("/Order/searchOpen", {"accountId": self.account_id})
        seen = set()
        for raw in data.get("orders") or []:
            seen.add(str(raw.get("id")))
            self.tracker.on_order(raw)
        if known_open - seen:
            for raw in (await self._search_orders()).get("orders") or []:
                if str(raw.get("id")) in known_open - seen:
                    self.tracker.on_order(raw)


def _tagged(data: dict, tag: str) -> dict | None:
    return next((raw for raw in data.get("orders") or [] if raw.get("customTag") == tag), None)


def _requested(order: OrderRequest, order_id: str, status: str, reason: str | None = None):
    return OrderState(
        order_id=order_id,
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        type=order.type,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        tag=order.tag,
        oco_group=order.oco_group,
        status=status,
        reason=reason,
    )
