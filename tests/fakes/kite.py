"""A fake Kite Connect v3: REST (FastAPI on uvicorn) and the ticker, on 127.0.0.1 free ports.

:class:`FakeKite` runs both servers on its own event loop in a daemon thread, so sync tests
use it as a context manager and async tests share it without sharing their loop. Every public
method is thread-safe: it runs on the fake's loop and waits for the result.

Shapes follow Kite's documentation and pykiteconnect's parsing: the ``{"status", "data"}``
envelope, ``{"status": "error", "message", "error_type"}`` errors with their HTTP statuses,
order dicts as ``GET /orders`` and the ticker's ``{"type": "order"}`` messages carry them.
Orders live and match in :class:`~tests.fakes.kite_orders.KiteOrderBook`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes.kite_orders import USER_ID, KiteOrderBook, error, now, ok
from tests.fakes.kite_ticker import (
    KiteTickerServer,
    full_packet,
    index_full_packet,
    index_quote_packet,
    ltp_packet,
    quote_packet,
)

#: Kite's refusal of a wrong or expired access token
BAD_TOKEN = "Incorrect `api_key` or `access_token`."


def _divisor(token: int) -> int:
    segment = token & 0xFF
    return 10_000_000 if segment == 3 else 10_000 if segment == 6 else 100


class FakeKite:
    """Kite's REST API and ticker, for the tests.

    Parameters
    ----------
    instruments : iterable of dict
        ``tradingsymbol``, ``exchange``, ``instrument_token`` and optionally ``last_price``
        (default 100.0) of every instrument the fake knows.
    api_key, api_secret, access_token : str, optional
        Credentials; the token is random unless given.
    """

    def __init__(
        self,
        instruments: Iterable[dict],
        api_key: str = "fakeapikey",
        api_secret: str = "fakeapisecret",
        access_token: str | None = None,
    ) -> None:
        self.instruments = {i["tradingsymbol"]: dict(i) for i in instruments}
        self.api_key, self.api_secret = api_key, api_secret
        self.access_token = access_token or secrets.token_hex(16)
        #: the one-use token the next login may exchange
        self.request_token = secrets.token_hex(16)
        self.rest_url = self.ws_url = ""
        self.ticker = KiteTickerServer(api_key, self.access_token)
        #: the orders, their matching, trades and positions
        self.book = KiteOrderBook(self.instruments, self.ticker)
        self._requests: list[dict] = []
        self._volume = itertools.count(1)
        self._token_ok = True
        self._throttled = 0
        self._retry_after: float | None = None
        self._typed_throttles: dict[str, list[float]] = {}
        self._stall: tuple[float, bool] | None = None
        self._failures: dict[str, list[tuple[int, bool]]] = {}
        self._cuts: dict[str, list[bool]] = {}
        self._request_hook: Callable[[dict], None] | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> FakeKite:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(15)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        # named TCP, so asyncio turns Nagle off on its connections: a plain socket() would
        # hold every answer ~40 ms for the client's delayed ACK
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(_app(self), log_level="warning", lifespan="off")
        config.timeout_graceful_shutdown = 1
        self._server = uvicorn.Server(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or self._serving.done():
                raise RuntimeError("the fake Kite REST server did not start")
            await asyncio.sleep(0.005)
        self.rest_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.ws_url = f"ws://127.0.0.1:{await self.ticker.start('127.0.0.1', 0)}"

    async def _stop(self) -> None:
        await self.ticker.stop()
        if self._server is not None and self._serving is not None:
            # force: the tests' keep-alive connections need no graceful goodbye
            self._server.should_exit = self._server.force_exit = True
            await self._serving

    def _call(self, action: Callable[[], Any]) -> Any:
        if threading.current_thread() is self._thread:
            return action()

        async def run() -> Any:
            return action()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    # -- what the tests see and steer ------------------------------------------------------------

    @property
    def requests(self) -> list[dict]:
        """Every REST request: method, path, query (lists), form, headers, ts, status."""
        return self._call(lambda: [dict(r) for r in self._requests])

    @property
    def orders(self) -> list[dict]:
        """The order requests received (POST, PUT and DELETE under ``/orders``)."""
        return [
            r for r in self.requests if r["method"] != "GET" and r["path"].startswith("/orders")
        ]

    @property
    def order_messages(self) -> list[dict]:
        """Every ``{"type": "order", "data": ...}`` message sent on the ticker."""
        return self._call(lambda: [dict(m) for m in self.book.messages])

    def order(self, order_id: str) -> dict:
        """Return the current dict of one order."""
        return self._call(lambda: dict(self.book.orders[order_id]))

    def positions(self) -> list[dict]:
        """Return the net positions as ``GET /portfolio/positions`` shows them."""
        return self._call(lambda: self.book.positions()["net"])

    def set_ltp(self, tradingsymbol: str, price: float) -> None:
        """Set an instrument's last price and match its open orders against it."""
        self._call(lambda: self.book.set_ltp(tradingsymbol, float(price)))

    def push_ticks(self, tradingsymbol: str, prices: Iterable[float]) -> None:
        """Per price: set the LTP, send one packet in the subscribed mode, match orders."""
        prices = [float(p) for p in prices]

        def push() -> None:
            for price in prices:
                self._send_tick(tradingsymbol, price)
                self.book.set_ltp(tradingsymbol, price)

        self._call(push)

    def set_fill_size(self, tradingsymbol: str, units: int | None) -> None:
        """Fill at most ``units`` of each order per price (None: whole orders)."""
        self._call(lambda: self.book.fill_size.update({tradingsymbol: units or 0}))

    def expire_token(self) -> None:
        """Refuse the access token everywhere (REST 403, ticker handshakes) until set_token."""

        def expire() -> None:
            self._token_ok = False
            self.ticker.access_token = secrets.token_hex(16)

        self._call(expire)

    def set_token(self, token: str) -> None:
        """Accept ``token`` (and only it) from now on."""

        def renew() -> None:
            self.access_token, self._token_ok = token, True
            self.ticker.access_token = token

        self._call(renew)

    def throttle(self, n: int, retry_after: float | None = None) -> None:
        """Answer the next ``n`` order requests with HTTP 429, with a ``Retry-After`` header of
        ``retry_after`` seconds when given."""
        self._call(lambda: setattr(self, "_throttled", n))
        self._retry_after = retry_after

    def throttle_next_of(self, order_type: str, retry_after: float) -> None:
        """Answer the next placement of ``order_type`` with HTTP 429 and ``Retry-After``."""
        self._call(lambda: self._typed_throttles.setdefault(order_type, []).append(retry_after))

    def reject_next(self, message: str) -> None:
        """Refuse the next order placement with 400 ``InputException`` and ``message``."""
        self._call(lambda: self.book.rejects.append(message))

    def stall_next(self, seconds: float, place: bool = True) -> None:
        """Hold the answer to the next order placement for ``seconds``, placing the order
        first (the answer is lost in transit) or not at all (``place=False``)."""
        self._call(lambda: setattr(self, "_stall", (seconds, place)))

    def reject_next_of(self, order_type: str, message: str) -> None:
        """Refuse the next placement of ``order_type`` (``MARKET``, ``LIMIT``, ``SL``, ``SL-M``)
        with 400 ``InputException`` and ``message``; other placements go through."""
        self._call(lambda: self.book.typed_rejects.setdefault(order_type, []).append(message))

    def refuse_crossed_stops(self, on: bool = True) -> None:
        """Refuse (400) SL and SL-M orders whose trigger the LTP has already reached, as Kite's
        risk checks do, instead of triggering them on arrival."""
        self._call(lambda: setattr(self.book, "refuse_crossed_stops", on))

    def fill(self, order_id: str, units: int, price: float | None = None) -> None:
        """Fill ``units`` more of an open order at ``price`` (default its price, else the LTP):
        a partial fill when fewer than its pending quantity."""
        self._call(lambda: self.book.fill_units(order_id, units, price))

    def resend_order_message(self, back: int = 1) -> None:
        """Send the ``back``-th last order message on the ticker again: 1 repeats the last one,
        more sends an older state after newer ones (a duplicated, out-of-order update)."""
        self._call(lambda: self.book.resend(back))

    def fail_next(self, method: str = "POST", status: int = 503, act: bool = False) -> None:
        """Answer the next order request with ``method`` (POST places, PUT modifies, DELETE
        cancels) with HTTP ``status``; with ``act`` it is carried out first (the answer is lost),
        else not at all."""
        self._call(lambda: self._failures.setdefault(method, []).append((status, act)))

    def cut_next(self, method: str = "POST", act: bool = True) -> None:
        """Break the connection of the next order request with ``method`` halfway through its
        answer (the status line, the headers and half the body sent, then closed), as a reset
        mid-response does; with ``act`` it is carried out first, else not at all."""
        self._call(lambda: self._cuts.setdefault(method, []).append(act))

    def on_request(self, hook: Callable[[dict], None] | None) -> None:
        """Call ``hook`` with every REST request as it arrives, before Kite acts on it (a test
        kills OTrade there: the order is then in flight at the broker); None removes it."""
        self._call(lambda: setattr(self, "_request_hook", hook))

    def on_order_message(self, hook: Callable[[dict], None] | None) -> None:
        """Call ``hook`` with every ``{"type": "order"}`` message once Kite has made the change
        (a fill is booked at the broker) and before the ticker sends it; None removes it."""
        self._call(lambda: setattr(self.book, "before_message", hook))

    def subscribed(self) -> dict[int, str]:
        """Return the ticker's subscriptions: instrument token -> mode."""
        return self._call(lambda: dict(self.ticker.subscriptions))

    def new_request_token(self) -> str:
        """Issue a fresh one-use request token (as a login redirect would) and return it."""
        return self._call(lambda: self._fresh_request_token())

    # -- REST ------------------------------------------------------------------------------------

    async def record(self, request: Request) -> dict:
        body = await request.body()
        form = parse_qs(body.decode(), keep_blank_values=True) if body else {}
        entry = {
            "method": request.method,
            "path": request.url.path,
            "query": {k: request.query_params.getlist(k) for k in request.query_params},
            "form": {key: values[-1] for key, values in form.items()},
            "headers": dict(request.headers),
            "ts": time.monotonic(),
            "status": 200,
        }
        self._requests.append(entry)
        if self._request_hook is not None:
            self._request_hook(entry)
        return entry

    def refuse(self, entry: dict) -> JSONResponse | None:
        """Return the error an order request or an unauthorized request gets, if any."""
        if entry["method"] != "GET" and entry["path"].startswith("/orders") and self._throttled:
            self._throttled -= 1
            return _too_many(self._retry_after)
        typed = self._typed_throttles.get(entry["form"].get("order_type", ""))
        if entry["method"] == "POST" and typed:
            return _too_many(typed.pop(0))
        expected = f"token {self.api_key}:{self.access_token}"
        if not self._token_ok or entry["headers"].get("authorization") != expected:
            return error(403, "TokenException", BAD_TOKEN)
        return None

    def session_token(self, form: dict) -> JSONResponse:
        if form.get("api_key") != self.api_key:
            return error(403, "TokenException", "Invalid `api_key`.")
        if not form.get("request_token") or form["request_token"] != self.request_token:
            return error(403, "TokenException", "Token is invalid or has expired.")
        plain = self.api_key + form["request_token"] + self.api_secret
        if form.get("checksum") != hashlib.sha256(plain.encode()).hexdigest():
            return error(403, "TokenException", "Invalid `checksum`.")
        self._fresh_request_token()
        session = {
            **self.profile(),
            "api_key": self.api_key,
            "access_token": self.access_token,
            "public_token": secrets.token_hex(16),
            "refresh_token": "",
            "enctoken": secrets.token_hex(16),
            "login_time": now(),
        }
        return ok(session)

    def profile(self) -> dict:
        return {
            "user_id": USER_ID,
            "user_type": "individual",
            "email": "trader@example.com",
            "user_name": "Test Trader",
            "user_shortname": "Trader",
            "broker": "ZERODHA",
            "exchanges": ["NSE", "NFO", "BFO", "CDS", "BSE", "MCX", "BCD", "MF"],
            "products": ["CNC", "NRML", "MIS", "BO", "CO"],
            "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
            "avatar_url": None,
            "meta": {"demat_consent": "physical"},
        }

    def quote_ltp(self, names: list[str]) -> dict:
        quotes = {}
        for name in names:
            exchange, _, symbol = name.partition(":")
            inst = self.instruments.get(symbol)
            if inst is not None and inst["exchange"] == exchange:
                quotes[name] = {
                    "instrument_token": inst["instrument_token"],
                    "last_price": self.book.ltp[symbol],
                }
        return quotes

    # -- helpers ---------------------------------------------------------------------------------

    def _fresh_request_token(self) -> str:
        self.request_token = secrets.token_hex(16)
        return self.request_token

    def _send_tick(self, symbol: str, price: float) -> None:
        token = self.instruments[symbol]["instrument_token"]
        mode = self.ticker.subscriptions.get(token)
        if mode is None:
            return  # Kite sends ticks of subscribed instruments only
        raw = round(price * _divisor(token))
        if mode == "ltp":
            packet = ltp_packet(token, raw)
        elif token & 0xFF == 9:  # an index: no volume or depth
            make = index_full_packet if mode == "full" else index_quote_packet
            packet = make(token, last_price=raw, high=raw, low=raw, open=raw, close=raw)
        else:
            volume = next(self._volume)
            fields = {"last_price": raw, "last_traded_quantity": 1, "volume_traded": volume}
            if mode == "full":
                stamp = int(time.time())
                packet = full_packet(
                    token, last_trade_time=stamp, exchange_timestamp=stamp, **fields
                )
            else:
                packet = quote_packet(token, **fields)
        self.ticker.send_ticks([packet])


def _too_many(retry_after: float | None) -> JSONResponse:
    refusal = error(429, "NetworkException", "Too many requests")
    if retry_after is not None:
        refusal.headers["Retry-After"] = f"{retry_after:g}"
    return refusal


def _app(fake: FakeKite) -> FastAPI:
    app = FastAPI()

    @app.post("/session/token")
    async def session_token(request: Request) -> JSONResponse:
        entry = await fake.record(request)
        return _answer(entry, fake.session_token(entry["form"]))

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def api(request: Request, path: str) -> JSONResponse:
        entry = await fake.record(request)
        refused = fake.refuse(entry)
        if refused is not None:
            return _answer(entry, refused)
        cuts = fake._cuts.get(entry["method"]) if path.startswith("orders") else None
        if cuts and entry["method"] != "GET":
            if cuts.pop(0):
                response = _route(fake, entry, path.strip("/").split("/"))
            else:
                response = error(503, "NetworkException", "Something went wrong")
            return _Cut(_answer(entry, response))
        failures = fake._failures.get(entry["method"]) if path.startswith("orders") else None
        if failures and entry["method"] != "GET":
            status, act = failures.pop(0)
            if act:
                _route(fake, entry, path.strip("/").split("/"))
            return _answer(entry, error(status, "NetworkException", "Something went wrong"))
        stall = None
        if entry["method"] == "POST" and path.startswith("orders"):
            stall, fake._stall = fake._stall, None
        if stall is not None and not stall[1]:
            await asyncio.sleep(stall[0])
            return _answer(entry, error(503, "NetworkException", "Gateway timed out"))
        response = _route(fake, entry, path.strip("/").split("/"))
        if stall is not None:
            await asyncio.sleep(stall[0])
        return _answer(entry, response)

    return app


def _route(fake: FakeKite, entry: dict, parts: list[str]) -> JSONResponse:
    method, form = entry["method"], entry["form"]
    match (method, *parts):
        case ("GET", "user", "profile"):
            return ok(fake.profile())
        case ("GET", "quote", "ltp"):
            return ok(fake.quote_ltp(entry["query"].get("i", [])))
        case ("GET", "orders"):
            return ok(fake.book.order_list())
        case ("GET", "orders", order_id):
            return fake.book.history(order_id)
        case ("GET", "orders", order_id, "trades"):
            return ok(fake.book.trades(order_id))
        case ("GET", "trades"):
            return ok(fake.book.trades())
        case ("GET", "portfolio", "positions"):
            return ok(fake.book.positions())
        case ("POST", "orders", variety):
            return fake.book.place(variety, form)
        case ("PUT", "orders", _variety, order_id):
            return fake.book.modify(order_id, form)
        case ("DELETE", "orders", _variety, order_id):
            return fake.book.cancel(order_id)
    return error(404, "GeneralException", "Route not found")


class _Cut(Response):
    """An answer that stops halfway: its head and half its body, then the connection closes."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.body, response.status_code)
        self.response = response

    async def __call__(self, scope, receive, send) -> None:
        response = self.response
        start = {"type": "http.response.start", "status": response.status_code}
        await send({**start, "headers": response.raw_headers})
        half = response.body[: len(response.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        # an exception after the answer started makes uvicorn drop the connection
        raise ConnectionResetError("the fake Kite cut the answer short")


def _answer(entry: dict, response: JSONResponse) -> JSONResponse:
    entry["status"] = response.status_code
    return response
