"""ProjectX orders: the gateway's codes, order translation and :class:`OrderTracker`.

``Order/place`` takes the body :func:`place_body` builds (type and side as codes, the client
tag as ``customTag``). Order records, from ``Order/search*`` and the user hub's
``GatewayUserOrder`` events, become :class:`~engine.brokers.base.OrderState` records in
:meth:`OrderTracker.state_of`; the tracker streams each change of one of our orders once,
however many times the stream and the poll report it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

from engine.brokers.base import OrderRequest, OrderState
from engine.brokers.stream import UpdateStream

#: ProjectX order status -> OrderState status (None, Open, Filled, Cancelled, Expired,
#: Rejected, Pending, PendingCancellation, Suspended)
STATUSES: dict[int, str] = {
    0: "working",
    1: "working",
    2: "filled",
    3: "cancelled",
    4: "cancelled",
    5: "rejected",
    6: "working",
    7: "working",
    8: "working",
}
#: the reason of a cancel or reject: the gateway's status name (its events carry no message)
STATUS_NAMES: dict[int, str] = {3: "Cancelled", 4: "Expired", 5: "Rejected"}
#: ProjectX order type -> OrderType; a trailing stop counts as a stop, join-bid/ask as limits
ORDER_TYPES: dict[int, str] = {
    1: "limit",
    2: "market",
    3: "stop_limit",
    4: "stop",
    5: "stop",
    6: "limit",
    7: "limit",
}
#: OrderType -> ProjectX order type code
TYPE_CODES: dict[str, int] = {"limit": 1, "market": 2, "stop_limit": 3, "stop": 4}


def parse_ts(text: object) -> int | None:
    """Return an ISO 8601 gateway timestamp as ns since the epoch.

    Parameters
    ----------
    text : object
        The field's value, e.g. ``"2025-03-14T14:30:01.1234567+00:00"``; without a zone it is
        UTC.

    Returns
    -------
    int or None
        None when the value is absent or not a timestamp.
    """
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


class OrderTracker:
    """Our orders as last known, and the update stream of their changes.

    Ours are the orders carrying a ``customTag`` (every order the adapter places has one);
    each is recorded in ``tags``. A state merged in never moves backwards: filled quantity
    never drops and a finished order stays finished, so a late poll cannot undo a fill the
    stream already reported.

    Parameters
    ----------
    symbols : dict of str to str
        Configured symbol by contract id.
    stream : UpdateStream
        Where updates go.
    tags : dict of str to str
        The adapter's tag -> order id map, filled as orders are seen.
    """

    def __init__(self, symbols: dict[str, str], stream: UpdateStream, tags: dict[str, str]):
        self.symbols = symbols
        self.stream = stream
        self.tags = tags
        #: last known state by order id
        self.orders: dict[str, OrderState] = {}
        # fills learned from GatewayUserTrade: order id -> [units, price * units, last ts]
        self._fills: dict[str, list] = {}
        self._trade_ids: set[object] = set()

    def state_of(self, raw: dict) -> OrderState:
        """Return the OrderState of a gateway order record (``Order/search*`` or the hub)."""
        order_id = str(raw.get("id"))
        status_code = int(raw.get("status") or 0)
        status = STATUSES.get(status_code, "working")
        qty = int(raw.get("size") or 0)
        order_type = ORDER_TYPES.get(int(raw.get("type") or 0), "market")
        filled = int(raw.get("fillVolume") or 0)
        if status == "filled" and filled == 0:
            filled = qty
        fill_price = raw.get("filledPrice") if filled else None
        fill_ts = parse_ts(raw.get("updateTimestamp")) if filled else None
        learned = self._fills.get(order_id)
        if learned is not None and learned[0] >= max(filled, 1):
            # trades seen cover the reported fill (or run ahead of a stale report)
            filled, fill_price, fill_ts = learned[0], learned[1] / learned[0], learned[2]
            if filled >= qty and status == "working":
                status = "filled"
        limit = raw.get("limitPrice") if order_type in ("limit", "stop_limit") else None
        stop = raw.get("stopPrice") if order_type in ("stop", "stop_limit") else None
        contract = str(raw.get("contractId"))
        return OrderState(
            order_id=order_id,
            symbol=self.symbols.get(contract, contract),
            side="buy" if raw.get("side") == 0 else "sell",
            qty=qty,
            type=order_type,  # type: ignore[arg-type]
            limit_price=float(limit) if limit is not None else None,
            stop_price=float(stop) if stop is not None else None,
            tag=raw.get("customTag") or None,
            oco_group=None,
            status=status,
            filled_qty=filled,
            fill_price=float(fill_price) if fill_price is not None else None,
            fill_ts=(fill_ts or time.time_ns()) if filled else None,
            reason=STATUS_NAMES.get(status_code),
        )

    def on_order(self, raw: dict) -> OrderState | None:
        """Merge a gateway order record; return the merged state (None when not ours)."""
        if not raw.get("customTag") or raw.get("id") is None:
            return None
        return self.observe(self.state_of(raw))

    def on_trade(self, raw: dict) -> None:
        """Merge one ``GatewayUserTrade`` (a fill of ``size`` at ``price``) into its order."""
        trade_id = raw.get("id")
        size, price = int(raw.get("size") or 0), float(raw.get("price") or 0.0)
        if raw.get("voided") or size <= 0 or trade_id in self._trade_ids:
            return
        self._trade_ids.add(trade_id)
        order_id = str(raw.get("orderId"))
        ts = parse_ts(raw.get("creationTimestamp")) or time.time_ns()
        learned = self._fills.setdefault(order_id, [0, 0.0, ts])
        explained = learned[0]
        learned[0] += size
        learned[1] += price * size
        learned[2] = ts
        known = self.orders.get(order_id)
        # a trade adds to the fill only when the trades seen explain the fill known so far;
        # after a missed trade the order's own cumulative fillVolume is awaited instead
        if known is not None and known.filled_qty == explained:
            status = "filled" if learned[0] >= known.qty else known.status
            self.observe(
                replace(
                    known,
                    status=status,
                    filled_qty=learned[0],
                    fill_price=learned[1] / learned[0],
                    fill_ts=ts,
                )
            )

    def observe(self, state: OrderState) -> OrderState:
        """Merge ``state`` into what is known and stream each change once.

        Parameters
        ----------
        state : OrderState
            The order as just reported (by the hub, a poll, or a REST answer).

        Returns
        -------
        OrderState
            The merged state: ``state``, unless it would move the order backwards.
        """
        if state.tag:
            self.tags[state.tag] = state.order_id
        old = self.orders.get(state.order_id)
        kinds: list[str] = []
        if old is None:
            merged = state
            if state.is_open:
                kinds.append("accepted")
            if state.filled_qty:
                kinds.append("filled")
            if state.status in ("cancelled", "rejected"):
                kinds.append(state.status)
        elif not old.is_open:
            if state.filled_qty <= old.filled_qty:
                return old
            merged = replace(
                old,
                filled_qty=state.filled_qty,
                fill_price=state.fill_price,
                fill_ts=state.fill_ts,
            )
            kinds.append("filled")
        else:
            merged = state
            if state.filled_qty < old.filled_qty:
                merged = replace(
                    state,
                    filled_qty=old.filled_qty,
                    fill_price=old.fill_price,
                    fill_ts=old.fill_ts,
                )
            if merged.filled_qty > old.filled_qty or merged.status == "filled":
                kinds.append("filled")
            if merged.status in ("cancelled", "rejected"):
                kinds.append(merged.status)
            elif merged.status == "working" and (
                (merged.qty, merged.limit_price, merged.stop_price)
                != (old.qty, old.limit_price, old.stop_price)
            ):
                kinds.append("modified")
        self.orders[merged.order_id] = merged
        for kind in kinds:
            reason = merged.reason if kind in ("cancelled", "rejected") else None
            ts = merged.fill_ts if kind == "filled" and merged.fill_ts else time.time_ns()
            self.stream.emit(kind, merged, reason, ts)
        return merged

    def open_ids(self) -> list[str]:
        """Return the ids of our orders still open, as last known."""
        return [order_id for order_id, state in self.orders.items() if state.is_open]


def place_body(order: OrderRequest, account_id: int, contract_id: object) -> dict:
    """Return the ``Order/place`` JSON body of ``order``.

    Parameters
    ----------
    order : OrderRequest
        The order, already checked; its ``tag`` becomes the ``customTag``.
    account_id : int
        The account traded.
    contract_id : object
        The gateway's contract id of ``order.symbol``.

    Returns
    -------
    dict
        ``accountId, contractId, type, side, size, limitPrice, stopPrice, customTag``.
    """
    return {
        "accountId": account_id,
        "contractId": contract_id,
        "type": TYPE_CODES[order.type],
        "side": 0 if order.side == "buy" else 1,
        "size": order.qty,
        "limitPrice": order.limit_price,
        "stopPrice": order.stop_price,
        "customTag": order.tag,
    }


def requested(
    order: OrderRequest, order_id: str, status: str, reason: str | None = None
) -> OrderState:
    """Return the state of ``order`` as just placed (nothing filled yet).

    Parameters
    ----------
    order : OrderRequest
        The order sent.
    order_id : str
        The gateway's order id (the tag for a refused order, which gets none).
    status : str
        ``working`` or ``rejected``.
    reason : str, optional
        Why it was rejected.

    Returns
    -------
    OrderState
        The request's fields with ``order_id``, ``status`` and ``reason``.
    """
    return order.as_state(order_id, status, reason=reason)


def tagged(data: dict, tag: str) -> dict | None:
    """Return the order record of an ``Order/search*`` answer whose ``customTag`` is ``tag``."""
    return next((raw for raw in data.get("orders") or [] if raw.get("customTag") == tag), None)
