"""A fake Kite Connect v3: REST (FastAPI on uvicorn) and the ticker, on 127.0.0.1 free ports.

:class:`FakeKite` runs both servers on its own event loop in a daemon thread, so sync tests
use it as a context manager and async tests share it without sharing their loop. Every public
method is thread-safe: it runs on the fake's loop and waits for the result.

Shapes follow Kite's documentation and pykiteconnect's parsing: the ``{"status", "data"}``
envelope, ``{"status": "error", "message", "error_type"}`` errors with their HTTP statuses,
order dicts as ``GET /orders`` and the ticker's ``{"type": "order"}`` messages carry them.
Orders match against a last traded price per instrument: MARKET fills at once at the LTP; a
LIMIT marketable on arrival fills at the LTP, a resting one at its price once the LTP reaches
it; SL and SL-M trigger when the LTP reaches the trigger (SL then rests as a limit, SL-M
fills at the LTP). ``set_fill_size`` makes fills partial, one lot of that size per price.
Order updates go out on the ticker for every change after placement (Kite sends none for the
placement itself), a partial fill or a modification with status ``UPDATE`` as Kite does.
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
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.kite_ticker import (
    KiteTickerServer,
    full_packet,
    index_full_packet,
    index_quote_packet,
    ltp_packet,
    quote_packet,
)

#: Kite's timestamps are IST
IST = timezone(timedelta(hours=5, minutes=30))
USER_ID = "AB1234"
#: statuses in which an order can still fill, be modified or cancelled
OPEN_STATUSES = frozenset({"OPEN", "TRIGGER PENDING"})
#: what Kite records before an order opens, in order
ENTRY_STEPS = ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING")
BAD_TOKEN = "Incorrect `api_key` or `access_token`."
NO_PROTECTION = (
    "Market orders without market protection are not allowed via API. Please set market"
    " protection or use a Limit order."
)
#: form fields every order placement needs
REQUIRED = ("tradingsymbol", "exchange", "transaction_type", "order_type", "quantity", "product")
#: allowed values of the placement's enumerated fields
CHOICES = {
    "transaction_type": ("BUY", "SELL"),
    "order_type": ("MARKET", "LIMIT", "SL", "SL-M"),
    "product": ("CNC", "NRML", "MIS", "MTF"),
    "validity": ("DAY", "IOC", "TTL"),
}


def _now() -> str:
    return datetime.now(IST).strftime("%Y-%m-%d %H:%M:%S")


def _ok(data: Any) -> JSONResponse:
    return JSONResponse({"status": "success", "data": data})


def _error(status: int, error_type: str, message: str) -> JSONResponse:
    body = {"status": "error", "message": message, "data": None, "error_type": error_type}
    return JSONResponse(body, status_code=status)


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
        self._requests: list[dict] = []
        self._messages: list[dict] = []
        self._orders: dict[str, dict] = {}
        self._history: dict[str, list[dict]] = {}
        self._trades: list[dict] = []
        self._books: dict[tuple, dict[str, list]] = {}
        self._ltp = {ts: float(i.get("last_price", 100.0)) for ts, i in self.instruments.items()}
        self._fill_size: dict[str, int] = {}
        self._volume = itertools.count(1)
        self._ids = itertools.count(250_101_000_000_001)
        self._token_ok = True
        self._throttled = 0
        self._rejects: list[str] = []
        self._stall: tuple[float, bool] | None = None
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
        sock = socket.socket()
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
        return self._call(lambda: [dict(m) for m in self._messages])

    def order(self, order_id: str) -> dict:
        """Return the current dict of one order."""
        return self._call(lambda: dict(self._orders[order_id]))

    def set_ltp(self, tradingsymbol: str, price: float) -> None:
        """Set an instrument's last price and match its open orders against it."""
        self._call(lambda: self._set_ltp(tradingsymbol, float(price)))

    def push_ticks(self, tradingsymbol: str, prices: Iterable[float]) -> None:
        """Per price: set the LTP, send one packet in the subscribed mode, match orders."""
        prices = [float(p) for p in prices]

        def push() -> None:
            for price in prices:
                self._send_tick(tradingsymbol, price)
                self._set_ltp(tradingsymbol, price)

        self._call(push)

    def set_fill_size(self, tradingsymbol: str, units: int | None) -> None:
        """Fill at most ``units`` of each order per price (None: whole orders)."""
        self._call(lambda: self._fill_size.update({tradingsymbol: units or 0}))

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

    def throttle(self, n: int) -> None:
        """Answer the next ``n`` order requests with HTTP 429."""
        self._call(lambda: setattr(self, "_throttled", n))

    def reject_next(self, message: str) -> None:
        """Refuse the next order placement with 400 ``InputException`` and ``message``."""
        self._call(lambda: self._rejects.append(message))

    def stall_next(self, seconds: float, place: bool = True) -> None:
        """Hold the answer to the next order placement for ``seconds``, placing the order
        first (the answer is lost in transit) or not at all (``place=False``)."""
        self._call(lambda: setattr(self, "_stall", (seconds, place)))

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
        return entry

    def refuse(self, entry: dict) -> JSONResponse | None:
        """Return the error an order request or an unauthorized request gets, if any."""
        if entry["method"] != "GET" and entry["path"].startswith("/orders") and self._throttled:
            self._throttled -= 1
            return _error(429, "NetworkException", "Too many requests")
        expected = f"token {self.api_key}:{self.access_token}"
        if not self._token_ok or entry["headers"].get("authorization") != expected:
            return _error(403, "TokenException", BAD_TOKEN)
        return None

    def session_token(self, form: dict) -> JSONResponse:
        if form.get("api_key") != self.api_key:
            return _error(403, "TokenException", "Invalid `api_key`.")
        if not form.get("request_token") or form["request_token"] != self.request_token:
            return _error(403, "TokenException", "Token is invalid or has expired.")
        plain = self.api_key + form["request_token"] + self.api_secret
        if form.get("checksum") != hashlib.sha256(plain.encode()).hexdigest():
            return _error(403, "TokenException", "Invalid `checksum`.")
        self._fresh_request_token()
        session = {
            **self.profile(),
            "api_key": self.api_key,
            "access_token": self.access_token,
            "public_token": secrets.token_hex(16),
            "refresh_token": "",
            "enctoken": secrets.token_hex(16),
            "login_time": _now(),
        }
        return _ok(session)

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
                    "last_price": self._ltp[symbol],
                }
        return quotes

    def place(self, variety: str, form: dict) -> JSONResponse:
        if self._rejects:
            return _error(400, "InputException", self._rejects.pop(0))
        if variety != "regular":
            return _error(400, "InputException", "Invalid `variety`.")
        problem = _check_order(form, self.instruments)
        if problem:
            return _error(400, "InputException", problem)
        inst = self.instruments[form["tradingsymbol"]]
        order_id = str(next(self._ids))
        quantity = int(form["quantity"])
        order = {
            "placed_by": USER_ID,
            "order_id": order_id,
            "exchange_order_id": None,
            "parent_order_id": None,
            "status": ENTRY_STEPS[0],
            "status_message": None,
            "status_message_raw": None,
            "order_timestamp": _now(),
            "exchange_update_timestamp": None,
            "exchange_timestamp": None,
            "variety": variety,
            "modified": False,
            "exchange": form["exchange"],
            "tradingsymbol": form["tradingsymbol"],
            "instrument_token": inst["instrument_token"],
            "order_type": form["order_type"],
            "transaction_type": form["transaction_type"],
            "validity": form.get("validity", "DAY"),
            "validity_ttl": 0,
            "product": form["product"],
            "quantity": quantity,
            "disclosed_quantity": int(form.get("disclosed_quantity") or 0),
            "price": float(form.get("price") or 0),
            "trigger_price": float(form.get("trigger_price") or 0),
            "average_price": 0,
            "filled_quantity": 0,
            "pending_quantity": quantity,
            "cancelled_quantity": 0,
            "market_protection": float(form.get("market_protection") or 0),
            "meta": {},
            "tag": form.get("tag") or None,
            "guid": secrets.token_hex(8),
        }
        if order["tag"]:
            order["tags"] = [order["tag"]]
        self._orders[order_id] = order
        self._history[order_id] = []
        for step in ENTRY_STEPS:
            self._record_step(order, status=step)
        order["exchange_order_id"] = str(int(order_id) + 1_000_000_000_000_000)
        order["exchange_timestamp"] = _now()
        waiting = "TRIGGER PENDING" if order["order_type"] in ("SL", "SL-M") else "OPEN"
        self._record_step(order, status=waiting)
        self._match(order, arriving=True)
        return _ok({"order_id": order_id})

    def modify(self, order_id: str, form: dict) -> JSONResponse:
        order = self._orders.get(order_id)
        if order is None:
            return _error(400, "InputException", "Invalid `order_id`.")
        if order["status"] not in OPEN_STATUSES:
            message = f"Order cannot be modified as it is {order['status'].lower()}."
            return _error(400, "InputException", message)
        kept = (*REQUIRED, "price", "trigger_price")
        merged = {k: str(v) for k, v in order.items() if k in kept and v is not None}
        merged |= {k: v for k, v in form.items() if v != ""}
        problem = _check_order({**merged, "market_protection": "-1"}, self.instruments)
        if problem:
            return _error(400, "InputException", problem)
        quantity = int(merged["quantity"])
        if quantity <= order["filled_quantity"]:
            return _error(400, "InputException", "Quantity must exceed the filled quantity.")
        changes = {
            "order_type": merged["order_type"],
            "quantity": quantity,
            "pending_quantity": quantity - order["filled_quantity"],
            "price": float(merged.get("price") or order["price"]),
            "trigger_price": float(merged.get("trigger_price") or order["trigger_price"]),
            "modified": True,
        }
        self._change(order, "UPDATE", **changes)
        self._match(order, arriving=True)
        return _ok({"order_id": order_id})

    def cancel(self, order_id: str) -> JSONResponse:
        order = self._orders.get(order_id)
        if order is None:
            return _error(400, "InputException", "Invalid `order_id`.")
        if order["status"] not in OPEN_STATUSES:
            message = f"Order cannot be cancelled as it is {order['status'].lower()}."
            return _error(400, "InputException", message)
        pending = order["pending_quantity"]
        self._change(
            order, None, status="CANCELLED", pending_quantity=0, cancelled_quantity=pending
        )
        return _ok({"order_id": order_id})

    def order_list(self) -> list[dict]:
        return [dict(order) for order in self._orders.values()]

    def history(self, order_id: str) -> JSONResponse:
        if order_id not in self._history:
            return _error(400, "InputException", "Invalid `order_id`.")
        return _ok([dict(step) for step in self._history[order_id]])

    def trades(self, order_id: str | None = None) -> list[dict]:
        return [dict(t) for t in self._trades if order_id in (None, t["order_id"])]

    def positions(self) -> dict:
        net = []
        for (exchange, symbol, product), book in self._books.items():
            (buy_qty, buy_value), (sell_qty, sell_value) = book["buy"], book["sell"]
            quantity = int(buy_qty - sell_qty)
            pnl = (sell_value - buy_value) + quantity * self._ltp[symbol]
            row = {
                "tradingsymbol": symbol,
                "exchange": exchange,
                "instrument_token": self.instruments[symbol]["instrument_token"],
                "product": product,
                "quantity": quantity,
                "overnight_quantity": 0,
                "multiplier": 1,
                "average_price": 0.0,
                "close_price": 0,
                "last_price": self._ltp[symbol],
                "value": sell_value - buy_value,
                "pnl": pnl,
                "m2m": pnl,
                "unrealised": pnl,
                "realised": 0,
            }
            for side, (qty, value) in book.items():
                price = value / qty if qty else 0.0
                for prefix in ("", "day_"):  # nothing overnight: the day's figures are the net
                    row[f"{prefix}{side}_quantity"] = int(qty)
                    row[f"{prefix}{side}_price"] = price
                    row[f"{prefix}{side}_value"] = value
                row[f"{side}_m2m"] = value
            if quantity:
                row["average_price"] = row["buy_price" if quantity > 0 else "sell_price"]
            net.append(row)
        return {"net": net, "day": [dict(row) for row in net]}

    # -- matching --------------------------------------------------------------------------------

    def _fresh_request_token(self) -> str:
        self.request_token = secrets.token_hex(16)
        return self.request_token

    def _set_ltp(self, symbol: str, price: float) -> None:
        self._ltp[symbol] = price
        for order in list(self._orders.values()):
            if order["tradingsymbol"] == symbol and order["status"] in OPEN_STATUSES:
                self._match(order, arriving=False)

    def _match(self, order: dict, arriving: bool) -> None:
        ltp = self._ltp[order["tradingsymbol"]]
        buy = order["transaction_type"] == "BUY"
        if order["status"] == "TRIGGER PENDING":
            trigger = order["trigger_price"]
            if (buy and ltp < trigger) or (not buy and ltp > trigger):
                return
            arriving = True  # a triggered order reaches the market now
            if order["order_type"] == "SL":
                self._change(order, None, status="OPEN")
        if order["order_type"] in ("MARKET", "SL-M"):
            price = ltp
        else:
            limit = order["price"]
            if (buy and ltp > limit) or (not buy and ltp < limit):
                return
            price = ltp if arriving else limit
        self._fill(order, price)

    def _fill(self, order: dict, price: float) -> None:
        pending = order["pending_quantity"]
        units = min(pending, self._fill_size.get(order["tradingsymbol"]) or pending)
        done = order["filled_quantity"]
        average = (order["average_price"] * done + price * units) / (done + units)
        complete = units == pending
        changes = {
            "filled_quantity": done + units,
            "pending_quantity": pending - units,
            "average_price": average,
            "status": "COMPLETE" if complete else "OPEN",
        }
        self._change(order, None if complete else "UPDATE", **changes)
        self._trades.append(
            {
                "trade_id": str(next(self._ids)),
                "order_id": order["order_id"],
                "exchange_order_id": order["exchange_order_id"],
                "tradingsymbol": order["tradingsymbol"],
                "exchange": order["exchange"],
                "instrument_token": order["instrument_token"],
                "transaction_type": order["transaction_type"],
                "product": order["product"],
                "average_price": price,
                "quantity": units,
                "fill_timestamp": order["exchange_update_timestamp"],
                "order_timestamp": order["order_timestamp"],
                "exchange_timestamp": order["exchange_update_timestamp"],
            }
        )
        key = (order["exchange"], order["tradingsymbol"], order["product"])
        book = self._books.setdefault(key, {"buy": [0, 0.0], "sell": [0, 0.0]})
        side = book[order["transaction_type"].lower()]
        side[0] += units
        side[1] += units * price

    def _record_step(self, order: dict, **changes: Any) -> None:
        order.update(changes)
        self._history[order["order_id"]].append(dict(order))

    def _change(self, order: dict, pushed_status: str | None, **changes: Any) -> None:
        """Apply a change after placement: history, order book, and a ticker message."""
        self._record_step(order, exchange_update_timestamp=_now(), **changes)
        data = {
            **order,
            "user_id": USER_ID,
            "unfilled_quantity": order["pending_quantity"],
            "app_id": 1234,
            "checksum": "",
        }
        if pushed_status:
            data["status"] = pushed_status
        message = {"type": "order", "id": "", "data": data}
        self._messages.append(message)
        self.ticker.send_text(message)

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
                now = int(time.time())
                packet = full_packet(token, last_trade_time=now, exchange_timestamp=now, **fields)
            else:
                packet = quote_packet(token, **fields)
        self.ticker.send_ticks([packet])


def _check_order(form: dict, instruments: dict) -> str:
    """Return what is wrong with an order's fields, "" when nothing is."""
    for field in REQUIRED:
        if not form.get(field):
            return f"Missing `{field}`."
    for field, allowed in CHOICES.items():
        if form.get(field, allowed[0]) not in allowed:
            return f"Invalid `{field}`."
    inst = instruments.get(form["tradingsymbol"])
    if inst is None or inst["exchange"] != form["exchange"]:
        return "Invalid `tradingsymbol`."
    if not form["quantity"].isdigit() or int(form["quantity"]) <= 0:
        return "Invalid `quantity`."
    order_type = form["order_type"]
    for field, types in (("price", ("LIMIT", "SL")), ("trigger_price", ("SL", "SL-M"))):
        try:
            value = float(form.get(field) or 0)
        except ValueError:
            return f"Invalid `{field}`."
        if order_type in types and value <= 0:
            return f"Invalid `{field}`."
    if order_type in ("MARKET", "SL-M") and float(form.get("market_protection") or 0) == 0:
        return NO_PROTECTION
    tag = form.get("tag") or ""
    if len(tag) > 20 or (tag and not tag.isalnum()):
        return "Invalid `tag`. Tags are alphanumeric, at most 20 characters."
    return ""


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
        stall = None
        if entry["method"] == "POST" and path.startswith("orders"):
            stall, fake._stall = fake._stall, None
        if stall is not None and not stall[1]:
            await asyncio.sleep(stall[0])
            return _answer(entry, _error(503, "NetworkException", "Gateway timed out"))
        response = _route(fake, entry, path.strip("/").split("/"))
        if stall is not None:
            await asyncio.sleep(stall[0])
        return _answer(entry, response)

    return app


def _route(fake: FakeKite, entry: dict, parts: list[str]) -> JSONResponse:
    method, form = entry["method"], entry["form"]
    match (method, *parts):
        case ("GET", "user", "profile"):
            return _ok(fake.profile())
        case ("GET", "quote", "ltp"):
            return _ok(fake.quote_ltp(entry["query"].get("i", [])))
        case ("GET", "orders"):
            return _ok(fake.order_list())
        case ("GET", "orders", order_id):
            return fake.history(order_id)
        case ("GET", "orders", order_id, "trades"):
            return _ok(fake.trades(order_id))
        case ("GET", "trades"):
            return _ok(fake.trades())
        case ("GET", "portfolio", "positions"):
            return _ok(fake.positions())
        case ("POST", "orders", variety):
            return fake.place(variety, form)
        case ("PUT", "orders", _variety, order_id):
            return fake.modify(order_id, form)
        case ("DELETE", "orders", _variety, order_id):
            return fake.cancel(order_id)
    return _error(404, "GeneralException", "Route not found")


def _answer(entry: dict, response: JSONResponse) -> JSONResponse:
    entry["status"] = response.status_code
    return response
