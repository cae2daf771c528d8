"""The control surface: REST under ``/api``, the ``/ws`` WebSocket and the page at ``/``.

GET endpoints read; POST and PATCH steer and need ``Authorization: Bearer <token>``, as does
``/ws`` (or ``?token=`` from the browser). Handlers run on the engine's loop between batches,
so they never see a half-processed tick.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import Body, Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.websockets import WebSocketDisconnect

from engine.brokers.live_base import BrokerError
from engine.config import ConfigError
from web import views
from web.auth import WS_FORBIDDEN, WS_UNAUTHORIZED, require_token, websocket_status
from web.hub import Hub

if TYPE_CHECKING:
    from engine.live import Runtime

#: the page and its assets
STATIC_DIR = Path(__file__).parent / "static"
#: operator actions under ``POST /api/control/{action}``
CONTROL_ACTIONS = ("pause", "resume", "flatten", "kill", "reconcile", "adopt")


def _json(content: Any, status_code: int = 200) -> Response:
    # orjson straight to bytes: FastAPI's own encoder costs more than the views themselves
    return Response(orjson.dumps(content), status_code, media_type="application/json")


def create_app(runtime: Runtime, token: str) -> FastAPI:
    """Return the FastAPI app reading and steering ``runtime``.

    Parameters
    ----------
    runtime : Runtime
        The live runtime.
    token : str
        The bearer token every mutating request and ``/ws`` must present.
    """
    app = FastAPI(title="OTrade", version="0.1.0", openapi_url="/api/openapi.json")
    app.state.token = token
    app.state.hub = hub = Hub(lambda: views.snapshot(runtime), runtime.cfg.web.push_hz)
    #: refused requests by HTTP status, so a misbehaving client shows in ``/api/status``
    app.state.refused = refused = {}
    origins = runtime.cfg.web.cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=["Authorization", "Content-Type"],
        )
    guarded = [Depends(require_token)]

    def refuse(status_code: int, detail: Any, headers: dict | None = None) -> Response:
        refused[status_code] = refused.get(status_code, 0) + 1
        return JSONResponse({"detail": detail}, status_code, headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> Response:
        return refuse(error.status_code, error.detail, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"][1:]) or "body"
        return refuse(422, f"{field}: {first['msg']}")

    def status_body() -> dict:
        body = views.status(runtime)
        body["refused_requests"] = {str(code): count for code, count in refused.items()}
        body["dropped_messages"] = hub.dropped()
        return body

    app.state.status_body = status_body

    @app.get("/api/status", summary="Engine health, rates, halts, feed, latency and P&L")
    async def status() -> Response:
        return _json(status_body())

    @app.get("/api/instruments", summary="LTP, EMAs, signal, ATR, RSI and bar per instrument")
    async def instruments() -> Response:
        return _json(views.instruments(runtime.engine.state))

    @app.get("/api/positions", summary="Open positions with their bracket levels")
    async def positions() -> Response:
        return _json(views.positions(runtime))

    @app.get("/api/orders", summary="Open paper orders and the strategy's recent orders")
    async def orders() -> Response:
        return _json(await views.orders(runtime))

    @app.get("/api/trades", summary="Recent closed trades, newest last")
    async def trades() -> Response:
        return _json(views.trades(runtime))

    @app.get("/api/performance", summary="The backtest report's summary, live")
    async def performance() -> Response:
        return _json(views.performance(runtime))

    @app.get("/api/config", summary="The running configuration, secrets masked")
    async def config() -> Response:
        return _json(views.config(runtime))

    @app.post("/api/control/{action}", dependencies=guarded, summary=" | ".join(CONTROL_ACTIONS))
    async def control(action: str, body: Annotated[dict | None, Body()] = None) -> Response:
        if action not in CONTROL_ACTIONS:
            raise HTTPException(404, f"unknown action {action!r}; one of {CONTROL_ACTIONS}")
        symbol = (body or {}).get("symbol")
        if symbol is not None and (action != "flatten" or not isinstance(symbol, str)):
            raise HTTPException(422, "symbol: only flatten takes a symbol (a string)")
        if action in ("reconcile", "adopt") and runtime.router is None:
            raise HTTPException(409, f"{action}: needs a live broker")
        try:
            await runtime.control(action, symbol)
        except KeyError:
            raise HTTPException(404, f"symbol: unknown symbol {symbol!r}") from None
        except BrokerError as error:
            raise HTTPException(502, f"broker: {error.message}") from None
        return await status()

    @app.patch("/api/strategy", dependencies=guarded, summary="Change strategy/bracket params")
    async def strategy(changes: Annotated[dict, Body()]) -> Response:
        try:
            cfg = runtime.patch_strategy(changes)
        except ConfigError as error:
            raise HTTPException(422, error.message) from None
        return _json({"strategy": cfg.strategy.model_dump(), "bracket": cfg.bracket.model_dump()})

    @app.websocket("/ws")
    async def websocket(socket: WebSocket) -> None:
        await socket.accept()
        denied = websocket_status(socket)
        if denied:
            refused[denied] = refused.get(denied, 0) + 1
            await socket.close(WS_UNAUTHORIZED if denied == 401 else WS_FORBIDDEN)
            return
        client = hub.join()
        first = views.snapshot(runtime)
        first["orders"] = await views.orders(runtime)
        first["trades"] = views.trades(runtime)
        client.put(orjson.dumps(first))
        listener = asyncio.create_task(_until_disconnect(socket))
        listener.add_done_callback(lambda _: client.ready.set())
        try:
            while not client.closed and not listener.done():
                for message in await client.take():
                    await socket.send_text(message.decode())
            if client.closed:
                await socket.close(1001)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away mid-send
        finally:
            listener.cancel()
            hub.leave(client)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    return app


class StatusFastPath:
    """Answer ``GET /api/status`` ahead of the framework's middleware; pass the rest on.

    Monitors poll the status many times a second, and FastAPI's middleware stack costs more
    than the view itself; the body is the one the documented route returns.

    Parameters
    ----------
    app : FastAPI
        The app from :func:`create_app` (its ``state.status_body`` builds the body).
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.status_body = app.state.status_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/status" and scope["method"] == "GET":
            body = orjson.dumps(self.status_body())
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


async def _until_disconnect(socket: WebSocket) -> None:
    # the page sends nothing; reading is how a closed socket is noticed between pushes
    try:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError):
        return
