"""The checks a paper order passes before it is placed or changed.

The instrument's rules (a known symbol, a lot multiple, prices on the tick grid), the sides of
a bracket's exits, and the engine's risk gate. A malformed request raises :class:`OrderError`
naming the field at fault; a well-formed one the risk rules refuse gets the reason to reject
it with. Prices come back in ticks of the instrument's grid, as the kernels of
:mod:`kernels.paper` take them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engine.brokers.base import (
    LIMIT_TYPES,
    STOP_TYPES,
    OrderError,
    OrderRequest,
    check_price,
    check_qty,
    price_to_ticks,
)
from engine.brokers.paper_table import SIDE_CODE
from kernels import layout
from kernels import paper as kp

if TYPE_CHECKING:
    from engine.state import State

__all__ = [
    "check_change",
    "check_exits",
    "check_order",
    "entry_error",
    "ltp_ticks",
    "refusal",
]


def check_order(state: State, order: OrderRequest) -> tuple[int, int, int]:
    """Check ``order`` against its instrument; return the instrument's row and prices in ticks.

    Parameters
    ----------
    state : State
        The engine's state, with the configured instruments.
    order : OrderRequest
        The request.

    Returns
    -------
    tuple of int
        ``(i, limit_ticks, stop_ticks)``; 0 for a price the order does not take.

    Raises
    ------
    OrderError
        Unknown symbol, a quantity not a lot multiple, or a price off the tick grid.
    """
    i = state.index.get(order.symbol)
    if i is None:
        known = ", ".join(state.symbols)
        raise OrderError("symbol", f"unknown symbol {order.symbol!r} (known: {known})")
    inst = state.cfg.instruments[i]
    check_qty(order.qty, inst.lot_size)
    limit_ticks = stop_ticks = 0
    if order.limit_price is not None:
        limit_ticks = price_to_ticks("limit_price", order.limit_price, inst.tick_size)
    if order.stop_price is not None:
        stop_ticks = price_to_ticks("stop_price", order.stop_price, inst.tick_size)
    return i, limit_ticks, stop_ticks


def check_change(
    state: State,
    row: np.void,
    qty: int | None,
    limit_price: float | None,
    stop_price: float | None,
) -> tuple[int, int, int, float | None, float | None]:
    """Check a change to the open order in ``row``; return its new quantity and prices.

    A larger quantity of a plain order or a bracket entry passes the risk gate again.

    Parameters
    ----------
    state : State
        The engine's state.
    row : np.void
        The order's row of ``ORDER_DTYPE``.
    qty, limit_price, stop_price : optional
        As for ``PaperBroker.modify``; None keeps the current value.

    Returns
    -------
    tuple
        ``(qty, limit_ticks, stop_ticks, limit_price, stop_price)``, as
        :meth:`OrderTable.modify` takes them; a price None when unchanged.

    Raises
    ------
    OrderError
        Nothing to change, or a new value invalid or refused.
    """
    if qty is None and limit_price is None and stop_price is None:
        raise OrderError("qty", "give qty, limit_price or stop_price to modify")
    i = int(row["inst"])
    inst = state.cfg.instruments[i]
    otype = kp.ORDER_TYPES[int(row["otype"])]
    new_qty = int(row["qty"]) if qty is None else check_qty(qty, inst.lot_size)
    limit_ticks = int(row["limit"])
    stop_ticks = int(row["stop"])
    if limit_price is not None:
        limit_price, limit_ticks = _new_price("limit_price", limit_price, otype, inst.tick_size)
    if stop_price is not None:
        if row["triggered"]:  # only a stop-limit triggers, and it takes a stop_price
            raise OrderError("stop_price", "the stop already triggered")
        stop_price, stop_ticks = _new_price("stop_price", stop_price, otype, inst.tick_size)
    leg = int(row["leg"])
    if new_qty > row["qty"] and leg in (kp.LEG_NONE, kp.LEG_ENTRY):
        gate = kp.order_gate(state.book, i, int(row["side"]), new_qty, leg)
        if gate != kp.PR_NONE:
            raise OrderError("qty", f"refused: {kp.ORDER_REASONS[gate]}")
    return new_qty, limit_ticks, stop_ticks, limit_price, stop_price


def _new_price(field: str, price: object, otype: str, tick_size: float) -> tuple[float, int]:
    if otype not in (LIMIT_TYPES if field == "limit_price" else STOP_TYPES):
        raise OrderError(field, f"not allowed for a {otype} order")
    value = check_price(field, price)
    return value, price_to_ticks(field, value, tick_size)


def check_exits(
    entry: OrderRequest,
    reference: int | None,
    target_price: float,
    stop_price: float,
    tick_size: float,
) -> tuple[OrderRequest, OrderRequest, int, int]:
    """Check a bracket's exit prices against its entry; return the exits and their ticks.

    Parameters
    ----------
    entry : OrderRequest
        The bracket's checked entry.
    reference : int, optional
        The entry's price in ticks: its limit, a stop entry's stop, a market entry's LTP;
        None for a market entry before the instrument's first tick, which skips those checks.
    target_price : float
        Take-profit limit: beyond the reference in the entry's favour.
    stop_price : float
        Stop-market trigger, on the other side of the reference, and of the target.
    tick_size : float
        The instrument's price increment.

    Returns
    -------
    target, stop : OrderRequest
        The exits: a limit and a stop on the opposite side, for the entry's quantity.
    target_ticks, stop_ticks : int
        Their prices in ticks.

    Raises
    ------
    OrderError
        A price invalid, off the grid or on the wrong side.
    """
    target_price = check_price("target_price", target_price)
    stop_price = check_price("stop_price", stop_price)
    target_ticks = price_to_ticks("target_price", target_price, tick_size)
    stop_ticks = price_to_ticks("stop_price", stop_price, tick_size)
    side, sign = entry.side, SIDE_CODE[entry.side]
    above, below = ("above", "below") if sign == layout.LONG else ("below", "above")
    if reference is not None and sign * (target_ticks - reference) <= 0:
        raise OrderError("target_price", f"must be {above} the entry's price for a {side}")
    if reference is not None and sign * (stop_ticks - reference) >= 0:
        raise OrderError("stop_price", f"must be {below} the entry's price for a {side}")
    if sign * (target_ticks - stop_ticks) <= 0:
        raise OrderError("target_price", f"must be {above} stop_price for a {side}")
    exit_side = "sell" if side == "buy" else "buy"
    symbol, qty, tag = entry.symbol, entry.qty, entry.tag
    target = OrderRequest(symbol, exit_side, qty, "limit", limit_price=target_price, tag=tag)
    stop = OrderRequest(symbol, exit_side, qty, "stop", stop_price=stop_price, tag=tag)
    return target, stop, target_ticks, stop_ticks


def entry_error(exc: OrderError) -> OrderError:
    """Return ``exc`` with the field named as ``place_bracket`` names the entry's fields.

    Parameters
    ----------
    exc : OrderError
        An error of the entry's request: ``type``, ``limit_price`` or ``stop_price`` become
        ``entry_type``, ``entry_limit_price`` and ``entry_stop_price``; others are kept.

    Returns
    -------
    OrderError
    """
    if exc.field in ("limit_price", "stop_price"):
        return OrderError(
            f"entry_{exc.field}", exc.message.replace(exc.field, "entry_" + exc.field)
        )
    if exc.field == "type":
        return OrderError("entry_type", exc.message)
    return exc


def ltp_ticks(state: State, i: int) -> int | None:
    """Return instrument ``i``'s last traded price in ticks, None before its first tick."""
    if state.book[i, layout.I_TICKS] <= 0.0:
        return None
    return int(state.book[i, layout.I_LTP_TICKS])


def refusal(state: State, order: OrderRequest, i: int) -> str | None:
    """Return why the risk rules refuse ``order`` on instrument ``i`` now, else None.

    Parameters
    ----------
    state : State
        The engine's state.
    order : OrderRequest
        A checked request (see :func:`check_order`).
    i : int
        Its instrument's row.

    Returns
    -------
    str or None
        ``no_price`` (a market order before the instrument's first tick), ``halted`` or
        ``max_position``.
    """
    if order.type == "market" and ltp_ticks(state, i) is None:
        return "no_price"
    gate = kp.order_gate(state.book, i, SIDE_CODE[order.side], order.qty, kp.LEG_NONE)
    return kp.ORDER_REASONS[gate] if gate != kp.PR_NONE else None
