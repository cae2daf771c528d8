"""Ledger kernels: fills into positions and P&L, marking to market, the event ring."""

import numpy as np

from kernels.jit import add_int, entry, get_int, int_bits, kernel, set_int
from kernels.layout import (
    A_DAILY_LOSS_LIMIT,
    A_DAY_HALT,
    A_DAY_PNL,
    A_DAY_REALIZED,
    A_DRAWDOWN,
    A_EQUITY,
    A_EVENT_CAP,
    A_EVENTS,
    A_EVENTS_LOST,
    A_FLOOR,
    A_HALT,
    A_MAX_DRAWDOWN,
    A_N_INST,
    A_PEAK,
    A_PROFIT_TARGET,
    A_REALIZED,
    A_SEQ,
    A_TRAIL_LIMIT,
    A_UNREALIZED,
    E_ENTRY_PRICE,
    E_ENTRY_TS,
    E_INST,
    E_KIND,
    E_MAE,
    E_MFE,
    E_PNL,
    E_PRICE,
    E_QTY,
    E_REASON,
    E_SEQ,
    E_SIDE,
    E_STOP,
    E_TARGET,
    E_TS,
    FLAT,
    G_DAILY_LOSS,
    G_MAX_LOSS,
    G_OK,
    G_PROFIT_TARGET,
    I_ENTERED_AT,
    I_ENTRY_TICKS,
    I_ENTRY_TS,
    I_LTP_TICKS,
    I_MAE_TICKS,
    I_MFE_TICKS,
    I_POINT_VALUE,
    I_QTY,
    I_REALIZED,
    I_SIDE,
    I_STOP,
    I_STOP_KIND,
    I_TARGET,
    I_TICK_SIZE,
    I_TICKS,
    I_TRADES,
    I_UNREALIZED,
    K_ENTRY,
    K_EXIT,
    R_NONE,
)


@entry
def emit(
    book: np.ndarray,
    events: np.ndarray,
    kind: int,
    i: int,
    side: int,
    qty: float,
    ts: int,
    reason: int,
) -> int:
    """Write an event row and return its index in the ring, or -1 when the ring is full.

    The caller fills the row's float columns with ``int_bits(value)``.
    """
    acct = book.shape[0] - 1
    k = get_int(book, acct, A_EVENTS)
    if k >= get_int(book, acct, A_EVENT_CAP):
        add_int(book, acct, A_EVENTS_LOST, 1)
        return -1
    set_int(book, acct, A_EVENTS, k + 1)
    events[k, E_KIND] = kind
    events[k, E_SEQ] = get_int(book, acct, A_SEQ)
    add_int(book, acct, A_SEQ, 1)
    events[k, E_INST] = i
    events[k, E_SIDE] = side
    events[k, E_QTY] = np.int64(qty)
    events[k, E_TS] = ts
    events[k, E_REASON] = reason
    events[k, E_ENTRY_TS] = 0
    return k


@entry
def apply_fill(
    book: np.ndarray,
    events: np.ndarray,
    i: int,
    side: int,
    qty: float,
    price_ticks: float,
    ts: int,
    reason: int,
) -> float:
    """Apply a fill of ``qty`` units at ``price_ticks`` to instrument ``i``; return its P&L.

    A fill on the position's side (or when flat) opens or adds at the average price and emits
    an entry event carrying the bracket levels; an opposite fill realizes
    ``side * (exit_price - entry_price) * qty * point_value``, emits an exit event with the
    trade's MAE/MFE, and a remainder beyond the position opens the other way with no bracket.
    """
    acct = book.shape[0] - 1
    tick_size = book[i, I_TICK_SIZE]
    pos_side = book[i, I_SIDE]
    pos_qty = book[i, I_QTY]
    pnl = 0.0
    if pos_side != FLAT and pos_side != side:
        closed = min(qty, pos_qty)
        entry_price = book[i, I_ENTRY_TICKS] * tick_size
        exit_price = price_ticks * tick_size
        pnl = pos_side * (exit_price - entry_price) * closed * book[i, I_POINT_VALUE]
        book[i, I_REALIZED] += pnl
        book[acct, A_REALIZED] += pnl
        book[acct, A_DAY_REALIZED] += pnl
        k = emit(book, events, K_EXIT, i, side, closed, ts, reason)
        if k >= 0:
            events[k, E_ENTRY_TS] = get_int(book, i, I_ENTRY_TS)
            events[k, E_PRICE] = int_bits(exit_price)
            events[k, E_ENTRY_PRICE] = int_bits(entry_price)
            events[k, E_PNL] = int_bits(pnl)
            events[k, E_MAE] = int_bits(book[i, I_MAE_TICKS] * tick_size)
            events[k, E_MFE] = int_bits(book[i, I_MFE_TICKS] * tick_size)
        qty -= closed
        pos_qty -= closed
        book[i, I_QTY] = pos_qty
        if pos_qty == 0.0:
            book[i, I_TRADES] += 1.0
            _close_position(book, i)
        if qty <= 0.0:
            return pnl
        pos_side = FLAT

    if pos_side == FLAT:
        set_int(book, i, I_ENTRY_TS, ts)
        book[i, I_ENTERED_AT] = book[i, I_TICKS]
        book[i, I_MAE_TICKS] = 0.0
        book[i, I_MFE_TICKS] = 0.0
        book[i, I_ENTRY_TICKS] = price_ticks
        if reason != R_NONE:
            # the remainder of a reversing order: an open position without a bracket
            book[i, I_STOP_KIND] = R_NONE
    else:
        total = pos_qty + qty
        book[i, I_ENTRY_TICKS] = (book[i, I_ENTRY_TICKS] * pos_qty + price_ticks * qty) / total
    book[i, I_SIDE] = side
    book[i, I_QTY] = pos_qty + qty
    k = emit(book, events, K_ENTRY, i, side, qty, ts, reason)
    if k >= 0:
        events[k, E_PRICE] = int_bits(price_ticks * tick_size)
        events[k, E_ENTRY_PRICE] = int_bits(book[i, I_ENTRY_TICKS] * tick_size)
        events[k, E_TARGET] = int_bits(book[i, I_TARGET] * tick_size)
        events[k, E_STOP] = int_bits(book[i, I_STOP] * tick_size)
    return pnl


@entry
def _close_position(book: np.ndarray, i: int) -> None:
    acct = book.shape[0] - 1
    book[i, I_SIDE] = FLAT
    book[i, I_QTY] = 0.0
    book[i, I_TARGET] = 0.0
    book[i, I_STOP] = 0.0
    book[i, I_STOP_KIND] = R_NONE
    book[i, I_ENTRY_TICKS] = 0.0
    book[i, I_UNREALIZED] = 0.0
    # re-add from scratch so the running sum does not drift over a long run
    n = get_int(book, acct, A_N_INST)
    total = 0.0
    for j in range(n):
        total += book[j, I_UNREALIZED]
    book[acct, A_UNREALIZED] = total


@kernel
def mark_to_market(book: np.ndarray, i: int) -> int:
    """Mark instrument ``i`` at its LTP and update equity, peak and drawdown.

    Return G_DAILY_LOSS or G_MAX_LOSS when this mark breaches a loss limit that has not
    halted entries yet, G_PROFIT_TARGET when the realized P&L reaches the profit target while
    nothing halts entries, else G_OK. The day's P&L is its realized plus all unrealized P&L. The
    maximum loss is breached by a drawdown beyond the limit (intraday trailing), or by equity at
    or below the account's floor (end-of-day trailing, static).
    """
    acct = book.shape[0] - 1
    # no branch on whether a position is open: flat rows hold side, qty and entry 0, so the
    # same expression gives 0 (see check_bracket for why)
    tick_size = book[i, I_TICK_SIZE]
    entry_price = book[i, I_ENTRY_TICKS] * tick_size
    mark_price = book[i, I_LTP_TICKS] * tick_size
    unrealized = book[i, I_SIDE] * (mark_price - entry_price) * book[i, I_QTY]
    unrealized *= book[i, I_POINT_VALUE]
    book[acct, A_UNREALIZED] += unrealized - book[i, I_UNREALIZED]
    book[i, I_UNREALIZED] = unrealized

    equity = book[acct, A_REALIZED] + book[acct, A_UNREALIZED]
    book[acct, A_EQUITY] = equity
    if equity > book[acct, A_PEAK]:
        book[acct, A_PEAK] = equity
    drawdown = book[acct, A_PEAK] - equity
    book[acct, A_DRAWDOWN] = drawdown
    if drawdown > book[acct, A_MAX_DRAWDOWN]:
        book[acct, A_MAX_DRAWDOWN] = drawdown
    day_pnl = book[acct, A_DAY_REALIZED] + book[acct, A_UNREALIZED]
    book[acct, A_DAY_PNL] = day_pnl

    if day_pnl <= -book[acct, A_DAILY_LOSS_LIMIT] and get_int(book, acct, A_DAY_HALT) == G_OK:
        return G_DAILY_LOSS
    # both rules, no branch on which one applies: the other one's limit is out of reach
    breached = (drawdown > book[acct, A_TRAIL_LIMIT]) | (equity <= book[acct, A_FLOOR])
    if breached and get_int(book, acct, A_HALT) != G_MAX_LOSS:
        return G_MAX_LOSS
    if book[acct, A_REALIZED] >= book[acct, A_PROFIT_TARGET] and get_int(book, acct, A_HALT) == 0:
        return G_PROFIT_TARGET
    return G_OK
