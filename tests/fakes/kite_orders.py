"""The fake Kite's order book: placement checks, matching, fills, history and positions.

Orders match against a last traded price per instrument: MARKET fills at once at the LTP; a
LIMIT marketable on arrival fills at the LTP, a resting one at its price once the LTP reaches
it; SL and SL-M trigger when the LTP reaches the trigger (SL then rests as a limit, SL-M
fills at the LTP). :attr:`KiteOrderBook.fill_size` makes fills partial, one lot of that size
per price. Order updates go out on the ticker for every change after placement (Kite sends
none for the placement itself), a partial fill or a modification with status ``UPDATE`` as
Kite does. Also the REST envelope helpers the fake's handlers share.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi.responses import JSONResponse

from tests.fakes.kite_ticker import KiteTickerServer

#: Kite's timestamps are IST
IST = timezone(timedelta(hours=5, minutes=30))
#: the user every session and order belongs to
USER_ID = "AB1234"
#: statuses in which an order can still fill, be modified or cancelled
OPEN_STATUSES = frozenset({"OPEN", "TRIGGER PENDING"})
#: what Kite records before an order opens, in order
ENTRY_STEPS = ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING")
#: Kite's refusal of a MARKET or SL-M order sent without ``market_protection``
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


def now() -> str:
    """Return the current time as Kite writes it: IST, ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.now(IST).strftime("%Y-%m-%d %H:%M:%S")


def ok(data: Any) -> JSONResponse:
    """Return Kite's success envelope around ``data``."""
    return JSONResponse({"status": "success", "data": data})


def error(status: int, error_type: str, message: str) -> JSONResponse:
    """Return Kite's error envelope with HTTP ``status``."""
    body = {"status": "error", "message": message, "data": None, "error_type": error_type}
    return JSONResponse(body, status_code=status)


class KiteOrderBook:
    """Orders, trades and positions of the fake's one user; runs on the fake's loop.

    Parameters
    ----------
    instruments : dict
        ``tradingsymbol`` -> instrument dict (``exchange``, ``instrument_token``, optionally
        ``last_price``, default 100.0).
    ticker : KiteTickerServer
        Carries the ``{"type": "order"}`` messages.
    """

    def __init__(self, instruments: dict[str, dict], ticker: KiteTickerServer) -> None:
        self.instruments = instruments
        self.ticker = ticker
        #: order id -> the order as ``GET /orders`` shows it
        self.orders: dict[str, dict] = {}
        #: every ``{"type": "order"}`` message sent on the ticker
        self.messages: list[dict] = []
        #: last traded price by tradingsymbol
        self.ltp = {ts: float(i.get("last_price", 100.0)) for ts, i in instruments.items()}
        #: tradingsymbol -> most units filled per order per price (0: whole orders)
        self.fill_size: dict[str, int] = {}
        #: messages with which the next placements are refused (400 ``InputException``)
        self.rejects: list[str] = []
        #: order type -> messages with which the next placements of that type are refused
        self.typed_rejects: dict[str, list[str]] = {}
        #: refuse SL and SL-M orders whose trigger the LTP has already reached, as Kite does
        self.refuse_crossed_stops = False
        #: called with each order message after the change and before the ticker sends it
        self.before_message: Callable[[dict], None] | None = None
        self._history: dict[str, list[dict]] = {}
        self._trades: list[dict] = []
        self._books: dict[tuple, dict[str, list]] = {}
        self._ids = itertools.count(250_101_000_000_001)

    # -- REST handlers ---------------------------------------------------------------------------

    def place(self, variety: str, form: dict) -> JSONResponse:
        """``POST /orders/{variety}``."""
        if self.rejects:
            return error(400, "InputException", self.rejects.pop(0))
        if variety != "regular":
            return error(400, "InputException", "Invalid `variety`.")
        problem = _check_order(form, self.instruments)
        if problem:
            return error(400, "InputException", problem)
        typed = self.typed_rejects.get(form["order_type"])
        if typed:
            return error(400, "InputException", typed.pop(0))
        if self.refuse_crossed_stops and self._crossed(form):
            side = form["transaction_type"].lower()
            relation = "higher" if side == "buy" else "lower"
            message = f"Trigger price for stoploss {side} orders should be {relation} than LTP."
            return error(400, "InputException", message)
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
            "order_timestamp": now(),
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
        self.orders[order_id] = order
        self._history[order_id] = []
        for step in ENTRY_STEPS:
            self._record_step(order, status=step)
        order["exchange_order_id"] = str(int(order_id) + 1_000_000_000_000_000)
        order["exchange_timestamp"] = now()
        waiting = "TRIGGER PENDING" if order["order_type"] in ("SL", "SL-M") else "OPEN"
        self._record_step(order, status=waiting)
        self._match(order, arriving=True)
        return ok({"order_id": order_id})

    def modify(self, order_id: str, form: dict) -> JSONResponse:
        """``PUT /orders/{variety}/{order_id}``."""
        order = self.orders.get(order_id)
        if order is None:
            return error(400, "InputException", "Invalid `order_id`.")
        if order["status"] not in OPEN_STATUSES:
            message = f"Order cannot be modified as it is {order['status'].lower()}."
            return error(400, "InputException", message)
        kept = (*REQUIRED, "price", "trigger_price")
        merged = {k: str(v) for k, v in order.items() if k in kept and v is not None}
        merged |= {k: v for k, v in form.items() if v != ""}
        problem = _check_order({**merged, "market_protection": "-1"}, self.instruments)
        if problem:
            return error(400, "InputException", problem)
        quantity = int(merged["quantity"])
        if quantity <= order["filled_quantity"]:
            return error(400, "InputException", "Quantity must exceed the filled quantity.")
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
        return ok({"order_id": order_id})

    def cancel(self, order_id: str) -> JSONResponse:
        """``DELETE /orders/{variety}/{order_id}``."""
        order = self.orders.get(order_id)
        if order is None:
            return error(400, "InputException", "Invalid `order_id`.")
        if order["status"] not in OPEN_STATUSES:
            message = f"Order cannot be cancelled as it is {order['status'].lower()}."
            return error(400, "InputException", message)
        pending = order["pending_quantity"]
        self._change(
            order, None, status="CANCELLED", pending_quantity=0, cancelled_quantity=pending
        )
        return ok({"order_id": order_id})

    def order_list(self) -> list[dict]:
        """``GET /orders``."""
        return [dict(order) for order in self.orders.values()]

    def history(self, order_id: str) -> JSONResponse:
        """``GET /orders/{order_id}``."""
        if order_id not in self._history:
            return error(400, "InputException", "Invalid `order_id`.")
        return ok([dict(step) for step in self._history[order_id]])

    def trades(self, order_id: str | None = None) -> list[dict]:
        """``GET /trades``, or ``GET /orders/{order_id}/trades``."""
        return [dict(t) for t in self._trades if order_id in (None, t["order_id"])]

    def positions(self) -> dict:
        """``GET /portfolio/positions``."""
        net = []
        for (exchange, symbol, product), book in self._books.items():
            (buy_qty, buy_value), (sell_qty, sell_value) = book["buy"], book["sell"]
            quantity = int(buy_qty - sell_qty)
            pnl = (sell_value - buy_value) + quantity * self.ltp[symbol]
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
                "last_price": self.ltp[symbol],
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

    def fill_units(self, order_id: str, units: int, price: float | None = None) -> None:
        """Fill ``units`` more of an open order at ``price`` (default its price, else the LTP)."""
        order = self.orders[order_id]
        if order["status"] not in OPEN_STATUSES:
            raise ValueError(f"order {order_id} is {order['status']}, not open")
        symbol = order["tradingsymbol"]
        if price is None:
            price = order["price"] or self.ltp[symbol]
        saved = self.fill_size.get(symbol)
        self.fill_size[symbol] = min(units, order["pending_quantity"])
        try:
            self._fill(order, price)
        finally:
            if saved is None:
                del self.fill_size[symbol]
            else:
                self.fill_size[symbol] = saved

    def resend(self, back: int = 1) -> None:
        """Send the ``back``-th last ``{"type": "order"}`` message again (1: the last one)."""
        if len(self.messages) >= back:
            message = self.messages[-back]
            self.messages.append(message)
            self.ticker.send_text(message)

    # -- matching --------------------------------------------------------------------------------

    def _crossed(self, form: dict) -> bool:
        if form["order_type"] not in ("SL", "SL-M"):
            return False
        trigger, ltp = float(form.get("trigger_price") or 0), self.ltp[form["tradingsymbol"]]
        return trigger <= ltp if form["transaction_type"] == "BUY" else trigger >= ltp

    def set_ltp(self, symbol: str, price: float) -> None:
        """Set an instrument's last price and match its open orders against it."""
        self.ltp[symbol] = price
        for order in list(self.orders.values()):
            if order["tradingsymbol"] == symbol and order["status"] in OPEN_STATUSES:
                self._match(order, arriving=False)

    def _match(self, order: dict, arriving: bool) -> None:
        ltp = self.ltp[order["tradingsymbol"]]
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
        units = min(pending, self.fill_size.get(order["tradingsymbol"]) or pending)
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
        self._record_step(order, exchange_update_timestamp=now(), **changes)
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
        if self.before_message is not None:
            self.before_message(message)
        self.messages.append(message)
        self.ticker.send_text(message)


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
