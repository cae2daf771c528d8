"""Kite Connect v3 REST shapes: the error envelope, order forms and order records.

Kite answers ``{"status": "success", "data": ...}`` or ``{"status": "error", "message": ...,
"error_type": ...}``; :func:`kite_error` turns the second into the adapter's exceptions. Orders
go out as form fields (:func:`place_form`, :func:`modify_form`) and come back, from ``GET
/orders``, order history and the ticker's order messages, as one dict shape that
:func:`order_state` reads. :class:`OrderTracker` turns a stream of such snapshots, which arrive
twice (ticker and poll) and sometimes out of order, into one gap-free sequence of updates.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import orjson

from engine.broker_config import KiteIds
from engine.brokers.base import (
    LIMIT_TYPES,
    STOP_TYPES,
    OrderError,
    OrderRequest,
    OrderState,
    check_price,
    check_qty,
    price_to_ticks,
)
from engine.brokers.live_base import BrokerError, TokenExpired
from engine.brokers.stream import UpdateStream
from engine.config_errors import ConfigError
from engine.config_models import InstrumentConfig

#: Kite's timestamps are Indian Standard Time, which has no daylight saving
IST = timezone(timedelta(hours=5, minutes=30))
#: engine order type -> Kite ``order_type`` (``stop`` is stop-market)
KITE_ORDER_TYPES: dict[str, str] = {
    "market": "MARKET",
    "limit": "LIMIT",
    "stop": "SL-M",
    "stop_limit": "SL",
}
#: Kite ``order_type`` -> engine order type
ENGINE_ORDER_TYPES: dict[str, str] = {kite: ours for ours, kite in KITE_ORDER_TYPES.items()}
#: order types the exchanges refuse from an API without market protection (SEBI algo rules)
PROTECTED_TYPES: frozenset[str] = frozenset({"MARKET", "SL-M"})
#: ``market_protection`` value asking Kite to pick the protection band itself
AUTO_PROTECTION = "-1"
#: the only validity the adapter uses: the order lives for the trading day
VALIDITY = "DAY"
#: Kite statuses that end an order, by engine status (``CANCELLED AMO`` starts like the first)
FINAL_STATUSES: dict[str, str] = {"COMPLETE": "filled", "REJECTED": "rejected"}
#: statuses that show a stop order's trigger was reached
TRIGGERED: frozenset[str] = frozenset({"OPEN", "COMPLETE"})
#: final statuses whose ``status_message`` says why
FINAL_REASONED: frozenset[str] = frozenset({"cancelled", "rejected"})
#: error types with which Kite refuses a well-formed order (returned as ``rejected``)
REFUSALS: frozenset[str] = frozenset({"InputException", "MarginException", "OrderException"})


def kite_error(response: httpx.Response) -> BrokerError | None:
    """Return the exception for an error response, None for a success.

    Parameters
    ----------
    response : httpx.Response
        Any Kite response.

    Returns
    -------
    BrokerError or None
        :class:`TokenExpired` for ``TokenException``, else :class:`BrokerError` carrying the
        message, the HTTP status and the ``error_type``.
    """
    if response.status_code < 400:
        return None
    try:
        body = orjson.loads(response.content)
        message = str(body.get("message") or f"HTTP {response.status_code}")
        error_type = str(body.get("error_type") or "")
    except (orjson.JSONDecodeError, AttributeError):
        # a proxy's HTML page or an empty body: keep a short, single-line excerpt
        text = " ".join(response.text.split())[:200]
        message, error_type = f"HTTP {response.status_code}: {text}", ""
    kind = TokenExpired if error_type == "TokenException" else BrokerError
    return kind(message, response.status_code, error_type)


def payload(response: httpx.Response) -> Any:
    """Return the ``data`` member of a successful Kite response."""
    return orjson.loads(response.content)["data"]


def price_text(field: str, price: float, tick_size: float | None) -> str:
    """Return ``price`` as Kite expects it, on the tick grid and free of float noise.

    Raises
    ------
    OrderError
        Naming ``field`` when the price is not positive or off the grid.
    """
    value = check_price(field, price)
    if tick_size is None:
        return repr(value)
    ticks = price_to_ticks(field, value, tick_size)
    decimals = max(0, -Decimal(repr(tick_size)).normalize().as_tuple().exponent)
    return f"{ticks * tick_size:.{decimals}f}"


def place_form(order: OrderRequest, ids: KiteIds, tick_size: float, product: str) -> dict:
    """Return the form fields of ``POST /orders/regular`` for ``order``.

    Only the fields Kite documents for the order's type are sent: ``price`` for LIMIT and SL,
    ``trigger_price`` for SL and SL-M, ``market_protection`` for MARKET and SL-M.
    """
    order_type = KITE_ORDER_TYPES[order.type]
    form = {
        "tradingsymbol": ids.tradingsymbol,
        "exchange": ids.exchange,
        "transaction_type": order.side.upper(),
        "order_type": order_type,
        "quantity": str(order.qty),
        "product": product,
        "validity": VALIDITY,
    }
    if order.limit_price is not None:
        form["price"] = price_text("limit_price", order.limit_price, tick_size)
    if order.stop_price is not None:
        form["trigger_price"] = price_text("stop_price", order.stop_price, tick_size)
    if order_type in PROTECTED_TYPES:
        form["market_protection"] = AUTO_PROTECTION
    form["tag"] = order.tag or ""
    return form


def modify_form(
    current: OrderState,
    tick_size: float | None,
    lot_size: int | None,
    qty: int | None,
    limit_price: float | None,
    stop_price: float | None,
) -> tuple[dict, OrderState]:
    """Return the form of ``PUT /orders/regular/{id}`` and the order as it will be.

    The form restates the whole order (type, quantity and the prices its type takes), so
    the change never depends on how Kite fills in omitted fields.

    Raises
    ------
    OrderError
        When nothing changes, a value is invalid, or a price does not belong to the type.
    """
    if qty is None and limit_price is None and stop_price is None:
        raise OrderError("order_id", "nothing to modify: give qty, limit_price or stop_price")
    for field, value, types in (
        ("limit_price", limit_price, LIMIT_TYPES),
        ("stop_price", stop_price, STOP_TYPES),
    ):
        if value is not None and current.type not in types:
            raise OrderError(field, f"not allowed for a {current.type} order, got {value!r}")
    new_qty = current.qty if qty is None else check_qty(qty, lot_size)
    new = dataclasses.replace(
        current,
        qty=new_qty,
        limit_price=current.limit_price if limit_price is None else float(limit_price),
        stop_price=current.stop_price if stop_price is None else float(stop_price),
    )
    form = {"order_type": KITE_ORDER_TYPES[current.type], "quantity": str(new_qty)}
    if new.limit_price is not None:
        form["price"] = price_text("limit_price", new.limit_price, tick_size)
    if new.stop_price is not None:
        form["trigger_price"] = price_text("stop_price", new.stop_price, tick_size)
    return form, new


def check_quotes(quotes: dict, names: list[str], instruments: Sequence[InstrumentConfig]) -> None:
    """Check each instrument's Kite ids against the ``GET /quote/ltp`` answer for ``names``.

    Raises
    ------
    ConfigError
        Naming ``instruments[i].kite`` for the first instrument Kite does not know or whose
        ``instrument_token`` is not the one Kite gives.
    """
    for index, (name, instrument) in enumerate(zip(names, instruments, strict=True)):
        where = f"instruments[{index}].kite"
        quote = quotes.get(name)
        if quote is None:
            raise ConfigError(f"{where}: Kite does not know {name}", path=where)
        token = int(quote.get("instrument_token") or 0)
        if instrument.kite is None or token != instrument.kite.instrument_token:
            configured = instrument.kite.instrument_token if instrument.kite else None
            raise ConfigError(
                f"{where}: instrument_token {configured} is not {name}'s, Kite says {token}",
                path=where,
            )


def net_positions(rows: Iterable[dict], symbols: dict[tuple, str]) -> dict[str, dict]:
    """Return Kite's ``net`` positions as ``{symbol: {"side", "qty", "entry_price"}}``.

    Flat rows are left out; an instrument held under several products (MIS and NRML) nets
    to one position. ``symbols`` maps ``(exchange, tradingsymbol)`` to the configured symbol;
    other instruments keep Kite's tradingsymbol.
    """
    totals: dict[str, list[float]] = {}
    for row in rows:
        quantity = int(row.get("quantity") or 0)
        if quantity:
            key = (row.get("exchange"), row.get("tradingsymbol"))
            total = totals.setdefault(symbols.get(key, str(row.get("tradingsymbol"))), [0, 0.0])
            total[0] += quantity
            total[1] += quantity * float(row.get("average_price") or 0.0)
    return {
        symbol: {
            "side": "long" if qty > 0 else "short",
            "qty": int(abs(qty)),
            "entry_price": value / qty,
        }
        for symbol, (qty, value) in totals.items()
        if qty
    }


def parse_time(text: object) -> int | None:
    """Return a Kite ``YYYY-MM-DD HH:MM:SS`` (IST) timestamp as ns since the epoch, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=IST)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def engine_status(kite_status: str) -> str:
    """Return the engine status of a Kite order status (anything not final is working)."""
    if kite_status.startswith("CANCELLED"):
        return "cancelled"
    return FINAL_STATUSES.get(kite_status, "working")


def order_state(data: dict, symbol: str, oco_group: int | None = None) -> tuple[OrderState, int]:
    """Read one Kite order dict.

    Parameters
    ----------
    data : dict
        An order as ``GET /orders``, order history and ticker order messages give it.
    symbol : str
        The configured symbol of its instrument (or Kite's tradingsymbol).
    oco_group : int, optional
        The group the engine placed it in; Kite does not know it.

    Returns
    -------
    tuple of OrderState and int
        The order, and the time of its last change (exchange time when given, else now), ns.
    """
    kite_status = str(data.get("status") or "")
    status = engine_status(kite_status)
    order_type = ENGINE_ORDER_TYPES.get(str(data.get("order_type")), "market")
    filled = int(data.get("filled_quantity") or 0)
    price = float(data.get("price") or 0.0)
    trigger = float(data.get("trigger_price") or 0.0)
    changed_at = (
        parse_time(data.get("exchange_update_timestamp"))
        or parse_time(data.get("exchange_timestamp"))
        or time.time_ns()
    )
    state = OrderState(
        order_id=str(data["order_id"]),
        symbol=symbol,
        side="sell" if data.get("transaction_type") == "SELL" else "buy",
        qty=int(data.get("quantity") or 0),
        type=order_type,  # type: ignore[arg-type]
        limit_price=price if order_type in LIMIT_TYPES and price > 0 else None,
        stop_price=trigger if order_type in STOP_TYPES and trigger > 0 else None,
        tag=data.get("tag") or None,
        oco_group=oco_group,
        status=status,
        filled_qty=filled,
        fill_price=float(data.get("average_price") or 0.0) if filled else None,
        fill_ts=changed_at if filled else None,
        # a stop rests as OPEN (or fills) once its trigger is reached; before that it shows
        # TRIGGER PENDING or one of the validation and modification steps
        triggered=order_type in STOP_TYPES and (filled > 0 or kite_status in TRIGGERED),
        reason=(data.get("status_message") or None) if status in FINAL_REASONED else None,
    )
    return state, changed_at


class OrderTracker:
    """Keep the last known state of each of our orders and emit only real changes.

    Snapshots of one order arrive from the ticker and from polling, repeated and sometimes
    late (a poll started before a fill can answer after the fill's ticker message), so a
    snapshot that goes back (a final order reopening, fewer units filled) is ignored.

    Parameters
    ----------
    stream : UpdateStream
        Receives the updates, numbered from 0.
    """

    def __init__(self, stream: UpdateStream) -> None:
        self.stream = stream
        #: last state of every order seen, by order id
        self.known: dict[str, OrderState] = {}
        #: ids of the orders that are still working
        self.open_ids: set[str] = set()

    def observe(self, new: OrderState, ts: int) -> OrderState:
        """Record a snapshot, emit the updates it implies, and return the state now known.

        Parameters
        ----------
        new : OrderState
            The order as the broker reported it.
        ts : int
            When it changed, ns since the epoch.
        """
        old = self.known.get(new.order_id)
        if old is not None:
            if not old.is_open or new.filled_qty < old.filled_qty:
                return old  # a late or repeated snapshot
            if new.filled_qty == old.filled_qty:
                new = dataclasses.replace(new, fill_ts=old.fill_ts, fill_price=old.fill_price)
            if old.triggered and not new.triggered:
                new = dataclasses.replace(new, triggered=True)  # a trigger is never undone
        self.known[new.order_id] = new
        if new.is_open:
            self.open_ids.add(new.order_id)
        else:
            self.open_ids.discard(new.order_id)
        for kind in self._kinds(old, new):
            shown = new
            if kind in ("accepted", "modified", "triggered") or (
                kind == "filled" and new.status != "filled"
            ):
                # steps before the final one show the order still working
                shown = dataclasses.replace(new, status="working", reason=None)
            self.stream.emit(kind, shown, new.reason if kind == shown.status else None, ts)
        return new

    @staticmethod
    def _kinds(old: OrderState | None, new: OrderState) -> list[str]:
        kinds = []
        old_filled = 0 if old is None else old.filled_qty
        if old is None and new.status == "working" and new.filled_qty == 0:
            kinds.append("accepted")
        if (
            old is not None
            and new.is_open
            and (
                (new.qty, new.limit_price, new.stop_price)
                != (old.qty, old.limit_price, old.stop_price)
            )
        ):
            kinds.append("modified")
        if new.triggered and new.is_open and not (old is not None and old.triggered):
            kinds.append("triggered")
        if new.filled_qty > old_filled or new.status == "filled":
            kinds.append("filled")
        if new.status in ("cancelled", "rejected"):
            kinds.append(new.status)
        return kinds
