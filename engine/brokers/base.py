"""The one small async broker interface every broker adapter implements.

``paper`` fills inside the process (:mod:`engine.brokers.paper`); live adapters (Kite, Upstox,
ProjectX, ...) implement the same :class:`Broker` protocol over their HTTP APIs and order
update streams, translating to and from the plain records below.

Conventions shared by every adapter:

- quantities are units (not lots) and must be a positive multiple of the instrument's lot;
- prices are plain floats on the instrument's tick grid; ``limit_price`` belongs to
  ``limit`` and ``stop_limit`` orders, ``stop_price`` (the trigger) to ``stop`` and
  ``stop_limit``; a market order has neither;
- a malformed request raises :class:`OrderError` naming the field, and nothing is placed;
- a well-formed order the broker refuses (risk rules, halted engine, no price) is returned
  as an :class:`OrderState` with status ``"rejected"`` and a ``reason``, and its update goes
  to the :meth:`Broker.updates` stream, as a live broker reports a rejection asynchronously;
- every state change of an order (accepted, triggered, activated, modified, filled,
  cancelled, rejected) is one :class:`OrderUpdate` on :meth:`Broker.updates`, in order.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, get_args, runtime_checkable

__all__ = [
    "GRID_TOLERANCE",
    "LIMIT_TYPES",
    "ORDER_STATUSES",
    "ORDER_TYPES",
    "SIDES",
    "STOP_TYPES",
    "UPDATE_KINDS",
    "Bracket",
    "Broker",
    "OrderError",
    "OrderRequest",
    "OrderState",
    "OrderType",
    "OrderUpdate",
    "Side",
    "check_price",
    "check_qty",
    "price_to_ticks",
]

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]

#: order sides
SIDES: tuple[str, ...] = get_args(Side)
#: order types; ``stop`` is stop-market
ORDER_TYPES: tuple[str, ...] = get_args(OrderType)
#: order statuses; ``pending`` is a bracket exit waiting for its entry to fill
ORDER_STATUSES: tuple[str, ...] = ("pending", "working", "filled", "cancelled", "rejected")
#: kinds of order updates
UPDATE_KINDS: tuple[str, ...] = (
    "accepted",
    "modified",
    "triggered",
    "activated",
    "filled",
    "cancelled",
    "rejected",
)
#: order types that take a ``limit_price`` (and need one)
LIMIT_TYPES: tuple[str, ...] = ("limit", "stop_limit")
#: order types that take a ``stop_price`` (and need one)
STOP_TYPES: tuple[str, ...] = ("stop", "stop_limit")
#: largest distance from the tick grid accepted as on it, in ticks (float noise of price * n)
GRID_TOLERANCE = 1e-6


class OrderError(ValueError):
    """A malformed or impossible order request; nothing was placed or changed.

    ``str(error)`` is one line, ``<field>: <problem>``.

    Parameters
    ----------
    field : str
        The request field at fault (``symbol``, ``side``, ``qty``, ``type``, ``limit_price``,
        ``stop_price``, ``oco_group``, ``order_id``, ...).
    message : str
        What is wrong with it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_price(field: str, price: object) -> float:
    """Return ``price`` as a float, or raise OrderError unless it is a finite number > 0.

    Parameters
    ----------
    field : str
        Field name for the error message.
    price : object
        The value to check.

    Returns
    -------
    float
    """
    if isinstance(price, bool) or not isinstance(price, numbers.Real):
        raise OrderError(field, f"must be a number, got {price!r}")
    value = float(price)
    if not math.isfinite(value) or value <= 0.0:
        raise OrderError(field, f"must be a finite price > 0, got {price!r}")
    return value


def check_qty(qty: object, lot_size: int | None = None) -> int:
    """Return ``qty`` as an int, or raise OrderError unless it is a positive lot multiple.

    Parameters
    ----------
    qty : object
        Units to trade.
    lot_size : int, optional
        Units per lot of the instrument; not checked when None.

    Returns
    -------
    int
    """
    if not _is_int(qty):
        raise OrderError("qty", f"must be an integer number of units, got {qty!r}")
    units = int(qty)  # type: ignore[call-overload]
    if units <= 0:
        raise OrderError("qty", f"must be > 0, got {units}")
    if lot_size is not None and units % lot_size:
        raise OrderError("qty", f"must be a multiple of the lot size {lot_size}, got {units}")
    return units


def price_to_ticks(field: str, price: float, tick_size: float) -> int:
    """Return ``price`` in ticks of ``tick_size``; raise OrderError when it is off the grid.

    Parameters
    ----------
    field : str
        Field name for the error message.
    price : float
        A finite price > 0.
    tick_size : float
        The instrument's price increment.

    Returns
    -------
    int
        ``round(price / tick_size)``.
    """
    ticks = price / tick_size
    whole = round(ticks)
    if abs(ticks - whole) > GRID_TOLERANCE or whole <= 0:
        raise OrderError(field, f"{price!r} is not on the tick grid of {tick_size!r}")
    return whole


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order to place.

    Construction checks what needs no instrument data (side, type, quantity, which prices
    the type takes, OCO group) and raises OrderError naming the field; the broker checks the
    symbol, the lot multiple and the tick grid when the order is placed.

    Parameters
    ----------
    symbol : str
        Instrument symbol as configured.
    side : {"buy", "sell"}
    qty : int
        Units, a positive multiple of the lot size.
    type : {"market", "limit", "stop", "stop_limit"}
        ``stop`` is stop-market.
    limit_price : float, optional
        Required for ``limit`` and ``stop_limit``, refused otherwise.
    stop_price : float, optional
        Trigger price; required for ``stop`` and ``stop_limit``, refused otherwise.
    tag : str, optional
        Caller's label, kept on the order and its updates.
    oco_group : int, optional
        Orders sharing a group (an int >= 1) are one-cancels-other: the first to fill cancels
        the others.
    """

    symbol: str
    side: Side
    qty: int
    type: OrderType = "market"
    limit_price: float | None = None
    stop_price: float | None = None
    tag: str | None = None
    oco_group: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise OrderError("symbol", f"must be a non-empty string, got {self.symbol!r}")
        if self.side not in SIDES:
            raise OrderError("side", f"must be one of {', '.join(SIDES)}, got {self.side!r}")
        if self.type not in ORDER_TYPES:
            raise OrderError("type", f"must be one of {', '.join(ORDER_TYPES)}, got {self.type!r}")
        check_qty(self.qty)
        for field, needed in (
            ("limit_price", self.type in LIMIT_TYPES),
            ("stop_price", self.type in STOP_TYPES),
        ):
            value = getattr(self, field)
            if needed and value is None:
                raise OrderError(field, f"required for a {self.type} order")
            if not needed and value is not None:
                raise OrderError(field, f"not allowed for a {self.type} order, got {value!r}")
            if value is not None:
                check_price(field, value)
        if self.tag is not None and not isinstance(self.tag, str):
            raise OrderError("tag", f"must be a string or null, got {self.tag!r}")
        if self.oco_group is not None and (not _is_int(self.oco_group) or self.oco_group < 1):
            raise OrderError("oco_group", f"must be an integer >= 1, got {self.oco_group!r}")

    def as_state(self, order_id: str, status: str, **fields) -> OrderState:
        """Return this request as an :class:`OrderState` with ``order_id`` and ``status``.

        ``fields`` sets the state's other fields (``reason``, ``leg``, ``parent_id``, ...).
        """
        return OrderState(
            order_id,
            self.symbol,
            self.side,
            self.qty,
            self.type,
            self.limit_price,
            self.stop_price,
            self.tag,
            self.oco_group,
            status,
            **fields,
        )


@dataclass(frozen=True, slots=True)
class OrderState:
    """A snapshot of one order.

    Parameters
    ----------
    order_id : str
        Unique order id.
    symbol, side, qty, type, limit_price, stop_price, tag
        As requested (after any modify).
    oco_group : int, optional
        The OCO group; a bracket's exits share a negative group the broker picked.
    status : {"pending", "working", "filled", "cancelled", "rejected"}
        ``pending``: a bracket exit waiting for its entry to fill.
    filled_qty : int
        Units filled (a bracket exit fills at most the position it reduces).
    fill_price : float, optional
        Price of the fill.
    fill_ts : int, optional
        Tick time of the fill, ns since the epoch.
    triggered : bool
        A stop-limit whose stop was reached (it rests as a limit).
    reason : str, optional
        Why it was cancelled or rejected (``user``, ``oco``, ``parent_cancelled``,
        ``parent_rejected``, ``halted``, ``max_position``, ``no_position``, ``no_price``).
    leg : {"entry", "target", "stop"}, optional
        The order's role in a bracket.
    parent_id : str, optional
        A bracket exit's entry order.
    """

    order_id: str
    symbol: str
    side: Side
    qty: int
    type: OrderType
    limit_price: float | None
    stop_price: float | None
    tag: str | None
    oco_group: int | None
    status: str
    filled_qty: int = 0
    fill_price: float | None = None
    fill_ts: int | None = None
    triggered: bool = False
    reason: str | None = None
    leg: str | None = None
    parent_id: str | None = None

    @property
    def is_open(self) -> bool:
        """Whether the order can still fill, be modified or cancelled."""
        return self.status in ("pending", "working")


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One state change of an order, as streamed by :meth:`Broker.updates`.

    Parameters
    ----------
    seq : int
        Position in the broker's stream, from 0, without gaps (a gap at the consumer means
        updates were dropped).
    kind : {"accepted", "modified", "triggered", "activated", "filled", "cancelled", \
"rejected"}
    order : OrderState
        The order after the change.
    reason : str, optional
        Why: the cancel or reject reason; for a bracket exit's fill, its leg (``target`` or
        ``stop``).
    ts : int
        Tick time of the tick that caused it (fills, triggers, rejects at a fill), else wall
        clock when the operator acted; ns since the epoch.
    """

    seq: int
    kind: str
    order: OrderState
    reason: str | None
    ts: int


@dataclass(frozen=True, slots=True)
class Bracket:
    """The three orders of a bracket: entry, then a target limit and a stop as an OCO pair."""

    entry: OrderState
    target: OrderState
    stop: OrderState


@runtime_checkable
class Broker(Protocol):
    """Place, change and follow orders; read positions.

    The methods are coroutines so that live adapters can do network I/O; the paper broker
    does its work synchronously inside them.
    """

    async def place(self, order: OrderRequest) -> OrderState:
        """Place ``order``; return its state (``rejected`` with a reason when refused).

        Raises OrderError, with nothing placed, for a malformed request.
        """
        ...

    async def modify(
        self,
        order_id: str,
        *,
        qty: int | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderState:
        """Change an open order's quantity or prices (re-validated); return its new state.

        Raises OrderError when the order is not open or a new value is invalid; the order is
        then unchanged.
        """
        ...

    async def cancel(self, order_id: str) -> OrderState:
        """Cancel an open order; return its final state. OrderError when it is not open."""
        ...

    async def open_orders(self) -> list[OrderState]:
        """Return the pending and working orders, oldest first."""
        ...

    async def positions(self) -> dict[str, dict]:
        """Return open positions by symbol, shaped as ``engine.state.State.positions``."""
        ...

    def updates(self) -> AsyncIterator[OrderUpdate]:
        """Return the stream of order updates, in the order they happened."""
        ...
