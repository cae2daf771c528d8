"""A fake Upstox on 127.0.0.1: the v2 REST API (FastAPI/uvicorn) and the v3 feed (picows).

Both servers run in one daemon thread with its own event loop; every public method is
thread-safe, so a test drives the fake from its own thread and loop. The shapes follow the
official SDK's models (``upstox_client/models``) and BROKERS.md: success answers are
``{"status": "success", "data": ...}``, errors ``{"status": "error", "errors": [{...}]}`` with
both ``errorCode`` (the SDK's spelling) and ``error_code`` (the docs'), as Upstox sends them.
Feed frames are ``FeedResponse`` messages encoded with the SDK's own generated classes.

Orders fill against the fake's last traded prices: MARKET at once at the LTP (at the next tick
when there is none), LIMIT when the price reaches the limit (at the LTP when marketable on
arrival, else at the limit), SL-M when the trigger is crossed (at that tick's price), SL by
triggering first and then resting as a limit. :meth:`FakeUpstox.fill` fills part of an order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from upstox_client.feeder.proto import MarketDataFeedV3_pb2 as pb

from engine.config_models import EngineConfig

#: Upstox's answer to a missing, invalid or expired token
TOKEN_PROBLEM = ("UDAPI100050", "Invalid token used to access API")
#: Upstox's answer to too many requests
RATE_PROBLEM = ("UDAPI10005", "Too Many Request Sent")
#: path of the feed socket (the authorize answer adds a single-use ``code``)
FEED_PATH = "/v3/feed/market-data-feed"
#: the order endpoints, recorded in ``orders`` too
ORDER_PATHS = ("/v2/order/place", "/v2/order/modify", "/v2/order/cancel")
#: statuses after which an order no longer changes
FINAL = ("complete", "cancelled", "rejected")
#: fields every place request must carry, with their JSON types
PLACE_FIELDS: dict[str, tuple[type, ...]] = {
    "quantity": (int,),
    "product": (str,),
    "validity": (str,),
    "price": (int, float),
    "instrument_token": (str,),
    "order_type": (str,),
    "transaction_type": (str,),
    "disclosed_quantity": (int,),
    "trigger_price": (int, float),
    "is_amo": (bool,),
}
#: fields every modify request must carry
MODIFY_FIELDS: dict[str, tuple[type, ...]] = {
    "validity": (str,),
    "price": (int, float),
    "order_id": (str,),
    "order_type": (str,),
    "trigger_price": (int, float),
}


def problem(status: int, code: str, message: str) -> Response:
    """Return an Upstox error answer."""
    error = {
        "errorCode": code,
        "error_code": code,
        "message": message,
        "propertyPath": None,
        "property_path": None,
        "invalidValue": None,
        "invalid_value": None,
    }
    body = orjson.dumps({"status": "error", "errors": [error]})
    return Response(body, status, media_type="application/json")


def success(data: Any) -> Response:
    """Return an Upstox success answer."""
    body = orjson.dumps({"status": "success", "data": data})
    return Response(body, 200, media_type="application/json")


def _ist_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 19800))


class FakeUpstox:
    """Fake Upstox REST API and market-data feed; use as a context manager.

    Parameters
    ----------
    instruments : dict of str to str, optional
        Trading symbol by instrument key of the instruments the fake knows.
    token : str
        The access token it accepts.
    """

    def __init__(self, instruments: dict[str, str] | None = None, token: str = "fake-token-1"):
        self.instruments = dict(instruments or {"NSE_EQ|INE009A01021": "INFY"})
        self.access_token = token
        self.rest_url = ""
        self.ws_port = 0
        #: every REST request: method, path, query, json, headers (lower-case names)
        self.requests: list[dict] = []
        #: the order requests (place, modify, cancel), shaped like ``requests``
        self.orders: list[dict] = []
        #: subscription messages received on the feed, decoded, with their frame type
        self.subscriptions: list[dict] = []
        #: authorize calls answered, and feed connections accepted / refused
        self.authorizations = 0
        self.feed_connections = 0
        self.feed_refusals = 0
        self.book: dict[str, dict] = {}
        self.ltp: dict[str, float] = {}
        self.positions: dict[tuple[str, str], dict] = {}
        self._lock = threading.RLock()
        self._expired = False
        self._throttle = 0
        self._reject: tuple[str, str] | None = None
        self._delay = 0.0
        self._failures: dict[str, list] = {}
        self._codes: dict[str, bool] = {}
        self._clients: dict[WSTransport, set[str]] = {}
        self._ids = itertools.count(250101000000001)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-upstox", daemon=True)
        self.app = self._build_app()

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> FakeUpstox:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstox did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._server is not None:
            self._call(self._disconnect_all)
            self._server.should_exit = True
        self._thread.join(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._serve())
        loop.close()

    async def _serve(self) -> None:
        ws_server = await ws_create_server(self._ws_factory, "127.0.0.1", 0)
        self.ws_port = ws_server.sockets[0].getsockname()[1]
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.rest_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="error", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.005)
        self._ready.set()
        await serving
        ws_server.close()
        await ws_server.wait_closed()

    def _call(self, function, *args) -> Any:
        """Run ``function(*args)`` on the fake's loop and return its result."""
        assert self._loop is not None
        done = threading.Event()
        result: list = []

        def run() -> None:
            try:
                result.append(function(*args))
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(5):
            raise RuntimeError("fake upstox loop did not answer")
        return result[0] if result else None

    # -- test controls ---------------------------------------------------------------------------

    def expire_token(self) -> None:
        """Answer every REST call and authorize with 401 ``UDAPI100050`` until set_token."""
        with self._lock:
            self._expired = True

    def set_token(self, token: str) -> None:
        """Accept ``token`` (and only it) from now on."""
        with self._lock:
            self.access_token = token
            self._expired = False

    def throttle(self, n: int) -> None:
        """Answer the next ``n`` order calls with 429 ``UDAPI10005``."""
        with self._lock:
            self._throttle = n

    def reject_next(self, message: str, *, at: str = "place") -> None:
        """Refuse the next order: ``place`` answers 400, ``exchange`` rejects it after."""
        with self._lock:
            self._reject = (at, message)

    def fail(
        self, path: str, n: int, status: int = 500, message: str = "Something went wrong"
    ) -> None:
        """Answer the next ``n`` calls of ``path`` with an HTTP ``status`` error, doing nothing."""
        with self._lock:
            self._failures[path] = [n, status, "UDAPI100500", message]

    def delay_next_place(self, seconds: float) -> None:
        """Create the next order but answer its place call only after ``seconds``."""
        with self._lock:
            self._delay = seconds

    def order(self, order_id: str) -> dict:
        """Return a copy of an order book entry."""
        with self._lock:
            return dict(self.book[order_id])

    def set_ltp(self, instrument_key: str, price: float) -> None:
        """Set the last traded price (no frame is sent) and fill what it crosses."""
        with self._lock:
            self.ltp[instrument_key] = price
            self._match(instrument_key)

    def fill(self, order_id: str, qty: int, price: float | None = None) -> None:
        """Fill ``qty`` more units of an open order at ``price`` (default its limit or LTP)."""
        with self._lock:
            order = self.book[order_id]
            key = order["instrument_token"]
            price = price or order["price"] or self.ltp[key]
            self._execute(order, qty, price)

    def push_ticks(self, instrument_key: str, prices: list[float], qty: int = 1) -> None:
        """Send one ``live_feed`` frame per price to the subscribers, filling after each."""
        for price in prices:
            now_ms = int(time.time() * 1000)
            message = pb.FeedResponse(type=pb.live_feed, currentTs=now_ms)
            ltpc = message.feeds[instrument_key].ltpc
            ltpc.ltp, ltpc.ltt, ltpc.ltq, ltpc.cp = price, now_ms, qty, price
            self._call(self._broadcast, message.SerializeToString(), instrument_key)
            self.set_ltp(instrument_key, price)

    def send_raw(self, payload: bytes, kind: WSMsgType = WSMsgType.BINARY) -> None:
        """Send ``payload`` as one frame to every feed client."""
        self._call(self._broadcast, payload, None, kind)

    def drop_feed(self) -> None:
        """Disconnect every feed client."""
        self._call(self._disconnect_all)

    def feed_clients(self) -> int:
        """Return the number of connected feed clients."""
        return self._call(len, self._clients)

    # -- matching --------------------------------------------------------------------------------

    def _match(self, key: str) -> None:
        ltp = self.ltp.get(key)
        if ltp is None:
            return
        for order in list(self.book.values()):
            if order["instrument_token"] != key or order["status"] in FINAL:
                continue
            # a limit marketable on arrival fills at the LTP, a resting one at its limit
            arriving = order.pop("_new", False)
            buy = order["transaction_type"] == "BUY"
            kind = order["order_type"]
            if order["status"] == "trigger pending":
                trigger = order["trigger_price"]
                if not (ltp >= trigger if buy else ltp <= trigger):
                    continue
                if kind == "SL-M":
                    self._execute(order, order["pending_quantity"], ltp)
                    continue
                order["status"] = "open"
            if kind == "MARKET":
                self._execute(order, order["pending_quantity"], ltp)
            elif kind in ("LIMIT", "SL") and (
                ltp <= order["price"] if buy else ltp >= order["price"]
            ):
                price = ltp if arriving else order["price"]
                self._execute(order, order["pending_quantity"], price)

    def _execute(self, order: dict, qty: int, price: float) -> None:
        filled = order["filled_quantity"]
        order["average_price"] = (order["average_price"] * filled + price * qty) / (filled + qty)
        order["filled_quantity"] = filled + qty
        order["pending_quantity"] = order["quantity"] - order["filled_quantity"]
        if order["pending_quantity"] <= 0:
            order["status"] = "complete"
        order["exchange_timestamp"] = _ist_now()
        signed = qty if order["transaction_type"] == "BUY" else -qty
        key = order["instrument_token"]
        position = self.positions.setdefault((key, order["product"]), self._position(key, order))
        held, entry = position["quantity"], position["average_price"]
        if held == 0 or (held > 0) == (signed > 0):
            entry = (entry * abs(held) + price * abs(signed)) / (abs(held) + abs(signed))
        elif abs(signed) > abs(held):
            entry = price  # flipped: the new position entered at this fill
        position["quantity"] = held + signed
        position["average_price"] = entry if position["quantity"] else 0.0
        side = "buy" if signed > 0 else "sell"
        position[f"day_{side}_quantity"] += qty
        position[f"day_{side}_value"] += qty * price
        position[f"{side}_value"] += qty * price
        position[f"day_{side}_price"] = (
            position[f"day_{side}_value"] / position[f"day_{side}_quantity"]
        )
        position[f"{side}_price"] = position[f"day_{side}_price"]
        position["last_price"] = price

    def _position(self, key: str, order: dict) -> dict:
        symbol = self.instruments.get(key, key)
        return {
            "exchange": key.split("_")[0],
            "multiplier": 1.0,
            "value": 0.0,
            "pnl": 0.0,
            "product": order["product"],
            "instrument_token": key,
            "average_price": 0.0,
            "buy_value": 0.0,
            "overnight_quantity": 0,
            "day_buy_value": 0.0,
            "day_buy_price": 0.0,
            "overnight_buy_amount": 0.0,
            "overnight_buy_quantity": 0,
            "day_buy_quantity": 0,
            "day_sell_value": 0.0,
            "day_sell_price": 0.0,
            "overnight_sell_amount": 0.0,
            "overnight_sell_quantity": 0,
            "day_sell_quantity": 0,
            "quantity": 0,
            "last_price": 0.0,
            "unrealised": 0.0,
            "realised": 0.0,
            "sell_value": 0.0,
            "tradingsymbol": symbol,
            "trading_symbol": symbol,
            "close_price": 0.0,
            "buy_price": 0.0,
            "sell_price": 0.0,
        }

    # -- REST ------------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record_and_authorize(request: Request, call_next):
            body = await request.body()
            entry = {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "json": orjson.loads(body) if body else None,
                "headers": dict(request.headers),
            }
            with self._lock:
                self.requests.append(entry)
                if request.url.path in ORDER_PATHS:
                    self.orders.append(entry)
                authorization = request.headers.get("authorization", "")
                if self._expired or authorization != f"Bearer {self.access_token}":
                    return problem(401, *TOKEN_PROBLEM)
                failures = self._failures.get(request.url.path)
                if failures:
                    failures[0] -= 1
                    if failures[0] == 0:
                        del self._failures[request.url.path]
                    return problem(*failures[1:])
            return await call_next(request)

        @app.get("/v2/user/profile")
        async def profile() -> Response:
            return success(
                {
                    "email": "trader@example.com",
                    "exchanges": ["NSE", "NFO", "BSE"],
                    "products": ["D", "I", "CO", "MTF"],
                    "broker": "UPSTOX",
                    "user_id": "FAKE01",
                    "user_name": "Fake Trader",
                    "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
                    "user_type": "individual",
                    "poa": False,
                    "is_active": True,
                }
            )

        @app.get("/v2/market-quote/ltp")
        async def ltp(instrument_key: str = "", symbol: str = "") -> Response:
            # the docs name the parameter instrument_key, the official SDK sends symbol
            data = {}
            for key in (instrument_key or symbol).split(","):
                if "|" not in key:
                    return problem(400, "UDAPI1087", f"Invalid Instrument key: {key}")
                if key in self.instruments:
                    name = f"{key.split('|')[0]}:{self.instruments[key]}"
                    with self._lock:
                        data[name] = {"last_price": self.ltp.get(key, 0.0), "instrument_token": key}
            return success(data)

        @app.post("/v2/order/place")
        async def place(request: Request) -> Response:
            body = orjson.loads(await request.body())
            with self._lock:
                refused = self._refuse_order() or _missing(body, PLACE_FIELDS)
                if refused is None and body["instrument_token"] not in self.instruments:
                    refused = problem(400, "UDAPI1087", "Invalid Instrument key")
                if refused is None and self._reject and self._reject[0] == "place":
                    refused = problem(400, "UDAPI100500", self._reject[1])
                    self._reject = None
                if refused is not None:
                    return refused
                order_id = self._create(body)
                delay, self._delay = self._delay, 0.0
            await asyncio.sleep(delay)
            return success({"order_id": order_id})

        @app.put("/v2/order/modify")
        async def modify(request: Request) -> Response:
            body = orjson.loads(await request.body())
            with self._lock:
                refused = self._refuse_order() or _missing(body, MODIFY_FIELDS)
                order = self.book.get(body.get("order_id"))
                if refused is None and (order is None or order["status"] in FINAL):
                    refused = problem(400, "UDAPI100040", "Order is not open")
                if refused is not None:
                    return refused
                if "quantity" in body:
                    order["quantity"] = body["quantity"]
                    order["pending_quantity"] = body["quantity"] - order["filled_quantity"]
                order["price"] = float(body["price"])
                order["trigger_price"] = float(body["trigger_price"])
                self._match(order["instrument_token"])
            return success({"order_id": body["order_id"]})

        @app.delete("/v2/order/cancel")
        async def cancel(order_id: str) -> Response:
            with self._lock:
                refused = self._refuse_order()
                order = self.book.get(order_id)
                if refused is None and (order is None or order["status"] in FINAL):
                    refused = problem(400, "UDAPI100041", "Order is not open to cancel")
                if refused is not None:
                    return refused
                order["status"] = "cancelled"
                order["status_message"] = "Cancelled by user"
            return success({"order_id": order_id})

        @app.get("/v2/order/retrieve-all")
        async def order_book() -> Response:
            with self._lock:
                return success([_public(order) for order in self.book.values()])

        @app.get("/v2/order/details")
        async def details(order_id: str) -> Response:
            with self._lock:
                if order_id not in self.book:
                    return problem(400, "UDAPI100010", "Order not found")
                return success(_public(self.book[order_id]))

        @app.get("/v2/portfolio/short-term-positions")
        async def positions() -> Response:
            with self._lock:
                return success([dict(position) for position in self.positions.values()])

        @app.get("/v3/feed/market-data-feed/authorize")
        async def authorize() -> Response:
            code = uuid.uuid4().hex
            with self._lock:
                self._codes[code] = False
                self.authorizations += 1
            url = f"ws://127.0.0.1:{self.ws_port}{FEED_PATH}?code={code}"
            return success({"authorizedRedirectUri": url, "authorized_redirect_uri": url})

        return app

    def _refuse_order(self) -> Response | None:
        if self._throttle > 0:
            self._throttle -= 1
            return problem(429, *RATE_PROBLEM)
        return None

    def _create(self, body: dict) -> str:
        order_id = str(next(self._ids))
        key = body["instrument_token"]
        stop = body["order_type"] in ("SL", "SL-M")
        order = {
            "exchange": key.split("_")[0],
            "product": body["product"],
            "price": float(body["price"]),
            "quantity": body["quantity"],
            "status": "trigger pending" if stop else "open",
            "guid": None,
            "tag": body.get("tag"),
            "instrument_token": key,
            "placed_by": "FAKE01",
            "tradingsymbol": self.instruments[key],
            "trading_symbol": self.instruments[key],
            "order_type": body["order_type"],
            "validity": body["validity"],
            "trigger_price": float(body["trigger_price"]),
            "disclosed_quantity": body["disclosed_quantity"],
            "transaction_type": body["transaction_type"],
            "average_price": 0.0,
            "filled_quantity": 0,
            "pending_quantity": body["quantity"],
            "status_message": None,
            "status_message_raw": None,
            "exchange_order_id": f"1100000{order_id[-8:]}",
            "parent_order_id": None,
            "order_id": order_id,
            "variety": "SIMPLE",
            "order_timestamp": _ist_now(),
            "exchange_timestamp": _ist_now(),
            "is_amo": body["is_amo"],
            "order_request_id": "1",
            "order_ref_id": f"ref-{order_id}",
            "_new": True,
        }
        self.book[order_id] = order
        if self._reject and self._reject[0] == "exchange":
            order["status"] = "rejected"
            order["status_message"] = order["status_message_raw"] = self._reject[1]
            self._reject = None
        else:
            self._match(key)
        return order_id

    # -- feed ------------------------------------------------------------------------------------

    def _ws_factory(self, request: WSUpgradeRequest):
        target = urlsplit(request.path.decode())
        code = (parse_qs(target.query).get("code") or [""])[0]
        with self._lock:
            usable = target.path == FEED_PATH and self._codes.get(code) is False
            if usable:
                self._codes[code] = True
                self.feed_connections += 1
            else:
                self.feed_refusals += 1
        if not usable:
            refusal = WSUpgradeResponse.create_error_response(403, b"authorization code used")
            return WSUpgradeResponseWithListener(refusal, None)
        return _FeedListener(self)

    def _broadcast(self, payload: bytes, key: str | None, kind=WSMsgType.BINARY) -> None:
        for transport, keys in self._clients.items():
            if key is None or key in keys:
                transport.send(kind, payload)

    def _disconnect_all(self) -> None:
        for transport in list(self._clients):
            transport.disconnect()

    def _subscribed(self, transport: WSTransport, frame: WSFrame) -> None:
        message = {"frame": frame.msg_type.name}
        with contextlib.suppress(orjson.JSONDecodeError):
            message.update(orjson.loads(frame.get_payload_as_bytes()))
        with self._lock:
            self.subscriptions.append(message)
            keys = message.get("data", {}).get("instrumentKeys", [])
            if message.get("method") == "sub":
                self._clients[transport].update(keys)
            snapshot = pb.FeedResponse(type=pb.initial_feed, currentTs=int(time.time() * 1000))
            for key in keys:
                if key in self.ltp:
                    snapshot.feeds[key].ltpc.ltp = snapshot.feeds[key].ltpc.cp = self.ltp[key]
        transport.send(WSMsgType.BINARY, snapshot.SerializeToString())


class _FeedListener(WSListener):
    def __init__(self, fake: FakeUpstox) -> None:
        self.fake = fake

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.fake._clients[transport] = set()
        # Upstox opens every connection with the market status
        info = pb.FeedResponse(type=pb.market_info, currentTs=int(time.time() * 1000))
        info.marketInfo.segmentStatus["NSE_EQ"] = pb.NORMAL_OPEN
        transport.send(WSMsgType.BINARY, info.SerializeToString())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in (WSMsgType.BINARY, WSMsgType.TEXT):
            self.fake._subscribed(transport, frame)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.fake._clients.pop(transport, None)


def _missing(body: dict, fields: dict[str, tuple[type, ...]]) -> Response | None:
    for name, types in fields.items():
        value = body.get(name)
        if (
            value is None
            or not isinstance(value, types)
            or (bool not in types and isinstance(value, bool))
        ):
            return problem(400, "UDAPI1000", f"{name} is required and must be valid")
    if "order_type" in body and body["order_type"] not in ("MARKET", "LIMIT", "SL", "SL-M"):
        return problem(400, "UDAPI1000", "order_type is invalid")
    if "transaction_type" in body and body["transaction_type"] not in ("BUY", "SELL"):
        return problem(400, "UDAPI1000", "transaction_type is invalid")
    if "quantity" in body and body["quantity"] <= 0:
        return problem(400, "UDAPI1000", "quantity must be positive")
    return None


def _public(order: dict) -> dict:
    return {name: value for name, value in order.items() if not name.startswith("_")}


#: environment variable the tests put the fake's token in
TOKEN_ENV = "OTRADE_TEST_UPSTOX_TOKEN"


def upstox_config(
    fake: FakeUpstox, journal_dir: Path, instruments: list[dict] | None = None, **broker: Any
) -> EngineConfig:
    """Return an engine config trading through ``fake`` (token in :data:`TOKEN_ENV`)."""
    from tests.conftest import make_config

    if instruments is None:
        instruments = [
            {"symbol": symbol, "tick_size": 0.05, "upstox": {"instrument_key": key}}
            for key, symbol in fake.instruments.items()
        ]
    return make_config(
        instruments=instruments,
        broker={"name": "upstox", "base_url": fake.rest_url, "access_token_env": TOKEN_ENV}
        | broker,
        feed={"name": "broker", "stale_after_s": 5.0},
        journal={"path": str(journal_dir / "journal.jsonl")},
        web={"enabled": False},
    )
