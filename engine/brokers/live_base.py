"""What every live broker adapter shares: errors, rate limits, the HTTP client and credentials.

An adapter (Kite, Upstox, ProjectX) implements :class:`~engine.brokers.base.Broker` over its
REST API and :class:`LiveAdapter`'s extras (start, close, market data). It sends every request
through one :class:`RestClient`, which owns the adapter's single ``httpx.AsyncClient``
(keep-alive, explicit timeouts), waits on the adapter's client-side token buckets before a
request, backs off on HTTP 429 and retries only what is safe to repeat:

- a 429 is retried for any method, because the broker refused it without acting on it;
- a network failure or timeout is retried only for idempotent requests (``GET``, ``PUT``,
  ``DELETE``); placing an order (``POST``) is never resent blindly, the caller looks the order up
  by its unique tag instead.

Errors the broker reports keep the broker's own message: :class:`TokenExpired` for an expired or
revoked session, :class:`RateLimited` when 429s outlast the retries, :class:`BrokerError` for the
rest. A well-formed order the broker refuses is not an exception: ``place`` returns it as a
``rejected`` :class:`~engine.brokers.base.OrderState` whose ``reason`` is that message.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx

from engine.brokers.base import Broker, OrderRequest, OrderState
from engine.brokers.wire import Wire
from engine.config_errors import ConfigError
from engine.feeds.ticks import TickBatch

#: methods safe to resend after a network failure
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD", "OPTIONS"})
#: attempts of one request: the first and up to this many more after a 429 or (idempotent)
#: network failure
RETRIES = 3
#: first back-off after a 429 without ``Retry-After``, seconds; doubles per attempt
BACKOFF_429_S = 0.25
#: connections kept alive per adapter
MAX_CONNECTIONS = 8
#: methods sent over the lean order connection (:mod:`engine.brokers.wire`): the ones that
#: place, change and cancel orders, where httpx's ~400 us per request would be the latency
WIRE_METHODS = frozenset({"POST", "PUT", "DELETE"})

#: a delivery takes the filled batch, its tick count and the frame's receive stamp
Deliver = Callable[[TickBatch, int, int], None]
#: an alert takes a code (``token_expired``, ``token_renewed``, ``rate_limited``,
#: ``broker_error``, ``stream``) and the broker's own message
Alert = Callable[[str, str], None]


class BrokerError(Exception):
    """The broker refused a request or could not be reached; ``str()`` is its own message.

    Parameters
    ----------
    message : str
        The broker's message (or the transport's, when it never answered).
    status : int
        HTTP status, 0 when there was no response.
    code : str
        The broker's error code or type (``InputException``, ``UDAPI1026``, ...), else "".
    """

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class TokenExpired(BrokerError):  # noqa: N818 - named as the brokers name it
    """The session token is expired or revoked: Kite 403 ``TokenException``, Upstox 401
    ``UDAPI100050``, ProjectX 401 or ``GatewayLogout``."""


class RateLimited(BrokerError):  # noqa: N818
    """HTTP 429 persisted through every retry."""


class Dropped(BrokerError):  # noqa: N818
    """The request lost its reason while it waited for the rate limit: it was never sent."""


#: asked once a request may leave (after the rate limit): False drops it unsent
Guard = Callable[[], bool]


def secret(env_name: str, field: str) -> str:
    """Return the value of environment variable ``env_name``.

    Raises
    ------
    ConfigError
        Naming ``field`` (the config key that names the variable) when it is unset or empty.
    """
    value = os.environ.get(env_name, "")
    if not value:
        raise ConfigError(f"{field}: environment variable {env_name} is not set", path=field)
    return value


class TokenBucket:
    """Client-side rate limit: at most ``rate`` requests in any ``per`` seconds.

    Kept as the send times of the last ``rate`` requests (a sliding window), so no window of
    ``per`` seconds ever holds more, where a refilling bucket would let a full burst follow a
    full refill and send twice the limit in one second.

    Parameters
    ----------
    rate : int
        Requests allowed per window.
    per : float
        Window length, seconds.
    """

    def __init__(self, rate: int, per: float) -> None:
        self.rate = rate
        self.per = per
        self.sent: deque[float] = deque(maxlen=rate)
        #: no request leaves before this monotonic time (set by a 429's back-off)
        self.blocked_until = 0.0

    def delay(self) -> float:
        """Return the seconds until a request may leave (0 when one may leave now)."""
        now = time.monotonic()
        wait = max(0.0, self.blocked_until - now)
        if len(self.sent) == self.rate:
            wait = max(wait, self.sent[0] + self.per - now)
        return wait

    def take(self) -> None:
        """Record a request leaving now (call once :meth:`delay` is 0)."""
        self.sent.append(time.monotonic())

    def block(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (after a 429)."""
        self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)


async def acquire(buckets: tuple[TokenBucket, ...]) -> None:
    """Wait until every bucket has a token, then spend one from each."""
    while True:
        wait = max((bucket.delay() for bucket in buckets), default=0.0)
        if wait <= 0.0:
            for bucket in buckets:
                bucket.take()
            return
        await asyncio.sleep(wait)


#: maps a response that is not a success to the adapter's exception (or None when it is fine)
ErrorMapper = Callable[[httpx.Response], BrokerError | None]


class RestClient:
    """One adapter's HTTP client: keep-alive, timeouts, token buckets, 429 back-off, retries.

    Reads go through one ``httpx.AsyncClient``; writes (``WIRE_METHODS``) through a
    :class:`~engine.brokers.wire.Wire` to the same host, whose failures are httpx's
    ``TransportError`` too, so both are retried and reported alike.

    Parameters
    ----------
    base_url : str
        REST base URL.
    timeout_s : float
        Connect, read, write and pool timeout, seconds.
    errors : ErrorMapper
        Turns a broker's error response into the adapter's :class:`BrokerError`.
    on_alert : Alert, optional
        Told ``rate_limited`` on every 429.
    """

    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        errors: ErrorMapper,
        on_alert: Alert | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
            ),
        )
        self.wire = Wire(base_url, timeout_s)
        self.errors = errors
        self.on_alert = on_alert
        #: headers sent with every request (the adapter sets ``Authorization``)
        self.headers: dict[str, str] = {}
        #: 429 responses seen
        self.throttled = 0

    async def request(
        self,
        method: str,
        path: str,
        buckets: tuple[TokenBucket, ...] = (),
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        json: Any = None,
        guard: Guard | None = None,
    ) -> httpx.Response:
        """Send one request and return its successful response.

        ``guard``, when given, is asked each time the request may leave (after the token
        buckets, and again after a 429's back-off): an order that lost its reason meanwhile (a
        leg whose position closed) is then dropped before it is sent, never after.

        Raises
        ------
        BrokerError
            As mapped by ``errors`` (TokenExpired, a rejection, ...), or with status 0 when the
            broker could not be reached.
        RateLimited
            When every attempt got a 429.
        Dropped
            When ``guard`` said no; nothing was sent.
        """
        attempt = 0
        while True:
            await acquire(buckets)
            if guard is not None and not guard():
                raise Dropped(f"{method} {path}: dropped unsent, no longer wanted")
            send = self.wire.request if method in WIRE_METHODS else self.http.request
            try:
                response = await send(
                    method, path, params=params, data=data, json=json, headers=self.headers
                )
            except httpx.TransportError as exc:
                if method in IDEMPOTENT and attempt < RETRIES:
                    attempt += 1
                    await asyncio.sleep(BACKOFF_429_S * attempt)
                    continue
                raise BrokerError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            if response.status_code == 429:
                self.throttled += 1
                pause = _retry_after(response, BACKOFF_429_S * 2**attempt)
                for bucket in buckets:
                    bucket.block(pause)
                if self.on_alert is not None:
                    self.on_alert("rate_limited", f"{method} {path}: HTTP 429, backing off")
                if attempt < RETRIES:
                    attempt += 1
                    await asyncio.sleep(pause)
                    continue
                error = self.errors(response)
                message = error.message if error else "too many requests"
                raise RateLimited(message, 429, error.code if error else "")
            error = self.errors(response)
            if error is not None:
                raise error
            return response

    async def close(self) -> None:
        """Close the connections."""
        await self.wire.close()
        await self.http.aclose()


def _retry_after(response: httpx.Response, fallback: float) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return fallback


class MarketFeed(Protocol):
    """A broker's market-data stream, shaped like :class:`engine.feeds.ws.WsFeed`."""

    #: ``connecting``, ``connected``, ``stale`` or ``disconnected``
    state: str
    #: connection attempts after the first
    reconnects: int

    def rejected_frames(self) -> dict[str, int]:
        """Return the frames (or records) dropped, by reason, nonzero reasons only."""
        ...

    def last_tick_age(self) -> float | None:
        """Return seconds since the last tick arrived, or None before the first."""
        ...

    async def run(self) -> None:
        """Connect, subscribe and deliver ticks until :meth:`stop`, reconnecting with backoff."""
        ...

    def stop(self) -> None:
        """Close the connection and end :meth:`run`."""
        ...


class LiveAdapter(Broker, Protocol):
    """A live broker: the :class:`Broker` protocol plus start-up, shutdown and market data.

    The runtime builds an adapter from the config, calls :meth:`start` (which authenticates
    and resolves every instrument, raising ConfigError naming the first that does not
    resolve), then follows :meth:`updates` and runs :meth:`market_feed`.
    """

    #: the config's ``broker.name``
    name: str
    #: client order tags this session placed, by tag -> order id (filled as orders are placed)
    tags: dict[str, str]

    async def start(self) -> None:
        """Authenticate, resolve the instruments' broker ids and open the order stream."""
        ...

    async def place(self, order: OrderRequest, guard: Guard | None = None) -> OrderState:
        """Place ``order`` as :meth:`Broker.place` does; ``guard`` is asked before it leaves
        (see :meth:`RestClient.request`) and :class:`Dropped` raised when it says no."""
        ...

    async def day_orders(self, prefix: str) -> list[OrderState]:
        """Return the day's orders (open or finished) whose tag starts with ``prefix``, and
        follow the open ones from now on (their updates come on :meth:`Broker.updates`)."""
        ...

    async def close(self) -> None:
        """Close the HTTP client and every stream."""
        ...

    def market_feed(
        self, index: dict[str, int], deliver: Deliver, on_state: Callable[[str], None]
    ) -> MarketFeed:
        """Return the broker's market-data feed delivering ticks of the configured symbols."""
        ...
