"""A fake ProjectX gateway: FastAPI REST under ``/api`` and SignalR JSON hubs over picows.

It reproduces the documented shapes (``../shared/BROKERS.md``, project-x-py's source): every
call a JSON ``POST`` answering ``{..., success, errorCode, errorMessage}``, Bearer JWTs from
``Auth/loginKey`` (renewed by ``Auth/validate`` -> ``newToken``), HTTP 401 for a bad token and
429 when throttled; hubs at ``/hubs/market`` and ``/hubs/user`` reached without negotiation
with ``?access_token=JWT`` (401 at the upgrade otherwise), the JSON handshake, 0x1e-terminated
records, pings, invocations answered with completions when they carry an id. The gateway's
state, its answers and its order matching are in :mod:`tests.fakes.projectx_gateway`, the
hubs in :mod:`tests.fakes.projectx_hubs`.

The servers run on 127.0.0.1 (ports the OS picks) in a daemon thread with its own loop; every
public method is safe to call from another thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response
from picows import WSMsgType, ws_create_server

from tests.fakes.projectx_gateway import DEFAULT_CONTRACTS, FakeGateway
from tests.fakes.projectx_hubs import RS

__all__ = ["DEFAULT_CONTRACTS", "FakeProjectX"]


class FakeProjectX(FakeGateway):
    """The fake gateway served; use as a context manager.

    Parameters
    ----------
    contracts : sequence of dict, optional
        Contract records (``id, name, description, tickSize, tickValue, activeContract,
        symbolId``). Default :data:`DEFAULT_CONTRACTS`.
    accounts : sequence of dict, optional
        Active accounts. Default one account, ``account_id`` 7001.
    """

    def __init__(self, contracts=DEFAULT_CONTRACTS, accounts=None) -> None:
        super().__init__(contracts, accounts)
        self._throttle = 0
        self._stall = 0.0
        self._failures: dict[str, list[tuple[int, bool]]] = {}
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
        ws_server = await ws_create_server(self.hubs.route, "127.0.0.1", 0)
        ws_port = ws_server.sockets[0].getsockname()[1]
        self.rest_url = f"http://127.0.0.1:{rest_port}"
        self.ws_url = f"ws://127.0.0.1:{ws_port}/hubs"
        serving = asyncio.ensure_future(self._server.serve(sockets=[sock]))
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.005)
        self._ready.set()
        await serving
        self.hubs.disconnect_all()
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

    def reject_next_of(self, order_type: int, message: str) -> None:
        """Refuse the next Order/place of ``order_type`` (1 Limit, 2 Market, 3 StopLimit,
        4 Stop) with ``message``; other placements go through."""
        self._in_loop(lambda: self._typed_rejects.setdefault(order_type, []).append(message))

    def refuse_crossed_stops(self, on: bool = True) -> None:
        """Refuse Stop and StopLimit orders whose stop the last price has already reached,
        instead of triggering them at the next print."""
        self._in_loop(setattr, self, "_refuse_crossed", on)

    def fail_next(self, path: str, status: int = 500, act: bool = False) -> None:
        """Answer the next request of ``path`` (``Order/place``, ``Order/cancel``, ...) with
        HTTP ``status``; with ``act`` it is carried out first (the answer is lost)."""
        self._in_loop(lambda: self._failures.setdefault(path, []).append((status, act)))

    def resend_user_event(self, back: int = 1) -> None:
        """Push the ``back``-th last user-hub event again: 1 repeats the last one, more sends
        an older state after newer ones (a duplicated, out-of-order update)."""
        self._in_loop(self.hubs.resend_user, back)

    def drop(self, hub: str) -> None:
        """Close every connection of ``hub`` from the server side."""
        self._in_loop(self.hubs.drop, hub)

    def ping(self, hub: str) -> None:
        """Send a SignalR ping to every client of ``hub``."""
        self._in_loop(self.hubs.broadcast, hub, b'{"type":6}' + RS, None)

    def send_raw(self, hub: str, payload: bytes, fin: bool = True, continuation: bool = False):
        """Send ``payload`` as is, one WebSocket frame, to every client of ``hub``."""
        kind = WSMsgType.CONTINUATION if continuation else WSMsgType.TEXT
        self._in_loop(self.hubs.send, hub, kind, payload, fin)

    def clients(self, hub: str) -> int:
        """Return the clients of ``hub`` past the handshake."""
        return self._in_loop(self.hubs.clients, hub)

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
        if self._failures.get(path):
            status, act = self._failures[path].pop(0)
            if act:
                handler(self, body or {})
            return Response(orjson.dumps({"title": "Internal Server Error"}), status_code=status)
        answer = orjson.dumps(handler(self, body or {}))
        if path == "Order/place" and self._stall:
            stall, self._stall = self._stall, 0.0
            await asyncio.sleep(stall)
        return Response(answer, media_type="application/json")
