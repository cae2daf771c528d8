"""Zerodha Kite Connect v3: orders on the ``regular`` variety, positions, order updates.

Requests carry ``X-Kite-Version: 3`` and ``Authorization: token api_key:access_token``. The
access token comes from its environment variable (``broker.access_token_env``, default
``KITE_ACCESS_TOKEN``) or the token file ``python run.py login kite`` writes.

Order updates arrive twice: as the ticker's ``{"type": "order"}`` text messages (handed to
:meth:`KiteBroker._on_ticker_order` by the ticker of :meth:`KiteBroker.market_feed`) and from
polling ``GET /orders`` every :data:`~engine.brokers.kite.orders.POLL_INTERVAL_S` while any of
our orders is open, so they keep flowing when the market data comes from elsewhere or the
ticker is down. :class:`~engine.brokers.kite.orders.OrderWatch` merges both into one
deduplicated stream. Only orders carrying one of our tags (or ids) go out.

Client-side rate limits follow Kite's: orders 10/s and 400/min, quotes 1/s, the rest 10/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

from engine.brokers.base import OrderError, OrderRequest, OrderState, OrderUpdate, check_qty
from engine.brokers.kite.login import env_name, stored_tokens, token_path
from engine.brokers.kite.orders import OrderWatch
from engine.brokers.kite.rest import (
    REFUSALS,
    check_quotes,
    kite_error,
    modify_form,
    net_positions,
    payload,
    place_form,
)
from engine.brokers.kite.ticker import KiteTicker
from engine.brokers.live_base import (
    Alert,
    BrokerError,
    Deliver,
    Dropped,
    Guard,
    MarketFeed,
    RateLimited,
    RestClient,
    TokenBucket,
    TokenExpired,
    secret,
)
from engine.config_errors import ConfigError
from engine.config_models import EngineConfig, InstrumentConfig
from engine.journal import TAG_PREFIX

#: order-book lookups by tag after a placement failed in transit, and the pause between them
LOOKUPS, LOOKUP_PAUSE_S = 3, 0.3
#: longest wait for a cancel to reach its final state before ``cancel`` returns
CANCEL_SETTLE_S = 1.0


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
        self.api_key = ""
        self.access_token = ""
        self.instruments: dict[str, InstrumentConfig] = {i.symbol: i for i in cfg.instruments}
        self._symbols = {
            (i.kite.exchange, i.kite.tradingsymbol): i.symbol for i in cfg.instruments if i.kite
        }
        self._watch = OrderWatch(self._symbols)
        #: client tag -> Kite order id of every order this adapter placed or looked up
        self.tags: dict[str, str] = self._watch.tags
        self._tracker = self._watch.tracker  # the orders' last states and update stream
        self._order_limits = (TokenBucket(10, 1.0), TokenBucket(400, 60.0))
        self._other_limits = (TokenBucket(10, 1.0),)
        self._quote_limits = (TokenBucket(1, 1.0),)
        self._rest: RestClient | None = None
        self._poller: asyncio.Task | None = None
        self._expired = False
        self._renewing = False
        #: (order id, units filled) of fill updates already reported as not ours
        self._unknown: set[tuple[str, int]] = set()

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
        self._poller = asyncio.create_task(
            self._watch.poll(self._orders, lambda: self._expired, self.on_alert)
        )

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
            self._watch.wake.set()
            return True
        self._use_token(previous)
        return False

    # -- orders ----------------------------------------------------------------------------------

    async def place(self, order: OrderRequest, guard: Guard | None = None) -> OrderState:
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
        self._watch.expect(order)
        try:
            response = await self._send(
                "POST", "/orders/regular", self._order_limits, data=form, guard=guard
            )
        except (TokenExpired, RateLimited, Dropped):
            self._watch.pending.pop(order.tag, None)
            raise
        except BrokerError as error:
            if error.status == 0 or (error.status >= 500 and error.code not in REFUSALS):
                # the order may have reached Kite: never resend, look for it by its tag
                found = await self._find(order.tag)
                if found is not None:
                    # it did: booked once, from Kite's own record, and the lost answer journaled
                    self.on_alert(
                        "broker_error",
                        f"{error.message} (order {order.tag} reached Kite as {found.order_id})",
                    )
                    return found
                raise
            self._watch.pending.pop(order.tag, None)
            if error.code not in REFUSALS:
                raise
            return self._watch.refused(order, error.message)
        order_id = str(payload(response)["order_id"])
        self._watch.adopt(order.tag, order_id)
        known = self._tracker.known.get(order_id)
        if known is not None:
            return known  # the ticker or a poll already reported it
        return order.as_state(order_id, "working")

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
        found = None
        for data in await self._orders():
            if data.get("tag") == tag or tag in (data.get("tags") or ()):
                found = data  # the latest wins, should a tag ever repeat
        if found is None:
            return None
        self._watch.adopt(tag, str(found["order_id"]))
        return self._watch.ingest(found)

    async def day_orders(self, prefix: str) -> list[OrderState]:
        """Return the day's orders (``GET /orders``) tagged ``prefix...``; follow the open ones."""
        found = []
        for data in await self._orders():
            tag = data.get("tag") or ""
            if tag.startswith(prefix):
                self._watch.adopt(tag, str(data["order_id"]))
                found.append(self._watch.ingest(data))
        return found

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
            if self._watch.ingest(data) is None:
                self._unknown_fill(data)
        except Exception as error:  # noqa: BLE001 - a malformed message must not stop the feed
            self.on_alert("stream", f"Kite order update not understood: {error!r}")

    def _unknown_fill(self, data: dict) -> None:
        # a fill OTrade did not place (another app, a manual order) on a traded instrument, or
        # under OTrade's tag prefix: the broker's position moved without the engine's; say so
        # once per fill, in Kite's words
        filled = int(data.get("filled_quantity") or 0)
        symbol = self._symbols.get((data.get("exchange"), data.get("tradingsymbol")))
        tag = str(data.get("tag") or "")
        key = (str(data.get("order_id")), filled)
        if not filled or key in self._unknown or not (symbol or tag.startswith(TAG_PREFIX)):
            return
        self._unknown.add(key)
        said = data.get("status_message") or ""
        self.on_alert(
            "unknown_order",
            f"Kite order {key[0]} (tag {tag or 'none'}) is not one of this OTrade's:"
            f" {data.get('status')} {data.get('transaction_type')} {filled}/"
            f"{data.get('quantity')} {data.get('exchange')}:{data.get('tradingsymbol')} at"
            f" {data.get('average_price')}" + (f": {said}" if said else ""),
        )

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

    async def _orders(self) -> Sequence[dict]:
        """Return the records of ``GET /orders``: every order of the day."""
        response = await self._send("GET", "/orders", self._other_limits)
        return payload(response) or ()

    async def _order_book(self) -> list[OrderState]:
        watch = self._watch
        return [watch.ingest(data) or watch.read(data)[0] for data in await self._orders()]

    async def _history(self, order_id: str) -> OrderState:
        response = await self._send("GET", f"/orders/{order_id}", self._other_limits)
        entries = payload(response) or ()
        if not entries:
            raise BrokerError(f"Kite has no history for order {order_id}")
        return self._watch.ingest(entries[-1]) or self._watch.read(entries[-1])[0]

    async def _current(self, order_id: str) -> OrderState:
        known = self._tracker.known.get(order_id)
        return known if known is not None else await self._history(order_id)


__all__ = ["KiteBroker"]
