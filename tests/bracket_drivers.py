"""The drivers of the brokers' fakes, for the stateful bracket test.

One driver per broker fake (:class:`KiteDriver`, :class:`UpstoxDriver`,
:class:`ProjectXDriver`) has the same small interface: the config trading its one instrument,
the broker's truth (:class:`~tests.brackets_harness.Truth`: position, average price, realized
P&L from its own fills, its open orders), moving the price there, partial fills, and the faults
(rejections, token expiry and renewal, 429s, 5xx, stream drops, repeated and stale order
updates). :data:`DRIVERS` names them by broker.
"""

from __future__ import annotations

import secrets
from collections import deque
from pathlib import Path

import pytest

from engine.config import EngineConfig
from tests.brackets_harness import BRACKET, RISK, STRATEGY, Resting, Truth, ledger
from tests.conftest import make_config
from tests.fakes.kite import FakeKite
from tests.fakes.projectx import FakeProjectX
from tests.fakes.upstox import FakeUpstox


class BrokerDriver:
    """One broker's fake behind the interface the state machine uses; a context manager.

    Parameters
    ----------
    workdir : Path
        Holds the journal (and the token file where the broker has one).
    monkeypatch : pytest.MonkeyPatch
        Sets the credentials' environment variables (a renewed token goes there too).
    """

    name = ""
    symbol = ""
    tick_size = 0.05
    point_value = 1.0
    start_price = 100.0
    #: True when the test must put a renewed token in place; False when the adapter logs in
    #: again by itself (ProjectX)
    manual_renewal = True
    #: the message a rejected order carries
    REJECTION = "RMS: order rejected by the broker's risk checks"

    def __init__(self, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.workdir = workdir
        self.env = monkeypatch
        self.journal_path = workdir / "journal.jsonl"

    def __enter__(self) -> BrokerDriver:
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:
        self.fake.__exit__(*exc)

    def config(self) -> EngineConfig:
        """Return the engine's config: one instrument at this broker, its feed, the journal."""
        return make_config(
            instruments=[self.instrument()],
            strategy=STRATEGY,
            bracket=BRACKET,
            risk=RISK,
            broker=self.broker(),
            feed={"name": "broker", "stale_after_s": 3600.0},
            journal={"path": str(self.journal_path)},
            web={"enabled": False},
        )

    def price(self, ticks: int) -> float:
        """Return the price ``ticks`` ticks above zero, on the grid."""
        return round(ticks * self.tick_size, 8)

    def ticks(self, price: float) -> int:
        """Return ``price`` in ticks."""
        return round(price / self.tick_size)

    # to implement ---------------------------------------------------------------------------------

    def instrument(self) -> dict:
        """Return the config's instrument entry."""
        raise NotImplementedError

    def broker(self) -> dict:
        """Return the config's ``broker`` section."""
        raise NotImplementedError

    def truth(self) -> Truth:
        """Return what the broker holds now, read consistently on the fake's side."""
        raise NotImplementedError

    def set_price(self, price: float) -> None:
        """Make ``price`` the last traded price at the broker and match its orders to it."""
        raise NotImplementedError

    def fill_part(self, order: Resting, units: int) -> None:
        """Fill ``units`` of an open order at its own price (a partial fill when fewer)."""
        raise NotImplementedError

    def reject_next(self, role: str) -> None:
        """Reject the next placement: of any order (``any``), of a stop or of a target."""
        raise NotImplementedError

    def expire_token(self, announced: bool) -> None:
        """Expire the session's token at the broker; ``announced``: the broker also closes its
        streams (ProjectX's ``GatewayLogout``), else the token just stops working."""
        raise NotImplementedError

    def renew_token(self) -> None:
        """Put a new token in place, as the operator would (no-op where the adapter renews)."""
        raise NotImplementedError

    def throttle(self, n: int) -> None:
        """Answer the next ``n`` order requests with HTTP 429."""
        raise NotImplementedError

    def server_error(self, what: str, acted: bool) -> None:
        """Answer the next ``place`` or ``cancel`` with a 5xx, carried out first when ``acted``
        (where the fake can)."""
        raise NotImplementedError

    def drop_stream(self) -> None:
        """Close the broker's streams from its side (ticker, user hub, market-data feed)."""
        raise NotImplementedError

    def replay_update(self, back: int) -> None:
        """Deliver an order update again: the last (``back`` 1) or an older one."""
        raise NotImplementedError

    def before_step(self) -> None:
        """Called once the system has settled, before the machine's next step."""


#: INFY in Kite's instrument terms
KITE_INFY = {"tradingsymbol": "INFY", "exchange": "NSE", "instrument_token": 408065}
#: Kite order types by the uniform kinds
KITE_KINDS = {"MARKET": "market", "LIMIT": "limit", "SL-M": "stop", "SL": "stop_limit"}


class KiteDriver(BrokerDriver):
    """:class:`~tests.fakes.kite.FakeKite` trading INFY (NSE equity, tick 0.05)."""

    name = "kite"
    symbol = "INFY"
    TOKEN_ENV = "OTRADE_TEST_KITE_TOKEN"

    def __enter__(self) -> KiteDriver:
        self.fake = FakeKite([{**KITE_INFY, "last_price": self.start_price}])
        self.fake.__enter__()
        self.fake.refuse_crossed_stops()
        self.env.setenv("KITE_API_KEY", self.fake.api_key)
        self.env.setenv("KITE_API_SECRET", self.fake.api_secret)
        self.env.setenv(self.TOKEN_ENV, self.fake.access_token)
        return self

    def instrument(self) -> dict:
        return {"symbol": self.symbol, "tick_size": self.tick_size, "kite": KITE_INFY}

    def broker(self) -> dict:
        return {
            "name": "kite",
            "base_url": self.fake.rest_url,
            "ws_url": self.fake.ws_url,
            "access_token_env": self.TOKEN_ENV,
            "token_path": str(self.workdir / "kite_token"),
        }

    def truth(self) -> Truth:
        book = self.fake.book

        def read() -> tuple[list[dict], list[dict]]:
            open_orders = [
                dict(o) for o in book.orders.values() if o["status"] in ("OPEN", "TRIGGER PENDING")
            ]
            return open_orders, [dict(t) for t in book.trades()]

        orders, trades = self.fake._call(read)
        fills = [
            (
                t["quantity"] if t["transaction_type"] == "BUY" else -t["quantity"],
                t["average_price"],
            )
            for t in trades
        ]
        net, avg, realized = ledger(fills, self.point_value)
        resting = tuple(
            Resting(
                order_id=str(o["order_id"]),
                tag=o.get("tag") or "",
                side=1 if o["transaction_type"] == "BUY" else -1,
                kind=KITE_KINDS[o["order_type"]],
                open_qty=int(o["pending_quantity"]),
                price=o["trigger_price"] if o["order_type"] in ("SL", "SL-M") else o["price"],
            )
            for o in orders
        )
        return Truth(net, avg, realized, resting)

    def set_price(self, price: float) -> None:
        self.fake.set_ltp(self.symbol, price)

    def fill_part(self, order: Resting, units: int) -> None:
        self.fake.fill(order.order_id, units, order.price)

    def reject_next(self, role: str) -> None:
        if role == "any":
            self.fake.reject_next(self.REJECTION)
        else:
            self.fake.reject_next_of("SL-M" if role == "stop" else "LIMIT", self.REJECTION)

    def expire_token(self, announced: bool) -> None:
        self.fake.expire_token()
        if announced:  # the ticker's reconnect is then refused (403)
            self.drop_stream()

    def renew_token(self) -> None:
        token = secrets.token_hex(16)
        self.fake.set_token(token)
        self.env.setenv(self.TOKEN_ENV, token)

    def throttle(self, n: int) -> None:
        self.fake.throttle(n)

    def server_error(self, what: str, acted: bool) -> None:
        self.fake.fail_next("POST" if what == "place" else "DELETE", 503, acted)

    def drop_stream(self) -> None:
        self.fake._call(self.fake.ticker.disconnect_all)

    def replay_update(self, back: int) -> None:
        self.fake.resend_order_message(back)


#: INFY's Upstox instrument key
UPSTOX_INFY = "NSE_EQ|INE009A01021"
#: Upstox order types by the uniform kinds
UPSTOX_KINDS = {"MARKET": "market", "LIMIT": "limit", "SL-M": "stop", "SL": "stop_limit"}


class UpstoxDriver(BrokerDriver):
    """:class:`~tests.fakes.upstox.FakeUpstox` trading INFY (tick 0.05); orders are polled."""

    name = "upstox"
    symbol = "INFY"
    TOKEN_ENV = "OTRADE_TEST_UPSTOX_TOKEN"
    #: order-book snapshots kept for stale answers
    SNAPSHOTS = 4

    def __enter__(self) -> UpstoxDriver:
        self.fake = FakeUpstox({UPSTOX_INFY: self.symbol})
        self.fake.__enter__()
        self.fake.refuse_crossed_stops()
        self.fake.set_ltp(UPSTOX_INFY, self.start_price)
        self.env.setenv(self.TOKEN_ENV, self.fake.access_token)
        self.snapshots: deque[list[dict]] = deque(maxlen=self.SNAPSHOTS)
        return self

    def instrument(self) -> dict:
        return {
            "symbol": self.symbol,
            "tick_size": self.tick_size,
            "upstox": {"instrument_key": UPSTOX_INFY},
        }

    def broker(self) -> dict:
        return {
            "name": "upstox",
            "base_url": self.fake.rest_url,
            "access_token_env": self.TOKEN_ENV,
        }

    def truth(self) -> Truth:
        fake = self.fake
        with fake._lock:
            orders = [
                dict(o)
                for o in fake.book.values()
                if o["instrument_token"] == UPSTOX_INFY
                and o["status"] in ("open", "trigger pending")
            ]
            rows = [dict(p) for (key, _), p in fake.positions.items() if key == UPSTOX_INFY]
        net = sum(int(p["quantity"]) for p in rows)
        cash = sum(p["day_sell_value"] - p["day_buy_value"] for p in rows)
        held = sum(int(p["quantity"]) * p["average_price"] for p in rows)
        avg = held / net if net else 0.0
        resting = tuple(
            Resting(
                order_id=str(o["order_id"]),
                tag=o.get("tag") or "",
                side=1 if o["transaction_type"] == "BUY" else -1,
                kind=UPSTOX_KINDS[o["order_type"]],
                open_qty=int(o["pending_quantity"]),
                price=o["trigger_price"] if o["order_type"] in ("SL", "SL-M") else o["price"],
            )
            for o in orders
        )
        return Truth(net, avg, (cash + held) * self.point_value, resting)

    def set_price(self, price: float) -> None:
        self.fake.set_ltp(UPSTOX_INFY, price)

    def fill_part(self, order: Resting, units: int) -> None:
        self.fake.fill(order.order_id, units, order.price)

    def reject_next(self, role: str) -> None:
        if role == "any":
            self.fake.reject_next(self.REJECTION)
        else:
            self.fake.reject_next_of("SL-M" if role == "stop" else "LIMIT", self.REJECTION)

    def expire_token(self, announced: bool) -> None:
        self.fake.expire_token()
        if announced:  # the feed's reconnect is then refused (401 at authorize)
            self.drop_stream()

    def renew_token(self) -> None:
        token = secrets.token_hex(16)
        self.fake.set_token(token)
        self.env.setenv(self.TOKEN_ENV, token)

    def throttle(self, n: int) -> None:
        self.fake.throttle(n)

    def server_error(self, what: str, acted: bool) -> None:
        # the fake's failures are answered before anything is done
        path = "/v2/order/place" if what == "place" else "/v2/order/cancel"
        self.fake.fail(path, 1, 503 if what == "place" else 500)

    def drop_stream(self) -> None:
        self.fake.drop_feed()

    def replay_update(self, back: int) -> None:
        if len(self.snapshots) >= back:
            self.fake.serve_book_next(self.snapshots[-back])

    def before_step(self) -> None:
        self.snapshots.append(self.fake.book_snapshot())


#: the MNQ contract the ProjectX fake lists
PROJECTX_MNQ = "CON.F.US.MNQ.H25"
#: ProjectX order types by the uniform kinds
PROJECTX_KINDS = {1: "limit", 2: "market", 3: "stop_limit", 4: "stop"}


class ProjectXDriver(BrokerDriver):
    """:class:`~tests.fakes.projectx.FakeProjectX` trading MNQ (tick 0.25, 2.0 per point)."""

    name = "projectx"
    symbol = "MNQ"
    tick_size = 0.25
    point_value = 2.0
    start_price = 20_000.0
    manual_renewal = False

    def __enter__(self) -> ProjectXDriver:
        self.fake = FakeProjectX()
        self.fake.__enter__()
        self.fake.refuse_crossed_stops()
        self.fake.set_price(PROJECTX_MNQ, self.start_price)
        self.env.setenv("PROJECTX_USERNAME", self.fake.user_name)
        self.env.setenv("PROJECTX_API_KEY", self.fake.api_key)
        return self

    def instrument(self) -> dict:
        return {
            "symbol": self.symbol,
            "tick_size": self.tick_size,
            "point_value": self.point_value,
            "projectx": {"contract_search": "MNQ"},
        }

    def broker(self) -> dict:
        return {"name": "projectx", "base_url": self.fake.rest_url, "ws_url": self.fake.ws_url}

    def truth(self) -> Truth:
        def read(fake: FakeProjectX) -> tuple[list[dict], list[dict]]:
            orders = [
                dict(o)
                for o in fake.book.values()
                if o["contractId"] == PROJECTX_MNQ and o["status"] in (1, 6)
            ]
            trades = [dict(t) for t in fake.trades if t["contractId"] == PROJECTX_MNQ]
            return orders, trades

        orders, trades = self.fake.snapshot(read)
        fills = [(t["size"] if t["side"] == 0 else -t["size"], t["price"]) for t in trades]
        net, avg, realized = ledger(fills, self.point_value)
        resting = tuple(
            Resting(
                order_id=str(o["id"]),
                tag=o.get("customTag") or "",
                side=1 if o["side"] == 0 else -1,
                kind=PROJECTX_KINDS[o["type"]],
                open_qty=int(o["size"] - o["fillVolume"]),
                price=o["stopPrice"] if o["type"] in (3, 4) else o["limitPrice"],
            )
            for o in orders
        )
        return Truth(net, avg, realized, resting)

    def set_price(self, price: float) -> None:
        self.fake.push_trades(PROJECTX_MNQ, [price])

    def fill_part(self, order: Resting, units: int) -> None:
        price = order.price
        if price is None:
            price = self.fake.snapshot(lambda fake: fake.prices[PROJECTX_MNQ])
        self.fake.fill(int(order.order_id), units, price)

    def reject_next(self, role: str) -> None:
        if role == "any":
            self.fake.reject_next(self.REJECTION)
        else:
            self.fake.reject_next_of(4 if role == "stop" else 1, self.REJECTION)

    def expire_token(self, announced: bool) -> None:
        self.fake.expire_token(logout=announced)

    def renew_token(self) -> None:
        pass  # the adapter logs in again by itself

    def throttle(self, n: int) -> None:
        self.fake.throttle(n)

    def server_error(self, what: str, acted: bool) -> None:
        self.fake.fail_next("Order/place" if what == "place" else "Order/cancel", 500, acted)

    def drop_stream(self) -> None:
        self.fake.drop("user")

    def replay_update(self, back: int) -> None:
        self.fake.resend_user_event(back)


#: the drivers by broker name
DRIVERS: dict[str, type[BrokerDriver]] = {
    "kite": KiteDriver,
    "upstox": UpstoxDriver,
    "projectx": ProjectXDriver,
}
