"""The Upstox adapter: v2 orders and positions over REST, order updates by polling, v3 feed.

Every request goes through one :class:`~engine.brokers.live_base.RestClient` with
``Authorization: Bearer <token>``; the token comes from the environment variable named by
``broker.access_token_env`` (default ``UPSTOX_ACCESS_TOKEN``), else from the token file. Upstox
answers errors as ``{"status": "error", "errors": [{"errorCode", "error_code", "message",
...}]}`` (the SDK's ``Problem`` model reads ``errorCode``; the docs show ``error_code``; both are
read): ``UDAPI100050`` or HTTP 401 is an expired token, ``UDAPI10005`` or HTTP 429 a rate limit.

Rate limits are Upstox's per-API, per-user ones, as client-side token buckets per endpoint:
order APIs (place, modify, cancel) 10/s, 500/min, 2000/30 min; the others 50/s, 500/min,
2000/30 min. Order endpoints go to ``api-hft.upstox.com`` as in the official SDK unless
``broker.base_url`` is set, which then serves everything.

Order updates come from polling the order book while one of our orders is open: "our" orders
are those placed here and tagged ones seen through :meth:`UpstoxBroker.open_orders` or
:meth:`UpstoxBroker.order_by_tag`, and :class:`~engine.brokers.upstox.orders.OrderTracker`
turns each change of one into exactly one update.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson

from engine.brokers.base import OrderError, OrderRequest, OrderState, OrderUpdate
from engine.brokers.live_base import (
    Alert,
    BrokerError,
    Deliver,
    Dropped,
    Guard,
    RateLimited,
    RestClient,
    TokenBucket,
    TokenExpired,
    secret,
)
from engine.brokers.stream import UpdateStream
from engine.brokers.upstox.feed import UpstoxFeed
from engine.brokers.upstox.orders import OrderTracker, modify_body, place_body
from engine.config_errors import ConfigError
from engine.config_models import EngineConfig

__all__ = ["UpstoxBroker"]

#: order host of the official SDK, used when ``broker.base_url`` is not set
ORDER_HOST = "https://api-hft.upstox.com"
#: order endpoints: place, modify, cancel
PLACE, MODIFY, CANCEL = "/v2/order/place", "/v2/order/modify", "/v2/order/cancel"
#: order book and one order's details
BOOK, DETAILS = "/v2/order/retrieve-all", "/v2/order/details"
#: the token's user, and last traded prices (which also resolve instrument keys)
PROFILE, LTP = "/v2/user/profile", "/v2/market-quote/ltp"
#: the day's positions
POSITIONS = "/v2/portfolio/short-term-positions"
#: the market-data feed's single-use URL
AUTHORIZE = "/v3/feed/market-data-feed/authorize"
#: order endpoints, on the order host and under the order limits
ORDER_PATHS = frozenset({PLACE, MODIFY, CANCEL})
#: (requests, per seconds) limits of each order API
ORDER_LIMITS = ((10, 1.0), (500, 60.0), (2000, 1800.0))
#: (requests, per seconds) limits of each other API
STANDARD_LIMITS = ((50, 1.0), (500, 60.0), (2000, 1800.0))
#: error codes: invalid or expired token, too many requests
TOKEN_ERROR, RATE_ERROR = "UDAPI100050", "UDAPI10005"
#: lookups by tag after a place call went unanswered, and the pause growing between them
LOOKUPS, LOOKUP_PAUSE_S = 3, 0.25
#: instrument keys per LTP request (Upstox's limit)
LTP_BATCH = 500
#: queued updates before the oldest is dropped
UPDATE_CAPACITY = 10_000


def _problem(response: httpx.Response) -> tuple[str, str]:
    """Return the (code, message) of an Upstox error answer."""
    try:
        errors = orjson.loads(response.content).get("errors") or [{}]
        first = errors[0]
        code = first.get("errorCode") or first.get("error_code") or ""
        return str(code), str(first.get("message") or response.reason_phrase)
    except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
        return "", response.text[:200] or response.reason_phrase


class UpstoxBroker:
    """Trade through Upstox: the live adapter contract over the v2 REST API and the v3 feed.

    Parameters
    ----------
    cfg : EngineConfig
        ``broker`` (URLs, variable names, product, timeout), the instruments' ``upstox`` ids,
        ``journal.path`` (the token file defaults to ``upstox_token`` beside it) and ``feed``.
    on_alert : Alert
        Told ``token_expired``, ``token_renewed``, ``rate_limited``, ``broker_error`` and
        ``stream`` with the broker's own message.
    """

    name = "upstox"

    def __init__(self, cfg: EngineConfig, on_alert: Alert) -> None:
        self.cfg = cfg
        self.on_alert = on_alert
        #: instrument key by configured symbol, and back
        self.keys = {i.symbol: i.upstox.instrument_key for i in cfg.instruments if i.upstox}
        self.symbols = {key: symbol for symbol, key in self.keys.items()}
        journal_dir = Path(cfg.journal.path).parent
        self.token_path = Path(cfg.broker.token_path or journal_dir / "upstox_token")
        self.rest = RestClient(cfg.broker.rest_url, cfg.broker.timeout_s, self._error, on_alert)
        #: orders go to the SDK's order host unless ``base_url`` points everything elsewhere
        self.order_rest = (
            self.rest
            if cfg.broker.base_url
            else RestClient(ORDER_HOST, cfg.broker.timeout_s, self._error, on_alert)
        )
        self.order_rest.headers = self.rest.headers  # one dict: a new token reaches both
        #: client tag -> Upstox order id of every order placed here or seen with a tag
        self.tags: dict[str, str] = {}
        #: Upstox ``user_id`` of the token, once started
        self.user_id = ""
        self._buckets: dict[str, tuple[TokenBucket, ...]] = {}
        self._stream = UpdateStream(UPDATE_CAPACITY)
        #: our orders as last known, and the poller following them
        self._orders = OrderTracker(self.symbols, self._stream, self.tags)
        self._expired = False
        self._poller: asyncio.Task | None = None

    # -- session ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the token, resolve every instrument key and start following orders."""
        self._use_token(self._read_token())
        profile = await self._call("GET", PROFILE)
        self.user_id = str((profile.get("data") or {}).get("user_id") or "")
        await self._check_instruments()
        self._orders.wake = asyncio.Event()
        poll = self._orders.poll(self._book, lambda: self._expired, self.on_alert)
        self._poller = asyncio.create_task(poll, name="upstox-orders")

    async def close(self) -> None:
        """Stop following orders and close the HTTP client."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.rest.close()
        if self.order_rest is not self.rest:
            await self.order_rest.close()

    async def renew(self) -> bool:
        """Re-read the token (variable, then file), verify it; return whether it works."""
        try:
            self._use_token(self._read_token())
            await self._call("GET", PROFILE)
        except (ConfigError, BrokerError):
            return False
        self._expired = False
        self.on_alert("token_renewed", "upstox access token renewed")
        if self._orders.wake is not None:
            self._orders.wake.set()
        return True

    def market_feed(
        self, index: dict[str, int], deliver: Deliver, on_state: Callable[[str], None]
    ) -> UpstoxFeed:
        """Return the v3 market-data feed of the configured symbols in ``index``."""
        return UpstoxFeed(
            self._authorize,
            self.keys,
            index,
            deliver,
            on_state,
            self.on_alert,
            stale_after_s=self.cfg.feed.stale_after_s,
            max_frame_bytes=self.cfg.feed.max_frame_bytes,
        )

    async def _authorize(self) -> str:
        data = (await self._call("GET", AUTHORIZE)).get("data") or {}
        url = data.get("authorized_redirect_uri") or data.get("authorizedRedirectUri")
        if not url:
            raise BrokerError("feed authorize answered without authorized_redirect_uri")
        return str(url)

    def _read_token(self) -> str:
        env_name = self.cfg.broker.env_name("access_token")
        with contextlib.suppress(ConfigError):
            return secret(env_name, "broker.access_token_env")
        try:
            token = self.token_path.read_text().strip()
        except OSError:
            token = ""
        if not token:
            raise ConfigError(
                f"broker.access_token_env: set environment variable {env_name} or write the "
                f"Upstox access token to {self.token_path}",
                path="broker.access_token_env",
            )
        return token

    def _use_token(self, token: str) -> None:
        self.rest.headers.update(
            {"Authorization": f"Bearer {token}", "Accept": "application/json", "Api-Version": "2.0"}
        )

    async def _check_instruments(self) -> None:
        listed = [(i, inst) for i, inst in enumerate(self.cfg.instruments) if inst.upstox]
        for first in range(0, len(listed), LTP_BATCH):
            chunk = listed[first : first + LTP_BATCH]
            known = await self._known_keys([inst.upstox.instrument_key for _, inst in chunk])
            for i, inst in chunk:
                if inst.upstox.instrument_key not in known:
                    raise ConfigError(
                        f"instruments[{i}].upstox: instrument_key "
                        f"{inst.upstox.instrument_key!r} of {inst.symbol} is not known to Upstox",
                        path=f"instruments[{i}].upstox",
                    )

    async def _known_keys(self, keys: list[str]) -> set[str]:
        try:
            doc = await self._call("GET", LTP, params={"instrument_key": ",".join(keys)})
        except BrokerError as error:
            # a malformed key fails the whole request: ask one by one to name it
            if error.status != 400 or len(keys) == 1:
                if error.status == 400:
                    return set()
                raise
            found: set[str] = set()
            for key in keys:
                found |= await self._known_keys([key])
            return found
        # answers are keyed "NSE_EQ:INFY"; the instrument key is in each entry
        entries = (doc.get("data") or {}).values()
        return {str(entry.get("instrument_token")) for entry in entries}

    # -- HTTP ------------------------------------------------------------------------------------

    def _error(self, response: httpx.Response) -> BrokerError | None:
        if response.is_success:
            return None
        code, message = _problem(response)
        if response.status_code == 401 or code == TOKEN_ERROR:
            if not self._expired:
                self._expired = True
                self.on_alert("token_expired", message)
            return TokenExpired(message, response.status_code, code)
        if response.status_code == 429 or code == RATE_ERROR:
            return RateLimited(message, response.status_code, code)
        return BrokerError(message, response.status_code, code)

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict:
        buckets = self._buckets.get(path)
        if buckets is None:
            limits = ORDER_LIMITS if path in ORDER_PATHS else STANDARD_LIMITS
            buckets = self._buckets[path] = tuple(TokenBucket(n, per) for n, per in limits)
        rest = self.order_rest if path in ORDER_PATHS else self.rest
        response = await rest.request(method, path, buckets, **kwargs)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as error:
            raise BrokerError(
                f"{method} {path}: answer is not JSON", response.status_code
            ) from error

    # -- orders ----------------------------------------------------------------------------------

    async def place(self, order: OrderRequest, guard: Guard | None = None) -> OrderState:
        """Place ``order`` tagged ``order.tag``; a refused order comes back ``rejected``."""
        key = self.keys.get(order.symbol)
        if key is None:
            raise OrderError("symbol", f"{order.symbol!r} has no upstox instrument_key")
        tag = order.tag or ""
        body = place_body(order, key, self.cfg.broker.order_product)
        state = OrderState(
            order_id="",
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            type=order.type,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            tag=tag,
            oco_group=order.oco_group,
            status="working",
        )
        try:
            doc = await self._call("POST", PLACE, json=body, guard=guard)
        except (TokenExpired, RateLimited, Dropped):
            raise
        except BrokerError as error:
            if error.status in (400, 422):
                state = replace(state, status="rejected", reason=error.message)
                self._stream.emit("rejected", state, error.message, time.time_ns())
                return state
            if not tag or 0 < error.status < 500:
                raise
            # no answer or a server error: the order may exist, so never send it twice
            for attempt in range(LOOKUPS):
                await asyncio.sleep(LOOKUP_PAUSE_S * attempt)
                found = await self._find_tag(tag)
                if found is not None:
                    return self._orders.observe(replace(found, oco_group=order.oco_group))
            raise
        return self._orders.observe(replace(state, order_id=str(doc["data"]["order_id"])))

    async def modify(
        self,
        order_id: str,
        *,
        qty: int | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderState:
        """Change an open order's quantity or prices; return its state after the change."""
        current = self._orders.known.get(order_id) or await self._details(order_id)
        if not current.is_open:
            raise OrderError("order_id", f"{order_id} is {current.status}, not open")
        body = modify_body(order_id, current, qty, limit_price, stop_price)
        await self._call("PUT", MODIFY, json=body)
        if order_id not in self._orders.known:
            self._orders.follow(current)  # an order we change is one we follow
        return self._orders.observe(await self._details(order_id))

    async def cancel(self, order_id: str) -> OrderState:
        """Cancel an open order; return its state as the broker shows it afterwards."""
        known = self._orders.known.get(order_id)
        if known is not None and not known.is_open:
            raise OrderError("order_id", f"{order_id} is {known.status}, not open")
        await self._call("DELETE", CANCEL, params={"order_id": order_id})
        state = await self._details(order_id)
        return self._orders.observe(state) if order_id in self._orders.known else state

    async def open_orders(self) -> list[OrderState]:
        """Return every open order at the broker, ours or not, oldest first."""
        rows = sorted(await self._book(), key=lambda e: str(e.get("order_timestamp")))
        states = [self._orders.seen(self._orders.state(entry)) for entry in rows]
        return [state for state in states if state.is_open]

    async def day_orders(self, prefix: str) -> list[OrderState]:
        """Return the day's orders tagged ``prefix...`` (open or not); follow the open ones."""
        rows = sorted(await self._book(), key=lambda e: str(e.get("order_timestamp")))
        states = [self._orders.state(entry) for entry in rows]
        return [self._orders.seen(s) for s in states if (s.tag or "").startswith(prefix)]

    async def order_by_tag(self, tag: str) -> OrderState | None:
        """Return the latest order carrying ``tag``, or None when there is none."""
        found = await self._find_tag(tag)
        return None if found is None else self._orders.seen(found)

    async def positions(self) -> dict[str, dict]:
        """Return the day's open positions by configured symbol (else Upstox's own name)."""
        doc = await self._call("GET", POSITIONS)
        signed: dict[str, tuple[int, float]] = {}
        for row in doc.get("data") or []:
            qty = int(row.get("quantity") or 0)
            key = str(row.get("instrument_token") or "")
            name = self.symbols.get(key) or row.get("trading_symbol") or row.get("tradingsymbol")
            name = str(name or key)
            price = float(row.get("average_price") or 0.0)
            held, held_price = signed.get(name, (0, 0.0))
            if held and qty and (held > 0) == (qty > 0):
                # the same instrument in two products: one position at the blended price
                price = (held_price * abs(held) + price * abs(qty)) / (abs(held) + abs(qty))
            elif abs(held) > abs(qty):
                price = held_price
            signed[name] = (held + qty, price)
        return {
            name: {"side": "long" if qty > 0 else "short", "qty": abs(qty), "entry_price": price}
            for name, (qty, price) in signed.items()
            if qty
        }

    async def updates(self) -> AsyncIterator[OrderUpdate]:
        """Yield every change of our orders, numbered from 0; one consumer at a time."""
        while True:
            yield await self._stream.get()

    async def _book(self) -> list[dict]:
        return (await self._call("GET", BOOK)).get("data") or []

    async def _details(self, order_id: str) -> OrderState:
        doc = await self._call("GET", DETAILS, params={"order_id": order_id})
        return self._orders.state(doc.get("data") or {})

    async def _find_tag(self, tag: str) -> OrderState | None:
        matches = [entry for entry in await self._book() if entry.get("tag") == tag]
        return self._orders.state(matches[-1]) if matches else None
