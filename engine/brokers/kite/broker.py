"""Zerodha Kite Connect v3: orders on the ``regular`` variety, positions, order updates.

Requests carry ``X-Kite-Version: 3`` and ``Authorization: token api_key:access_token``. The
access token comes from its environment variable (``broker.access_token_env``, default
``KITE_ACCESS_TOKEN``) or the token file ``python run.py login kite`` writes.

Order updates arrive twice: as the ticker's ``{"type": "order"}`` text messages (handed to
:meth:`KiteBroker._on_ticker_order` by the ticker of :meth:`KiteBroker.market_feed`) and from
polling ``GET /orders`` every :data:`POLL_INTERVAL_S` while any of our orders is open, so they
keep flowing when the market data comes from elsewhere or the ticker is down.
:class:`~engine.brokers.kite.rest.OrderTracker` merges both into one deduplicated stream.
Only orders carrying one of our tags (or ids) go out.

Client-side rate limits follow Kite's: orders 10/s and 400/min, quotes 1/s, the rest 10/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from engine.brokers.base import OrderError, OrderRequest, OrderState, OrderUpdate, check_qty
from engine.brokers.kite.login import env_name, stored_tokens, token_path
from engine.brokers.kite.rest import (
    REFUSALS,
    OrderTracker,
    check_quotes,
    kite_error,
    modify_form,
    net_positions,
    order_state,
    payload,
    place_form,
)
from engine.brokers.kite.ticker import KiteTicker
from engine.brokers.live_base import (
    Alert,
    BrokerError,
    Deliver,
    MarketFeed,
    RateLimited,
    RestClient,
    TokenBucket,
    TokenExpired,
    secret,
)
from engine.brokers.stream import UpdateStream
from engine.config_errors import ConfigError
from engine.config_models import EngineConfig, InstrumentConfig

#: seconds between ``GET /orders`` polls while one of our orders is open
POLL_INTERVAL_S = 0.5
#: seconds between polls while the token is expired (each one fails until it is renewed)
EXPIRED_POLL_S = 2.0
#: updates kept for a slow consumer before the oldest is dropped
STREAM_CAPACITY = 65_536
#: seconds a tag whose placement failed in transit is still watched for on the order book
PENDING_TAG_S = 60.0
#: order-book lookups by tag after a placement failed in transit, and the pause between them
LOOKUPS, LOOKUP_PAUSE_S = 3, 0.3
#: longest wait for a cancel to reach its final state before ``cancel`` returns
CANCEL_SETTLE_S = 1.0
#: prefix of the id given to an order Kite refused outright (it never got a Kite id)
REFUSED_ID = "rejected:"


class KiteBroker:
    """The Kite Connect adapter (see :class:`engine.brokers.live_base.LiveAdapter`).

    Parameters
    ----------
    cfg : EngineConfig
        ``broker`` says how to reach Kite; every instrument carries its ``kite`` ids.
    on_alert : Alert
        Told ``token_expired``, ``token_renewed``, ``rate_limited``, ``broker_error`` and
        ``stream`` with the broker's own message.
    """

    name = "kite"

    def __init__(self, cfg: EngineConfig, on_alert: Alert) -> None:
        self.cfg = cfg
        self.on_alert = on_alert
        #: client tag -> Kite order id of every order this adapter placed or looked up
        self.tags: dict[str, str] = {}
        self.api_key = ""
        self.access_token = ""
        self.instruments: dict[str, InstrumentConfig] = {i.symbol: i for i in cfg.instruments}
        self._symbols = {
            (i.kite.exchange, i.kite.tradingsymbol): i.symbol for i in cfg.instruments if i.kite
        }
        self._tracker = OrderTracker(UpdateStream(STREAM_CAPACITY))
        self._ids: set[str] = set()
        self._unseen: set[str] = set()
        #: tag -> monotonic deadline, for orders sent whose Kite id is not known yet
        self._pending: dict[str, float] = {}
        self._requests: dict[str, OrderRequest] = {}
        self._order_limits = (TokenBucket(10, 1.0), TokenBucket(400, 60.0))
        self._other_limits = (TokenBucket(10, 1.0),)
        self._quote_limits = (TokenBucket(1, 1.0),)
        self._rest: RestClient | None = None
        self._poller: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._expired = False
        self._renewing = False
        self._poll_error = ""

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Authenticate, check every instrument mapping and start polling order updates.

        Raises
        ------
        ConfigError
            When a credential is missing or an instrument does not resolve at Kite
            (``path`` is ``instruments[i].kite``).
        TokenExpired
            When Kite refuses the access token.
        """
        self.api_key = secret(env_name(self.cfg, "api_key"), "broker.api_key_env")
        tokens = stored_tokens(self.cfg)
        if not tokens:
            variable = env_name(self.cfg, "access_token")
            raise ConfigError(
                f"broker.access_token_env: no Kite access token: {variable}"
                f" is not set and {token_path(self.cfg)} is missing; run"
                " `python run.py login kite`",
                path="broker.access_token_env",
            )
        self._rest = RestClient(
            self.cfg.broker.rest_url, self.cfg.broker.timeout_s, self._error, self.on_alert
        )
        self._use_token(tokens[0])
        await self._send("GET", "/user/profile", self._other_limits)
        await self._check_instruments()
        self._poller = asyncio.create_task(self._poll_loop())

    async def close(self) -> None:
        """Stop polling and close the HTTP client."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._rest is not None:
            await self._rest.close()
            self._rest = None

    async def renew(self) -> bool:
        """Re-read the token's variable and file; adopt a new token that Kite accepts.

        Returns
        -------
        bool
            True when a new token works (``token_renewed`` is alerted).
        """
        previous = self.access_token
        if self._rest is None:
            return False
        for token in stored_tokens(self.cfg):
            if token == previous:
                continue
            self._use_token(token)
            self._renewing = True  # a candidate that fails is no new expiry to alert
            try:
                response = await self._send("GET", "/user/profile", self._other_limits)
            except BrokerError:
                continue
            finally:
                self._renewing = False
            self._expired = False
            user = payload(response).get("user_id", "")
            self.on_alert("token_renewed", f"Kite access token renewed for {user}")
            self._wake.set()
            return True
        self._use_token(previous)
        return False

    # -- orders ----------------------------------------------------------------------------------

    async def place(self, order: OrderRequest) -> OrderState:
        """Place ``order`` on the ``regular`` variety; see the adapter contract.

        Raises
        ------
        OrderError
            For an unknown symbol, a quantity off the lot, a price off the grid, no tag.
        TokenExpired, RateLimited, BrokerError
            When Kite could not take the order (nothing placed, or not found by tag).
        """
        instrument = self._instrument(order.symbol)
        check_qty(order.qty, instrument.lot_size)
        if not order.tag:
            raise OrderError("tag", "required: the unique tag finds the order after a failure")
        if order.tag in self.tags:  # placed already: a tag is never sent twice
            return await self._current(self.tags[order.tag])
        form = place_form(
            order, instrument.kite, instrument.tick_size, self.cfg.broker.order_product
        )
        self._requests[order.tag] = order
        self._pending[order.tag] = time.monotonic() + PENDING_TAG_S
        self._wake.set()
        try:
            response = await self._send("POST", "/orders/regular", self._order_limits, data=form)
        except (TokenExpired, RateLimited):
            self._pending.pop(order.tag, None)
            raise
        except BrokerError as error:
            if error.status == 0 or (error.status >= 500 and error.code not in REFUSALS):
                # the order may have reached Kite: never resend, look for it by its tag
                found = await self._find(order.tag)
                if found is not None:
                    return found
                raise
            self._pending.pop(order.tag, None)
            if error.code not in REFUSALS:
                raise
            return self._refused(order, error.message)
        order_id = str(payload(response)["order_id"])
        self._adopt(order.tag, order_id)
        known = self._tracker.known.get(order_id)
        if known is not None:
            return known  # the ticker or a poll already reported it
        return OrderState(
            order_id, order.symbol, order.side, order.qty, order.type, order.limit_price,
            order.stop_price, order.tag, order.oco_group, "working",
        )  # fmt: skip

    async def modify(
        self,
        order_id: str,
        *,
        qty: int | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderState:
        """Change an open order (``PUT /orders/regular/{id}``); return it as it will be.

        The update stream reports the change once Kite does.
        """
        current = await self._current(order_id)
        if not current.is_open:
            raise OrderError("order_id", f"{order_id} is not open ({current.status})")
        instrument = self.instruments.get(current.symbol)
        tick = instrument.tick_size if instrument else None
        lot = instrument.lot_size if instrument else None
        form, new = modify_form(current, tick, lot, qty, limit_price, stop_price)
        await self._change("PUT", order_id, data=form)
        return new

    async def cancel(self, order_id: str) -> OrderState:
        """Cancel an open order (``DELETE /orders/regular/{id}``); return its state after."""
        known = self._tracker.known.get(order_id)
        if known is not None and not known.is_open:
            raise OrderError("order_id", f"{order_id} is not open ({known.status})")
        await self._change("DELETE", order_id)
        deadline = time.monotonic() + CANCEL_SETTLE_S
        state = await self._history(order_id)
        while state.is_open and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            state = await self._history(order_id)
        return state

    async def open_orders(self) -> list[OrderState]:
        """Return every open order at Kite, ours or not, oldest first."""
        return [state for state in await self._order_book() if state.is_open]

    async def order_by_tag(self, tag: str) -> OrderState | None:
        """Return the order carrying ``tag`` (adopting it as ours), or None."""
        response = await self._send("GET", "/orders", self._other_limits)
        found = None
        for data in payload(response) or ():
            if data.get("tag") == tag or tag in (data.get("tags") or ()):
                found = data  # the latest wins, should a tag ever repeat
        if found is None:
            return None
        self._adopt(tag, str(found["order_id"]))
        return self._ingest(found)

    async def positions(self) -> dict[str, dict]:
        """Return the net positions by configured symbol (Kite's tradingsymbol otherwise)."""
        response = await self._send("GET", "/portfolio/positions", self._other_limits)
        return net_positions(payload(response).get("net") or (), self._symbols)

    async def updates(self) -> AsyncIterator[OrderUpdate]:
        """Yield every change of our orders, deduplicated, numbered from 0; one consumer."""
        while True:
            yield await self._tracker.stream.get()

    def market_feed(
        self, index: dict[str, int], deliver: Deliver, on_state: Callable[[str], None]
    ) -> MarketFeed:
        """Return Kite's ticker for the configured symbols in ``index``; it also carries the
        order updates to :meth:`_on_ticker_order`."""
        tokens = {
            inst.kite.instrument_token: index[inst.symbol]
            for inst in self.cfg.instruments
            if inst.kite is not None and inst.symbol in index
        }
        return KiteTicker(
            self.cfg.broker.stream_url, self.api_key, lambda: self.access_token, tokens,
            deliver, on_state, self._on_ticker_order, self._stream_alert,
            stale_after_s=self.cfg.feed.stale_after_s,
        )  # fmt: skip

    # -- order updates ---------------------------------------------------------------------------

    def _on_ticker_order(self, data: dict) -> None:
        """Take one order update from the ticker (called on the loop; never raises)."""
        try:
            self._ingest(data)
        except Exception as error:  # noqa: BLE001 - a malformed message must not stop the feed
            self.on_alert("stream", f"Kite order update not understood: {error!r}")

    def _ingest(self, data: dict) -> OrderState | None:
        """Track ``data`` if it is one of our orders; return the state now known."""
        order_id = str(data.get("order_id") or "")
        if order_id not in self._ids:
            tag = data.get("tag") or ""
            if not tag or (tag not in self._pending and self.tags.get(tag) != order_id):
                return None
            self._adopt(tag, order_id)
        self._unseen.discard(order_id)
        return self._tracker.observe(*self._read(data))

    def _read(self, data: dict) -> tuple[OrderState, int]:
        symbol = self._symbols.get((data.get("exchange"), data.get("tradingsymbol")))
        request = self._requests.get(data.get("tag") or "")
        group = request.oco_group if request is not None else None
        return order_state(data, symbol or str(data.get("tradingsymbol")), group)

    def _adopt(self, tag: str, order_id: str) -> None:
        self.tags[tag] = order_id
        self._ids.add(order_id)
        if order_id not in self._tracker.known:
            # placed but not yet seen in a poll or on the ticker: keep polling until it is
            self._unseen.add(order_id)
        self._pending.pop(tag, None)
        self._wake.set()

    def _refused(self, order: OrderRequest, message: str) -> OrderState:
        state = OrderState(
            f"{REFUSED_ID}{order.tag}", order.symbol, order.side, order.qty, order.type,
            order.limit_price, order.stop_price, order.tag, order.oco_group, "rejected",
            reason=message,
        )  # fmt: skip
        return self._tracker.observe(state, time.time_ns())

    async def _poll_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._watching():
                await self._poll_once()
                await asyncio.sleep(EXPIRED_POLL_S if self._expired else POLL_INTERVAL_S)

    def _watching(self) -> bool:
        now = time.monotonic()
        for tag in [tag for tag, deadline in self._pending.items() if deadline < now]:
            del self._pending[tag]
        return bool(self._tracker.open_ids or self._pending or self._unseen)

    async def _poll_once(self) -> None:
        try:
            response = await self._send("GET", "/orders", self._other_limits)
            for data in payload(response) or ():
                self._ingest(data)
        except TokenExpired:
            return  # alerted once by _error; renew() brings it back
        except Exception as error:  # noqa: BLE001 - the poller must survive anything
            message = error.message if isinstance(error, BrokerError) else repr(error)
            if message != self._poll_error:
                self.on_alert("broker_error", f"polling Kite orders: {message}")
            self._poll_error = message
            return
        self._poll_error = ""

    # -- helpers ---------------------------------------------------------------------------------

    async def _change(self, method: str, order_id: str, **kwargs) -> None:
        """Modify or cancel; an order that closed meanwhile (a fill racing an OCO cancel)
        raises OrderError like one known to be closed, other refusals BrokerError."""
        path = f"/orders/regular/{order_id}"
        try:
            await self._send(method, path, self._order_limits, **kwargs)
        except (TokenExpired, RateLimited):
            raise
        except BrokerError as error:
            if not 400 <= error.status < 500:
                raise
            state = await self._history(order_id)
            if state.is_open:
                raise
            raise OrderError("order_id", f"{order_id} is not open ({state.status})") from error

    async def _send(self, method: str, path: str, limits: tuple, **kwargs):
        if self._rest is None:
            raise RuntimeError("KiteBroker.start() has not been awaited")
        response = await self._rest.request(method, path, limits, **kwargs)
        self._expired = False
        return response

    def _error(self, response):
        error = kite_error(response)
        sent_with = response.request.headers.get("Authorization")
        current = self._rest.headers.get("Authorization") if self._rest else None
        # a request sent before a renewal answers for the old token: no new expiry
        if isinstance(error, TokenExpired) and sent_with == current:
            self._token_expired(error.message)
        return error

    def _token_expired(self, message: str) -> None:
        if not self._expired and not self._renewing:
            self._expired = True
            self.on_alert("token_expired", message)

    def _stream_alert(self, code: str, message: str) -> None:
        if code == "token_expired":
            self._token_expired(message)
        else:
            self.on_alert(code, message)

    def _use_token(self, token: str) -> None:
        self.access_token = token
        if self._rest is not None:
            self._rest.headers = {
                "X-Kite-Version": "3",
                "Authorization": f"token {self.api_key}:{token}",
            }

    def _instrument(self, symbol: str) -> InstrumentConfig:
        instrument = self.instruments.get(symbol)
        if instrument is None or instrument.kite is None:
            raise OrderError("symbol", f"{symbol!r} is not a configured Kite instrument")
        return instrument

    async def _check_instruments(self) -> None:
        names = [f"{i.kite.exchange}:{i.kite.tradingsymbol}" for i in self.cfg.instruments]
        response = await self._send("GET", "/quote/ltp", self._quote_limits, params={"i": names})
        check_quotes(payload(response) or {}, names, self.cfg.instruments)

    async def _find(self, tag: str) -> OrderState | None:
        for attempt in range(LOOKUPS):
            with contextlib.suppress(BrokerError):
                found = await self.order_by_tag(tag)
                if found is not None:
                    return found
            if attempt + 1 < LOOKUPS:
                await asyncio.sleep(LOOKUP_PAUSE_S)
        return None

    async def _order_book(self) -> list[OrderState]:
        response = await self._send("GET", "/orders", self._other_limits)
        return [self._ingest(data) or self._read(data)[0] for data in payload(response) or ()]

    async def _history(self, order_id: str) -> OrderState:
        response = await self._send("GET", f"/orders/{order_id}", self._other_limits)
        entries = payload(response) or ()
        if not entries:
            raise BrokerError(f"Kite has no history for order {order_id}")
        return self._ingest(entries[-1]) or self._read(entries[-1])[0]

    async def _current(self, order_id: str) -> OrderState:
        known = self._tracker.known.get(order_id)
        return known if known is not None else await self._history(order_id)


__all__ = ["KiteBroker"]
