"""Upstox orders as the engine sees them: request bodies, order-book states, tracked updates.

Order updates come from polling the order book every :data:`POLL_INTERVAL_S` while one of our
orders is open (Upstox's order book has no fill time, so a fill is stamped when it is seen).
"Our" orders are those placed here and tagged ones seen through the adapter's ``open_orders``
or ``order_by_tag``; :class:`OrderTracker` turns each change of one into exactly one update.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from engine.brokers.base import (
    LIMIT_TYPES,
    STOP_TYPES,
    OrderError,
    OrderRequest,
    OrderState,
    check_price,
    check_qty,
)
from engine.brokers.live_base import Alert, BrokerError, RateLimited, TokenExpired
from engine.brokers.stream import UpdateStream

__all__ = [
    "ENGINE_TYPES",
    "EXPIRED_POLL_S",
    "FINAL_REASONS",
    "FINAL_STATUSES",
    "POLL_INTERVAL_S",
    "UPSTOX_TYPES",
    "OrderTracker",
    "modify_body",
    "place_body",
]

#: seconds between order-book polls while one of our orders is open
POLL_INTERVAL_S = 0.5
#: seconds between polls while the token is expired (until renew() wakes the poller)
EXPIRED_POLL_S = 5.0
#: engine statuses whose order carries the broker's status message as its reason
FINAL_REASONS = ("cancelled", "rejected")
#: Upstox order type by engine order type
UPSTOX_TYPES = {"market": "MARKET", "limit": "LIMIT", "stop": "SL-M", "stop_limit": "SL"}
#: engine order type by Upstox order type
ENGINE_TYPES = {value: key for key, value in UPSTOX_TYPES.items()}
#: engine status of the final Upstox statuses; every other status is ``working``
FINAL_STATUSES = {
    "complete": "filled",
    "cancelled": "cancelled",
    "cancelled after market order": "cancelled",
    "rejected": "rejected",
}


def place_body(order: OrderRequest, key: str, product: str) -> dict:
    """Return the ``POST /v2/order/place`` JSON of ``order``.

    Parameters
    ----------
    order : OrderRequest
        The order; ``order.tag`` (or ``""``) goes out as its tag.
    key : str
        Upstox instrument key of ``order.symbol``.
    product : str
        Upstox product code (``broker.order_product``).

    Returns
    -------
    dict
        The request body, a DAY order that is never an after-market one.
    """
    return {
        "quantity": order.qty,
        "product": product,
        "validity": "DAY",
        "price": order.limit_price or 0,
        "tag": order.tag or "",
        "instrument_token": key,
        "order_type": UPSTOX_TYPES[order.type],
        "transaction_type": order.side.upper(),
        "disclosed_quantity": 0,
        "trigger_price": order.stop_price or 0,
        "is_amo": False,
    }


def modify_body(
    order_id: str,
    current: OrderState,
    qty: int | None = None,
    limit_price: float | None = None,
    stop_price: float | None = None,
) -> dict:
    """Return the ``PUT /v2/order/modify`` JSON changing ``current``; unset values stay.

    Parameters
    ----------
    order_id : str
        The order's Upstox id.
    current : OrderState
        The open order as last known.
    qty, limit_price, stop_price : optional
        The new values; a price must suit the order's type.

    Returns
    -------
    dict
        The request body.

    Raises
    ------
    OrderError
        When a value is invalid or a price does not apply to the order's type.
    """
    for field, value, types in (
        ("limit_price", limit_price, LIMIT_TYPES),
        ("stop_price", stop_price, STOP_TYPES),
    ):
        if value is not None:
            check_price(field, value)
            if current.type not in types:
                raise OrderError(field, f"not allowed for a {current.type} order")
    limit = limit_price if limit_price is not None else current.limit_price
    stop = stop_price if stop_price is not None else current.stop_price
    return {
        "quantity": check_qty(qty) if qty is not None else current.qty,
        "validity": "DAY",
        "price": limit or 0,
        "order_id": order_id,
        "order_type": UPSTOX_TYPES[current.type],
        "disclosed_quantity": 0,
        "trigger_price": stop or 0,
    }


class OrderTracker:
    """Our orders as last known, the updates their changes make, and the order-book poller.

    Parameters
    ----------
    symbols : dict of str to str
        Configured symbol by instrument key.
    stream : UpdateStream
        Where updates go.
    tags : dict of str to str
        The adapter's tag -> order id map, filled as orders are followed.
    """

    def __init__(self, symbols: dict[str, str], stream: UpdateStream, tags: dict[str, str]):
        self.symbols = symbols
        self.stream = stream
        self.tags = tags
        #: last known state of each of our orders, by order id
        self.known: dict[str, OrderState] = {}
        #: order states recorded outside the poller, to drop polls that overlapped them
        self.changes = 0
        #: set to wake the poller (a new open order, a renewed token); made by the adapter
        self.wake: asyncio.Event | None = None

    def state(self, entry: dict) -> OrderState:
        """Return the engine's view of an Upstox order book entry."""
        order_id = str(entry.get("order_id") or "")
        raw = str(entry.get("status") or "").lower()
        kind = ENGINE_TYPES.get(str(entry.get("order_type")), "market")
        status = FINAL_STATUSES.get(raw, "working")
        filled = int(entry.get("filled_quantity") or 0)
        prev = self.known.get(order_id)
        if prev is not None and prev.filled_qty == filled:
            fill_ts = prev.fill_ts
        else:
            fill_ts = time.time_ns() if filled else None
        # a stop-limit rests in "trigger pending" until its stop is reached, "open" after
        triggered = kind == "stop_limit" and (
            raw == "open" or filled > 0 or (prev is not None and prev.triggered)
        )
        key = str(entry.get("instrument_token") or "")
        symbol = self.symbols.get(key) or entry.get("trading_symbol") or key
        price, trigger = entry.get("price"), entry.get("trigger_price")
        return OrderState(
            order_id=order_id,
            symbol=str(symbol),
            side="buy" if entry.get("transaction_type") == "BUY" else "sell",
            qty=int(entry.get("quantity") or 0),
            type=kind,  # type: ignore[arg-type]
            limit_price=float(price or 0) if kind in LIMIT_TYPES else None,
            stop_price=float(trigger or 0) if kind in STOP_TYPES else None,
            tag=entry.get("tag") or None,
            oco_group=prev.oco_group if prev is not None else None,
            status=status,
            filled_qty=filled,
            fill_price=float(entry.get("average_price") or 0) if filled else None,
            fill_ts=fill_ts,
            triggered=triggered,
            reason=(entry.get("status_message") or raw) if status in FINAL_REASONS else None,
        )

    def follow(self, state: OrderState) -> OrderState:
        """Count ``state`` as ours without an update (the caller already knows it)."""
        self.known[state.order_id] = state
        if state.tag:
            self.tags[state.tag] = state.order_id
        if state.is_open and self.wake is not None:
            self.wake.set()
        return state

    def seen(self, state: OrderState) -> OrderState:
        """Record ``state`` seen in the book: a tagged order becomes ours, untagged stay foreign."""
        self.changes += 1
        if state.order_id in self.known:
            return self.observe(state)
        return self.follow(state) if state.tag else state

    def observe(self, state: OrderState, polled: bool = False) -> OrderState:
        """Record ``state`` of one of our orders and emit one update per change it shows."""
        prev = self.known.get(state.order_id)
        if prev is not None and (
            state.filled_qty < prev.filled_qty or (state.is_open and not prev.is_open)
        ):
            return prev  # an older snapshot than the one already seen
        if not polled:
            self.changes += 1
        self.follow(state)
        now = time.time_ns()
        emit = self.stream.emit
        if prev is None:
            if state.status == "rejected":
                emit("rejected", state, state.reason, now)
                return state
            emit("accepted", state, None, now)
            prev = replace(state, status="working", filled_qty=0, triggered=False)
        if (state.qty, state.limit_price, state.stop_price) != (
            prev.qty,
            prev.limit_price,
            prev.stop_price,
        ):
            emit("modified", state, None, now)
        if state.triggered and not prev.triggered:
            emit("triggered", state, None, now)
        if state.filled_qty > prev.filled_qty or (
            state.status == "filled" and prev.status != "filled"
        ):
            emit("filled", state, None, state.fill_ts or now)
        if state.status in ("cancelled", "rejected") and state.status != prev.status:
            emit(state.status, state, state.reason, now)
        return state

    async def poll(
        self,
        book: Callable[[], Awaitable[list[dict]]],
        expired: Callable[[], bool],
        on_alert: Alert,
    ) -> None:
        """Poll the order book while one of our orders is open, until cancelled.

        Parameters
        ----------
        book : callable
            Returns the order book's entries.
        expired : callable
            Tells whether the token is expired (the poll then slows to :data:`EXPIRED_POLL_S`).
        on_alert : Alert
            Told ``broker_error`` once per streak of failing polls.
        """
        failing = False
        while True:
            try:
                if any(state.is_open for state in self.known.values()):
                    mark = self.changes
                    entries = await book()
                    # a place/modify/cancel answered meanwhile saw a newer book: skip this one
                    for entry in entries if mark == self.changes else ():
                        if str(entry.get("order_id")) in self.known:
                            self.observe(self.state(entry), polled=True)
                failing = False
            except (TokenExpired, RateLimited):
                pass  # alerted where detected
            except Exception as error:  # noqa: BLE001
                # the poller must outlive any broker hiccup; one alert per failing streak
                if not failing:
                    message = error.message if isinstance(error, BrokerError) else repr(error)
                    on_alert("broker_error", message)
                failing = True
            await self._nap(EXPIRED_POLL_S if expired() else POLL_INTERVAL_S)

    async def _nap(self, seconds: float) -> None:
        assert self.wake is not None
        idle = not any(state.is_open for state in self.known.values())
        self.wake.clear()
        # with nothing open there is nothing to poll: sleep until an order or a renewal
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if idle else seconds):
                await self.wake.wait()
