"""The fake Upstox's v2 REST API: a FastAPI app over a :class:`~tests.fakes.upstox.FakeUpstox`.

The shapes follow the official SDK's models (``upstox_client/models``) and BROKERS.md: success
answers are ``{"status": "success", "data": ...}``, errors ``{"status": "error", "errors":
[{...}]}`` with both ``errorCode`` (the SDK's spelling) and ``error_code`` (the docs'), as
Upstox sends them. Every request is recorded, then checked for the token and for failures the
test asked for, before its route runs.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from tests.fakes.upstox_exchange import FINAL, public

if TYPE_CHECKING:
    from tests.fakes.upstox import FakeUpstox

#: Upstox's answer to a missing, invalid or expired token
TOKEN_PROBLEM = ("UDAPI100050", "Invalid token used to access API")
#: Upstox's answer to too many requests
RATE_PROBLEM = ("UDAPI10005", "Too Many Request Sent")
#: the order endpoints, recorded in ``orders`` too
ORDER_PATHS = ("/v2/order/place", "/v2/order/modify", "/v2/order/cancel")
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


def build_app(fake: FakeUpstox) -> FastAPI:
    """Return the REST app of ``fake``; its routes change the fake's state under its lock.

    Parameters
    ----------
    fake : FakeUpstox
        The fake whose book, prices, positions, records and test controls the routes use.

    Returns
    -------
    FastAPI
        The app uvicorn serves.
    """
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
        with fake._lock:
            fake.requests.append(entry)
            if request.url.path in ORDER_PATHS:
                fake.orders.append(entry)
            authorization = request.headers.get("authorization", "")
            if fake._expired or authorization != f"Bearer {fake.access_token}":
                return problem(401, *TOKEN_PROBLEM)
            failures = fake._failures.get(request.url.path)
            if failures:
                failures[0] -= 1
                if failures[0] == 0:
                    del fake._failures[request.url.path]
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
            if key in fake.instruments:
                name = f"{key.split('|')[0]}:{fake.instruments[key]}"
                with fake._lock:
                    data[name] = {"last_price": fake.ltp.get(key, 0.0), "instrument_token": key}
        return success(data)

    @app.post("/v2/order/place")
    async def place(request: Request) -> Response:
        body = orjson.loads(await request.body())
        with fake._lock:
            refused = _throttled(fake) or _missing(body, PLACE_FIELDS)
            if refused is None and body["instrument_token"] not in fake.instruments:
                refused = problem(400, "UDAPI1087", "Invalid Instrument key")
            if refused is None and fake._reject and fake._reject[0] == "place":
                refused = problem(400, "UDAPI100500", fake._reject[1])
                fake._reject = None
            if refused is None:
                reason = fake._refusal(body)
                refused = None if reason is None else problem(400, "UDAPI100500", reason)
            if refused is not None:
                return refused
            order_id = fake._create(body)
            delay, fake._delay = fake._delay, 0.0
        await asyncio.sleep(delay)
        return success({"order_id": order_id})

    @app.put("/v2/order/modify")
    async def modify(request: Request) -> Response:
        body = orjson.loads(await request.body())
        with fake._lock:
            refused = _throttled(fake) or _missing(body, MODIFY_FIELDS)
            order = fake.book.get(body.get("order_id"))
            if refused is None and (order is None or order["status"] in FINAL):
                refused = problem(400, "UDAPI100040", "Order is not open")
            if refused is not None:
                return refused
            if "quantity" in body:
                order["quantity"] = body["quantity"]
                order["pending_quantity"] = body["quantity"] - order["filled_quantity"]
            order["price"] = float(body["price"])
            order["trigger_price"] = float(body["trigger_price"])
            fake._match(order["instrument_token"])
        return success({"order_id": body["order_id"]})

    @app.delete("/v2/order/cancel")
    async def cancel(order_id: str) -> Response:
        with fake._lock:
            refused = _throttled(fake)
            order = fake.book.get(order_id)
            if refused is None and (order is None or order["status"] in FINAL):
                refused = problem(400, "UDAPI100041", "Order is not open to cancel")
            if refused is not None:
                return refused
            order["status"] = "cancelled"
            order["status_message"] = "Cancelled by user"
        return success({"order_id": order_id})

    @app.get("/v2/order/retrieve-all")
    async def order_book() -> Response:
        with fake._lock:
            if fake._stale_books:
                return success(fake._stale_books.pop(0))
            return success([public(order) for order in fake.book.values()])

    @app.get("/v2/order/details")
    async def details(order_id: str) -> Response:
        with fake._lock:
            if order_id not in fake.book:
                return problem(400, "UDAPI100010", "Order not found")
            return success(public(fake.book[order_id]))

    @app.get("/v2/portfolio/short-term-positions")
    async def positions() -> Response:
        with fake._lock:
            return success([dict(position) for position in fake.positions.values()])

    @app.get("/v3/feed/market-data-feed/authorize")
    async def authorize() -> Response:
        with fake._lock:
            url = fake.feed.grant()
            fake.authorizations += 1
        return success({"authorizedRedirectUri": url, "authorized_redirect_uri": url})

    return app


def _throttled(fake: FakeUpstox) -> Response | None:
    if fake._throttle > 0:
        fake._throttle -= 1
        return problem(429, *RATE_PROBLEM)
    return None


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
