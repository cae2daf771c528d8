"""A fake ProjectX gateway: FastAPI REST under ``/api`` and SignalR JSON hubs over picows.

It reproduces the documented shapes (``../shared/BROKERS.md``, project-x-py's source): every
call a JSON ``POST`` answering ``{..., success, errorCode, errorMessage}``, Bearer JWTs from
``Auth/loginKey`` (renewed by ``Auth/validate`` -> ``newToken``), HTTP 401 for a bad token and
429 when throttled; hubs at ``/hubs/market`` and ``/hubs/user`` reached without negotiation
with ``?access_token=JWT`` (401 at the upgrade otherwise), the JSON handshake, 0x1e-terminated
records, pings, invocations answered with completions when they carry an id.

Orders: Market orders fill at once at the contract's last price (or at the first one pushed);
Limit, Stop and StopLimit orders fill at the print that reaches them. Every fill is pushed on
the user hub as ``GatewayUserTrade``, ``GatewayUserOrder`` and ``GatewayUserPosition``
(``{"action", "data"}`` records) and nets into the account's positions. ``customTag`` is
unique per account: a second order with a used tag is refused.

The servers run on 127.0.0.1 (ports the OS picks) in a daemon thread with its own loop; every
public method is safe to call from another thread.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response
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

RS = b"\x1e"
#: contracts served unless others are given: an active and an expired E-mini, an active micro
DEFAULT_CONTRACTS: tuple[dict, ...] = (
    {"id": "CON.F.US.ENQ.Z24", "name": "NQZ4", "description": "E-mini NASDAQ-100: December 2024",
     "tickSize": 0.25, "tickValue": 5.0, "activeContract": False, "symbolId": "F.US.ENQ"},
    {"id": "CON.F.US.ENQ.H25", "name": "NQH5", "description": "E-mini NASDAQ-100: March 2025",
     "tickSize": 0.25, "tickValue": 5.0, "activeContract": True, "symbolId": "F.US.ENQ"},
    {"id": "CON.F.US.MNQ.H25", "name": "MNQH5",
     "description": "Micro E-mini NASDAQ-100: March 2025",
     "tickSize": 0.25, "tickValue": 0.5, "activeContract": True, "symbolId": "F.US.MNQ"},
)  # fmt: skip
#: order types the fake matches: Limit, Market, StopLimit, Stop
SUPPORTED_TYPES = (1, 2, 3, 4)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _ok(**fields: object) -> dict:
    return {**fields, "success": True, "errorCode": 0, "errorMessage": None}


def _fail(code: int, message: str, **fields: object) -> dict:
    return {**fields, "success": False, "errorCode": code, "errorMessage": message}


class FakeProjectX:
    """The fake gateway; use as a context manager.

    Parameters
    ----------
    contracts : sequence of dict, optional
        Contract records (``id, name, description, tickSize, tickValue, activeContract,
        symbolId``). Default :data:`DEFAULT_CONTRACTS`.
    accounts : sequence of dict, optional
        Active accounts. Default one account, ``account_id`` 7001.
    """

    def __init__(self, contracts=DEFAULT_CONTRACTS, accounts=None) -> None:
        self.user_name = "fake-user"
        self.api_key = "fake-api-key-0123"
        self.accounts = [dict(a) for a in accounts] if accounts else [
            {"id": 7001, "name": "50KTC-V2-7001", "balance": 50_000.0, "canTrade": True,
             "isVisible": True, "simulated": True},
        ]  # fmt: skip
        self.account_id = self.accounts[0]["id"]
        self.contracts = [dict(c) for c in contracts]
        #: every REST request received: {"path", "body", "headers"} (headers lower-cased)
        self.requests: list[dict] = []
        #: the Order/* requests among them
        self.orders: list[dict] = []
        #: gateway order records by id
        self.book: dict[int, dict] = {}
        self.trades: list[dict] = []
        #: the account's positions by contract id: gateway records plus a signed ``net``
        self.positions: dict[str, dict] = {}
        self.prices: dict[str, float] = {}
        #: per hub: invocations received ((target, arguments)), handshakes, pings received
        self.invocations: dict[str, list] = {"market": [], "user": []}
        self.handshakes = {"market": 0, "user": 0}
        self.pings_received = {"market": 0, "user": 0}
        self.logins = 0
        self.validations = 0
        self._peers: dict[str, list[_Peer]] = {"market": [], "user": []}
        self._tokens: set[str] = set()
        self._ids = itertools.count(9_100_001)
        self._throttle = 0
        self._reject: str | None = None
        self._stall = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="fake-projectx", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> FakeProjectX:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake ProjectX did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        rest_port = sock.getsockname()[1]
        app = FastAPI()
        app.post("/api/{path:path}")(self._endpoint)
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        ws_server = await ws_create_server(self._route, "127.0.0.1", 0)
        ws_port = ws_server.sockets[0].getsockname()[1]
        self.rest_url = f"http://127.0.0.1:{rest_port}"
        self.ws_url = f"ws://127.0.0.1:{ws_port}/hubs"
        serving = asyncio.ensure_future(self._server.serve(sockets=[sock]))
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.005)
        self._ready.set()
        await serving
        for peer in [p for peers in self._peers.values() for p in peers]:
            peer.transport.disconnect()
        ws_server.close()
        await ws_server.wait_closed()

    def _in_loop(self, fn: Callable, *args: object):
        """Run ``fn(*args)`` on the fake's loop and return its result."""
        assert self._loop is not None

        async def call():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    # -- test controls (thread-safe) -------------------------------------------------------------

    def set_price(self, contract_id: str, price: float) -> None:
        """Set the last price (no events); later market orders fill there."""
        self._in_loop(self.prices.__setitem__, contract_id, price)

    def push_trades(self, contract_id: str, prices, volume: int = 1) -> None:
        """Print a trade at each price: GatewayTrade + GatewayQuote in one frame, then fills."""
        self._in_loop(self._push_trades, contract_id, list(prices), volume)

    def fill(self, order_id: int, size: int, price: float) -> None:
        """Fill ``size`` of an open order at ``price`` (a partial fill when less than open)."""
        self._in_loop(self._fill, self.book[order_id], size, price)

    def expire_token(self, logout: bool = True) -> None:
        """Invalidate every token: REST 401s; with ``logout`` GatewayLogout to user-hub
        clients and every hub connection closed (else the token just ran out)."""
        self._in_loop(self._expire, logout)

    def stall_next(self, seconds: float) -> None:
        """Act on the next Order/place but hold its answer for ``seconds``."""
        self._in_loop(setattr, self, "_stall", seconds)

    def throttle(self, n: int) -> None:
        """Answer the next ``n`` REST requests with HTTP 429."""
        self._in_loop(setattr, self, "_throttle", n)

    def reject_next(self, message: str) -> None:
        """Refuse the next Order/place with ``message`` (``success: false``)."""
        self._in_loop(setattr, self, "_reject", message)

    def drop(self, hub: str) -> None:
        """Close every connection of ``hub`` from the server side."""
        self._in_loop(lambda: [p.transport.disconnect() for p in list(self._peers[hub])])

    def ping(self, hub: str) -> None:
        """Send a SignalR ping to every client of ``hub``."""
        self._in_loop(self._broadcast_raw, hub, b'{"type":6}' + RS, None)

    def send_raw(self, hub: str, payload: bytes, fin: bool = True, continuation: bool = False):
        """Send ``payload`` as is, one WebSocket frame, to every client of ``hub``."""
        kind = WSMsgType.CONTINUATION if continuation else WSMsgType.TEXT
        self._in_loop(
            lambda: [p.transport.send(kind, payload, fin=fin) for p in self._peers[hub] if p.open]
        )

    def clients(self, hub: str) -> int:
        """Return the clients of ``hub`` past the handshake."""
        return self._in_loop(lambda: sum(p.open for p in self._peers[hub]))

    def snapshot(self, fn: Callable):
        """Return ``fn(self)`` computed on the fake's loop (a consistent read)."""
        return self._in_loop(fn, self)

    # -- REST ------------------------------------------------------------------------------------

    async def _endpoint(self, path: str, request: Request) -> Response:
        raw = await request.body()
        body = orjson.loads(raw) if raw else None
        record = {"path": f"/api/{path}", "body": body, "headers": dict(request.headers)}
        self.requests.append(record)
        if path.startswith("Order/"):
            self.orders.append(record)
        if self._throttle > 0:
            self._throttle -= 1
            return Response(status_code=429)
        if path != "Auth/loginKey":
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme != "Bearer" or token not in self._tokens:
                return Response(status_code=401)
        handler = self._handlers.get(path)
        if handler is None:
            return Response(status_code=404)
        answer = orjson.dumps(handler(self, body or {}))
        if path == "Order/place" and self._stall:
            stall, self._stall = self._stall, 0.0
            await asyncio.sleep(stall)
        return Response(answer, media_type="application/json")

    def _token(self) -> str:
        header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
        exp = int(datetime.now(UTC).timestamp()) + 86_400
        claims = _b64(orjson.dumps({"sub": self.user_name, "exp": exp, "jti": next(self._ids)}))
        token = f"{header}.{claims}.{_b64(b'fake-signature')}"
        self._tokens.add(token)
        return token

    def _login(self, body: dict) -> dict:
        if body.get("userName") != self.user_name or body.get("apiKey") != self.api_key:
            return _fail(3, "Invalid user name or API key.", token=None)
        self.logins += 1
        return _ok(token=self._token())

    def _validate(self, body: dict) -> dict:
        self.validations += 1
        return _ok(newToken=self._token())

    def _account_search(self, body: dict) -> dict:
        return _ok(accounts=self.accounts)

    def _contract_search(self, body: dict) -> dict:
        text = str(body.get("searchText", "")).upper()
        found = [
            c
            for c in self.contracts
            if text in c["name"].upper()
            or text in c["id"].upper()
            or text in c["description"].upper()
        ]
        return _ok(contracts=found)

    def _contract_by_id(self, body: dict) -> dict:
        found = next((c for c in self.contracts if c["id"] == body.get("contractId")), None)
        if found is None:
            return _fail(1, "Contract not found.", contract=None)
        return _ok(contract=found)

    def _place(self, body: dict) -> dict:
        if body.get("accountId") != self.account_id:
            return _fail(1, "Account not found.", orderId=None)
        if not any(c["id"] == body.get("contractId") for c in self.contracts):
            return _fail(8, "Contract not found.", orderId=None)
        if self._reject is not None:
            message, self._reject = self._reject, None
            return _fail(2, message, orderId=None)
        kind, side, size = body.get("type"), body.get("side"), body.get("size")
        tag = body.get("customTag")
        problem = None
        if kind not in SUPPORTED_TYPES or side not in (0, 1):
            problem = f"Invalid order type {kind} or side {side}."
        elif not isinstance(size, int) or size <= 0:
            problem = f"Invalid order size {size}."
        elif kind in (1, 3) and body.get("limitPrice") is None:
            problem = "Limit price is required."
        elif kind in (3, 4) and body.get("stopPrice") is None:
            problem = "Stop price is required."
        elif tag and any(o["customTag"] == tag for o in self.book.values()):
            problem = f"An order with custom tag '{tag}' already exists for this account."
        if problem is not None:
            return _fail(2, problem, orderId=None)
        order = self._new_order(body["contractId"], kind, side, size, tag)
        order["limitPrice"] = body.get("limitPrice") if kind in (1, 3) else None
        order["stopPrice"] = body.get("stopPrice") if kind in (3, 4) else None
        self._user("GatewayUserOrder", order)
        self._match(order["contractId"])
        return _ok(orderId=order["id"])

    def _new_order(self, contract_id: str, kind: int, side: int, size: int, tag) -> dict:
        order = {
            "id": next(self._ids), "accountId": self.account_id, "contractId": contract_id,
            "symbolId": next(c["symbolId"] for c in self.contracts if c["id"] == contract_id),
            "creationTimestamp": _now(), "updateTimestamp": _now(), "status": 1, "type": kind,
            "side": side, "size": size, "limitPrice": None, "stopPrice": None, "fillVolume": 0,
            "filledPrice": None, "customTag": tag,
        }  # fmt: skip
        self.book[order["id"]] = order
        return order

    def _open_order(self, body: dict) -> dict | None:
        order = self.book.get(body.get("orderId"))  # type: ignore[arg-type]
        if body.get("accountId") != self.account_id or order is None or order["status"] != 1:
            return None
        return order

    def _cancel(self, body: dict) -> dict:
        order = self._open_order(body)
        if order is None:
            return _fail(2, f"Order {body.get('orderId')} is not open.")
        order.update(status=3, updateTimestamp=_now())
        self._user("GatewayUserOrder", order)
        return _ok()

    def _modify(self, body: dict) -> dict:
        order = self._open_order(body)
        if order is None:
            return _fail(2, f"Order {body.get('orderId')} is not open.")
        for key in ("size", "limitPrice", "stopPrice"):
            if body.get(key) is not None:
                order[key] = body[key]
        order["updateTimestamp"] = _now()
        self._user("GatewayUserOrder", order)
        self._match(order["contractId"])
        return _ok()

    def _search_open(self, body: dict) -> dict:
        if body.get("accountId") != self.account_id:
            return _ok(orders=[])
        return _ok(orders=[o for o in self.book.values() if o["status"] in (1, 6)])

    def _in_window(self, body: dict, stamp: str) -> bool:
        start, end = body.get("startTimestamp"), body.get("endTimestamp")
        moment = datetime.fromisoformat(stamp)
        if start and moment < datetime.fromisoformat(start):
            return False
        return not (end and moment > datetime.fromisoformat(end))

    def _search(self, body: dict) -> dict:
        mine = body.get("accountId") == self.account_id
        orders = [
            o for o in self.book.values() if mine and self._in_window(body, o["creationTimestamp"])
        ]
        return _ok(orders=orders)

    def _trade_search(self, body: dict) -> dict:
        mine = body.get("accountId") == self.account_id
        trades = [t for t in self.trades if mine and self._in_window(body, t["creationTimestamp"])]
        return _ok(trades=trades)

    def _positions(self, body: dict) -> dict:
        if body.get("accountId") != self.account_id:
            return _ok(positions=[])
        public = [{k: v for k, v in p.items() if k != "net"} for p in self.positions.values()]
        return _ok(positions=[p for p in public if p["size"]])

    def _close_contract(self, body: dict) -> dict:
        position = self.positions.get(str(body.get("contractId")))
        if body.get("accountId") != self.account_id or not position or not position["net"]:
            return _fail(2, "No open position for this contract.")
        contract_id = position["contractId"]
        if contract_id not in self.prices:
            return _fail(2, "No market price for this contract.")
        side = 1 if position["net"] > 0 else 0
        order = self._new_order(contract_id, 2, side, abs(position["net"]), None)
        self._user("GatewayUserOrder", order)
        self._fill(order, order["size"], self.prices[contract_id])
        return _ok()

    _handlers: dict[str, Callable[[FakeProjectX, dict], dict]] = {
        "Auth/loginKey": _login,
        "Auth/validate": _validate,
        "Account/search": _account_search,
        "Contract/search": _contract_search,
        "Contract/searchById": _contract_by_id,
        "Order/place": _place,
        "Order/cancel": _cancel,
        "Order/modify": _modify,
        "Order/searchOpen": _search_open,
        "Order/search": _search,
        "Trade/search": _trade_search,
        "Position/searchOpen": _positions,
        "Position/closeContract": _close_contract,
    }

    # -- matching --------------------------------------------------------------------------------

    def _push_trades(self, contract_id: str, prices: list[float], volume: int) -> None:
        symbol = next(c["symbolId"] for c in self.contracts if c["id"] == contract_id)
        for price in prices:
            self.prices[contract_id] = price
            trade = [{"symbolId": symbol, "price": price, "timestamp": _now(), "type": 0,
                      "volume": volume}]  # fmt: skip
            quote = {"symbol": symbol, "symbolName": contract_id, "lastPrice": price,
                     "bestBid": price - 0.25, "bestAsk": price, "volume": volume,
                     "lastUpdated": _now(), "timestamp": _now()}  # fmt: skip
            for peer in self._peers["market"]:
                frame = b""
                if ("SubscribeContractTrades", contract_id) in peer.subscriptions:
                    frame += _invocation("GatewayTrade", [contract_id, trade])
                if ("SubscribeContractQuotes", contract_id) in peer.subscriptions:
                    frame += _invocation("GatewayQuote", [contract_id, quote])
                if frame and peer.open:
                    peer.transport.send(WSMsgType.TEXT, frame)
            self._match(contract_id)

    def _match(self, contract_id: str) -> None:
        price = self.prices.get(contract_id)
        if price is None:
            return
        for order in [o for o in self.book.values() if o["contractId"] == contract_id]:
            if order["status"] != 1:
                continue
            buy, kind = order["side"] == 0, order["type"]
            if kind in (3, 4) and not order.get("triggered"):
                stop = order["stopPrice"]
                order["triggered"] = price >= stop if buy else price <= stop
                if not order["triggered"]:
                    continue
            if kind in (1, 3):
                limit = order["limitPrice"]
                if (buy and price > limit) or (not buy and price < limit):
                    continue
            self._fill(order, order["size"] - order["fillVolume"], price)

    def _fill(self, order: dict, size: int, price: float) -> None:
        done = order["fillVolume"]
        order["filledPrice"] = ((order["filledPrice"] or 0.0) * done + price * size) / (done + size)
        order["fillVolume"] = done + size
        order["updateTimestamp"] = _now()
        if order["fillVolume"] >= order["size"]:
            order["status"] = 2
        signed = size if order["side"] == 0 else -size
        trade = {
            "id": next(self._ids), "accountId": self.account_id, "contractId": order["contractId"],
            "creationTimestamp": _now(), "price": price, "profitAndLoss": None, "fees": 1.4,
            "side": order["side"], "size": size, "voided": False, "orderId": order["id"],
        }  # fmt: skip
        self.trades.append(trade)
        position = self._net(order["contractId"], signed, price)
        self._user("GatewayUserTrade", trade)
        self._user("GatewayUserOrder", {k: v for k, v in order.items() if k != "triggered"})
        self._user("GatewayUserPosition", {k: v for k, v in position.items() if k != "net"})

    def _net(self, contract_id: str, signed: int, price: float) -> dict:
        position = self.positions.setdefault(contract_id, {
            "id": next(self._ids), "accountId": self.account_id, "contractId": contract_id,
            "creationTimestamp": _now(), "type": 0, "size": 0, "averagePrice": 0.0, "net": 0,
        })  # fmt: skip
        net = position["net"]
        if net == 0 or (net > 0) == (signed > 0):
            average = (position["averagePrice"] * abs(net) + price * abs(signed)) / abs(
                net + signed
            )
        elif abs(signed) > abs(net):
            average = price  # flipped: the new side opened at this fill
        else:
            average = position["averagePrice"] if net + signed else 0.0
        net += signed
        position.update(net=net, size=abs(net), averagePrice=average)
        position["type"] = 1 if net > 0 else 2 if net < 0 else 0
        return position

    # -- hubs ------------------------------------------------------------------------------------

    def _route(self, request: WSUpgradeRequest):
        url = urlsplit(request.path.decode())
        hub = url.path.rsplit("/", 1)[-1]
        if url.path not in ("/hubs/market", "/hubs/user"):
            return None
        token = parse_qs(url.query).get("access_token", [""])[0]
        if token not in self._tokens:
            refusal = WSUpgradeResponse.create_error_response(401, b"Unauthorized")
            return WSUpgradeResponseWithListener(refusal, None)
        return _Peer(self, hub)

    def _user(self, target: str, record: dict) -> None:
        wanted = {"GatewayUserOrder": "SubscribeOrders", "GatewayUserTrade": "SubscribeTrades",
                  "GatewayUserPosition": "SubscribePositions"}[target]  # fmt: skip
        payload = _invocation(target, [{"action": 1, "data": dict(record)}])
        self._broadcast_raw("user", payload, (wanted, record["accountId"]))

    def _broadcast_raw(self, hub: str, payload: bytes, subscription: tuple | None) -> None:
        for peer in self._peers[hub]:
            if peer.open and (subscription is None or subscription in peer.subscriptions):
                peer.transport.send(WSMsgType.TEXT, payload)

    def _expire(self, logout: bool) -> None:
        self._tokens.clear()
        if not logout:
            return
        logout = _invocation("GatewayLogout", ["Your session has expired. Please log in again."])
        self._broadcast_raw("user", logout, None)
        for peer in [p for peers in self._peers.values() for p in peers]:
            peer.transport.disconnect()


def _invocation(target: str, arguments: list) -> bytes:
    return orjson.dumps({"type": 1, "target": target, "arguments": arguments}) + RS


#: what each hub's subscription methods take
_SUBSCRIPTIONS = {
    "market": (
        "SubscribeContractQuotes",
        "SubscribeContractTrades",
        "SubscribeContractMarketDepth",
    ),
    "user": ("SubscribeAccounts", "SubscribeOrders", "SubscribePositions", "SubscribeTrades"),
}


class _Peer(WSListener):
    """One hub client, from the fake's side: handshake, records, subscriptions."""

    def __init__(self, fake: FakeProjectX, hub: str) -> None:
        self.fake, self.hub = fake, hub
        self.open = False
        self.subscriptions: set[tuple] = set()
        self.partial = b""
        self.transport: WSTransport

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.fake._peers[self.hub].append(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.fake._peers[self.hub].remove(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        *records, self.partial = (self.partial + frame.get_payload_as_bytes()).split(RS)
        for record in records:
            self._record(orjson.loads(record))

    def _record(self, message: dict) -> None:
        if not self.open:
            if message == {"protocol": "json", "version": 1}:
                self.open = True
                self.fake.handshakes[self.hub] += 1
                self.transport.send(WSMsgType.TEXT, b"{}" + RS)
            else:
                self.transport.send(WSMsgType.TEXT, b'{"error":"Unsupported protocol."}' + RS)
                self.transport.disconnect()
            return
        kind = message.get("type")
        if kind == 6:
            self.fake.pings_received[self.hub] += 1
        elif kind == 7:
            self.transport.disconnect()
        elif kind == 1:
            target, arguments = message.get("target"), message.get("arguments") or []
            self.fake.invocations[self.hub].append((target, arguments))
            error = None
            if target in _SUBSCRIPTIONS[self.hub]:
                self.subscriptions.add((target, arguments[0] if arguments else None))
            else:
                error = f"Failed to invoke '{target}' because it does not exist."
            if message.get("invocationId") is not None:
                done = {"type": 3, "invocationId": message["invocationId"]}
                done.update({"error": error} if error else {"result": None})
                self.transport.send(WSMsgType.TEXT, orjson.dumps(done) + RS)
