"""Fakes of the three brokers that stamp fills and order requests with ``time.monotonic_ns()``.

For the bracket benchmark (``bench/bench_brackets.py``): :class:`TimedKite`,
:class:`TimedUpstox` and :class:`TimedProjectX` subclass the test fakes and stamp each fill as it
fills (before the fake reports it) and each request as the fake's handler records it; the fakes
themselves are not changed. One thing the subclasses add that a real broker has and the fake
lacks: ProjectX's hub keep-alive pings (:meth:`TimedProjectX.keepalive`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from tests.fakes.kite import FakeKite
from tests.fakes.kite_orders import OPEN_STATUSES, KiteOrderBook
from tests.fakes.projectx import FakeProjectX
from tests.fakes.upstox import FakeUpstox
from tests.fakes.upstox_exchange import FINAL

#: the price of the ticks before the first round
START = 100.0
#: environment variables the bench puts the fakes' credentials in
KITE_KEY_ENV, KITE_TOKEN_ENV = "OTRADE_BENCH_KITE_API_KEY", "OTRADE_BENCH_KITE_TOKEN"
UPSTOX_TOKEN_ENV = "OTRADE_BENCH_UPSTOX_TOKEN"
PX_USER_ENV, PX_KEY_ENV = "OTRADE_BENCH_PROJECTX_USER", "OTRADE_BENCH_PROJECTX_KEY"
#: the instruments traded
KITE_INFY = {"tradingsymbol": "INFY", "exchange": "NSE", "instrument_token": 408065}
UPSTOX_INFY = "NSE_EQ|INE009A01021"
PX_MNQ = "CON.F.US.MNQ.H25"
#: broker order types -> the engine's
KINDS = {"MARKET": "market", "LIMIT": "limit", "SL-M": "stop", "SL": "stop_limit"}
PX_KINDS = {1: "limit", 2: "market", 3: "stop_limit", 4: "stop"}


@dataclass(frozen=True, slots=True)
class Sent:
    """One order request as the fake received it."""

    #: ``time.monotonic_ns()`` when the fake's handler recorded it
    ns: int
    #: ``place``, ``modify`` or ``cancel``
    op: str
    #: the engine's order type of a placement (``market``, ``limit``, ``stop``), else None
    kind: str | None
    #: +1 buy, -1 sell (0 when the request does not say)
    side: int
    tag: str | None
    #: the order a modify or cancel is for
    order_id: str | None


class Probe(Protocol):
    """What the bench reads from a timed fake; every attribute is filled on the fake's thread."""

    #: the order requests received, in order
    sent: list[Sent]
    #: ``(monotonic ns, is an order request)`` of every REST request received
    stamps: list[tuple[int, bool]]
    #: client tag -> the fake's order id
    ids: dict[str, str]
    #: order id -> ``time.monotonic_ns()`` when it filled completely
    fills: dict[str, int]
    #: the adapter's client-side limits that the measured requests wait on:
    #: (requests, window s, whether only order requests count)
    limits: tuple[tuple[int, float, bool], ...]

    def move(self, price: float) -> None:
        """Trade at ``price``: set the last price and match the resting orders (blocking)."""
        ...

    def open_orders(self) -> int:
        """Return how many orders are open at the fake (blocking)."""
        ...

    def keepalive(self) -> None:
        """Send what the real server sends on idle streams to keep them open (blocking)."""
        ...


class _Stamped(list):
    """A fake's request list that tells ``note`` of every request as the fake records it."""

    def __init__(self, note: Callable[[int, dict], None]) -> None:
        super().__init__()
        self.note = note

    def append(self, item: dict) -> None:
        self.note(time.monotonic_ns(), item)
        super().append(item)


# -- the timed fakes ------------------------------------------------------------------------------


class _TimedKiteBook(KiteOrderBook):
    def __init__(self, instruments: dict, ticker) -> None:
        super().__init__(instruments, ticker)
        self.ids: dict[str, str] = {}
        self.fills: dict[str, int] = {}

    def place(self, variety: str, form: dict):
        response = super().place(variety, form)
        if response.status_code == 200 and form.get("tag"):
            self.ids[form["tag"]] = str(orjson.loads(response.body)["data"]["order_id"])
        return response

    def _fill(self, order: dict, price: float) -> None:
        now = time.monotonic_ns()
        super()._fill(order, price)  # sends the order message on the ticker
        if order["status"] == "COMPLETE":
            self.fills.setdefault(order["order_id"], now)


class TimedKite(FakeKite):
    """FakeKite trading INFY, stamping fills and order requests."""

    limits = ((10, 1.0, True), (400, 60.0, True))

    def __init__(self) -> None:
        super().__init__([{**KITE_INFY, "last_price": START}])
        self.book = _TimedKiteBook(self.instruments, self.ticker)
        self.ids, self.fills = self.book.ids, self.book.fills
        self.sent: list[Sent] = []
        self.stamps: list[tuple[int, bool]] = []

    def __enter__(self) -> TimedKite:
        super().__enter__()
        return self

    async def record(self, request) -> dict:
        entry = await super().record(request)
        ns = int(entry["ts"] * 1e9)
        op = {"POST": "place", "PUT": "modify", "DELETE": "cancel"}.get(entry["method"])
        is_order = op is not None and entry["path"].startswith("/orders")
        self.stamps.append((ns, is_order))
        if is_order:
            form = entry["form"]
            side = {"BUY": 1, "SELL": -1}.get(form.get("transaction_type", ""), 0)
            order_id = None if op == "place" else entry["path"].rsplit("/", 1)[-1]
            kind = KINDS.get(form.get("order_type", "")) if op == "place" else None
            self.sent.append(Sent(ns, op, kind, side, form.get("tag"), order_id))
        return entry

    def move(self, price: float) -> None:
        """Set INFY's last price and match its orders (no ticker packet)."""
        self.set_ltp("INFY", price)

    def open_orders(self) -> int:
        """Return how many orders are open at the fake."""
        return self._call(
            lambda: sum(o["status"] in OPEN_STATUSES for o in self.book.orders.values())
        )

    def keepalive(self) -> None:
        """Nothing: an idle ticker stays open."""

    def sections(self, tmp: Path) -> tuple[dict, dict[str, str]]:
        """Return the config sections trading through this fake, and the environment."""
        broker = {
            "name": "kite",
            "base_url": self.rest_url,
            "ws_url": self.ws_url,
            "api_key_env": KITE_KEY_ENV,
            "access_token_env": KITE_TOKEN_ENV,
            "token_path": str(tmp / "kite_token"),
        }
        instrument = {"symbol": "INFY", "tick_size": 0.05, "kite": KITE_INFY}
        env = {KITE_KEY_ENV: self.api_key, KITE_TOKEN_ENV: self.access_token}
        return {"broker": broker, "instruments": [instrument]}, env


#: Upstox's order endpoints -> the request's operation
UPSTOX_OPS = {
    "/v2/order/place": "place",
    "/v2/order/modify": "modify",
    "/v2/order/cancel": "cancel",
}


class TimedUpstox(FakeUpstox):
    """FakeUpstox trading INFY, stamping fills and order requests."""

    limits = ((10, 1.0, True), (500, 60.0, True), (2000, 1800.0, True))

    def __init__(self) -> None:
        super().__init__({UPSTOX_INFY: "INFY"})
        self.ids: dict[str, str] = {}
        self.fills: dict[str, int] = {}
        self.sent: list[Sent] = []
        self.stamps: list[tuple[int, bool]] = []
        self.requests = _Stamped(self._note)

    def __enter__(self) -> TimedUpstox:
        super().__enter__()
        return self

    def _note(self, ns: int, entry: dict) -> None:
        op = UPSTOX_OPS.get(entry["path"])
        self.stamps.append((ns, op is not None))
        if op is None:
            return
        body = entry["json"] or {}
        side = {"BUY": 1, "SELL": -1}.get(body.get("transaction_type", ""), 0)
        kind = KINDS.get(body.get("order_type", "")) if op == "place" else None
        order_id = entry["query"].get("order_id") if op == "cancel" else body.get("order_id")
        self.sent.append(Sent(ns, op, kind, side, body.get("tag"), order_id))

    def _create(self, body: dict) -> str:
        order_id = super()._create(body)
        if body.get("tag"):
            self.ids[body["tag"]] = order_id
        return order_id

    def _match(self, key: str) -> None:
        now = time.monotonic_ns()
        waiting = [o for o in self.book.values() if o["status"] not in FINAL]
        super()._match(key)
        for order in waiting:
            if order["status"] == "complete":
                self.fills.setdefault(order["order_id"], now)

    def move(self, price: float) -> None:
        """Set INFY's last price and match its orders (no feed frame)."""
        self.set_ltp(UPSTOX_INFY, price)

    def open_orders(self) -> int:
        """Return how many orders are open at the fake."""
        with self._lock:
            return sum(o["status"] not in FINAL for o in self.book.values())

    def keepalive(self) -> None:
        """Nothing: an idle feed stays open."""

    def sections(self, tmp: Path) -> tuple[dict, dict[str, str]]:
        """Return the config sections trading through this fake, and the environment."""
        broker = {"name": "upstox", "base_url": self.rest_url, "access_token_env": UPSTOX_TOKEN_ENV}
        instrument = {
            "symbol": "INFY",
            "tick_size": 0.05,
            "upstox": {"instrument_key": UPSTOX_INFY},
        }
        env = {UPSTOX_TOKEN_ENV: self.access_token}
        return {"broker": broker, "instruments": [instrument]}, env


#: ProjectX's order endpoints -> the request's operation
PX_OPS = {"/api/Order/place": "place", "/api/Order/modify": "modify", "/api/Order/cancel": "cancel"}


class TimedProjectX(FakeProjectX):
    """FakeProjectX trading MNQ, stamping fills and order requests."""

    limits = ((200, 60.0, False),)

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.fills: dict[str, int] = {}
        self.sent: list[Sent] = []
        self.stamps: list[tuple[int, bool]] = []
        self.requests = _Stamped(self._note)

    def _note(self, ns: int, record: dict) -> None:
        op = PX_OPS.get(record["path"])
        self.stamps.append((ns, op is not None))
        if op is None:
            return
        body = record["body"] or {}
        side = {0: 1, 1: -1}.get(body.get("side"), 0)
        kind = PX_KINDS.get(body.get("type")) if op == "place" else None
        order_id = None if body.get("orderId") is None else str(body["orderId"])
        self.sent.append(Sent(ns, op, kind, side, body.get("customTag"), order_id))

    def _new_order(self, contract_id: str, kind: int, side: int, size: int, tag) -> dict:
        order = super()._new_order(contract_id, kind, side, size, tag)
        if tag:
            self.ids[tag] = str(order["id"])
        return order

    def _fill(self, order: dict, size: int, price: float) -> None:
        now = time.monotonic_ns()
        super()._fill(order, size, price)  # pushes the trade and the order on the user hub
        if order["status"] == 2:
            self.fills.setdefault(str(order["id"]), now)

    def _trade(self, price: float) -> None:
        self.prices[PX_MNQ] = price
        self._match(PX_MNQ)

    def move(self, price: float) -> None:
        """Set MNQ's last price and match its orders (no market-hub event)."""
        self._in_loop(self._trade, price)

    def open_orders(self) -> int:
        """Return how many orders are open at the fake."""
        return self.snapshot(lambda fake: sum(o["status"] == 1 for o in fake.book.values()))

    def keepalive(self) -> None:
        """Ping both hubs, as ProjectX's SignalR server does every 15 s (the fake does not):
        with no market data pushed, the market hub would fall silent and the adapter drop it
        after 30 s, pausing entries while it reconnects."""
        self.ping("market")
        self.ping("user")

    def sections(self, tmp: Path) -> tuple[dict, dict[str, str]]:
        """Return the config sections trading through this fake, and the environment."""
        broker = {
            "name": "projectx",
            "base_url": self.rest_url,
            "ws_url": self.ws_url,
            "user_name_env": PX_USER_ENV,
            "api_key_env": PX_KEY_ENV,
        }
        instrument = {
            "symbol": "MNQ",
            "tick_size": 0.25,
            "point_value": 2.0,
            "projectx": {"contract_search": "MNQ"},
        }
        env = {PX_USER_ENV: self.user_name, PX_KEY_ENV: self.api_key}
        return {"broker": broker, "instruments": [instrument]}, env
