"""Order kernels: the risk gate, sizing, bracket levels and the bracket exit check."""

import numpy as np

from kernels.jit import add_int, entry, get_int, kernel, set_int
from kernels.layout import (
    A_DAY_HALT,
    A_HALT,
    A_MAX_CONTRACTS,
    A_MAX_ORDERS_PER_SEC,
    A_N_INST,
    A_PAUSED,
    A_RATE_COUNT,
    A_RATE_WINDOW,
    A_SESSION_ROW,
    G_DAILY_LOSS,
    G_MAX_CONTRACTS,
    G_MAX_POSITION,
    G_OK,
    G_OUTSIDE_SESSION,
    G_PAUSED,
    G_RATE_LIMIT,
    G_ZERO_SIZE,
    I_ATR,
    I_BREAKEVEN_TICKS,
    I_ENTERED_AT,
    I_ENTRY_TICKS,
    I_EXIT_TICKS,
    I_LOT_SIZE,
    I_LTP_TICKS,
    I_MAE_TICKS,
    I_MAX_POSITION,
    I_MFE_TICKS,
    I_POINT_VALUE,
    I_QTY,
    I_QUANTITY,
    I_RISK_PER_TRADE,
    I_SIDE,
    I_STOP,
    I_STOP_ATR,
    I_STOP_KIND,
    I_STOP_TICKS,
    I_TARGET,
    I_TARGET_ATR,
    I_TARGET_TICKS,
    I_TICK_SIZE,
    I_TICKS,
    I_TRAIL_TICKS,
    R_BREAKEVEN,
    R_NONE,
    R_STOP,
    R_TARGET,
    R_TRAIL,
    S_CLOSE,
    S_FLATTEN,
    S_OPEN,
)

#: nanoseconds per second, the order-rate window
SECOND_NS = 1_000_000_000


@entry
def risk_gate(book: np.ndarray, i: int, qty: float, ts: int) -> int:
    """Return G_OK when an entry of ``qty`` units on instrument ``i`` may go, else why not.

    Checked in order: a halt (kill, max loss, profit target), the day's loss limit, pause, the
    session (entries from open until the earlier of flatten_at and close), size, max position,
    max contracts across all instruments, and the orders sent in the current second of tick
    time.
    """
    acct = book.shape[0] - 1
    if get_int(book, acct, A_HALT) != G_OK:
        return get_int(book, acct, A_HALT)
    if get_int(book, acct, A_DAY_HALT) != G_OK:
        return G_DAILY_LOSS
    if get_int(book, acct, A_PAUSED) != 0:
        return G_PAUSED
    row = get_int(book, acct, A_SESSION_ROW)
    if (
        ts < get_int(book, row, S_OPEN)
        or ts >= get_int(book, row, S_FLATTEN)
        or ts >= get_int(book, row, S_CLOSE)
    ):
        return G_OUTSIDE_SESSION
    if qty <= 0.0:
        return G_ZERO_SIZE
    lot_size = book[i, I_LOT_SIZE]
    if (book[i, I_QTY] + qty) / lot_size > book[i, I_MAX_POSITION]:
        return G_MAX_POSITION
    if book[acct, A_MAX_CONTRACTS] < np.inf:
        lots = qty / lot_size
        for k in range(get_int(book, acct, A_N_INST)):
            lots += book[k, I_QTY] / book[k, I_LOT_SIZE]
        if lots > book[acct, A_MAX_CONTRACTS]:
            return G_MAX_CONTRACTS
    in_window = ts // SECOND_NS == get_int(book, acct, A_RATE_WINDOW)
    if in_window and get_int(book, acct, A_RATE_COUNT) >= book[acct, A_MAX_ORDERS_PER_SEC]:
        return G_RATE_LIMIT
    return G_OK


@entry
def count_order(book: np.ndarray, ts: int) -> None:
    """Count one order sent at tick time ``ts`` against max_orders_per_second."""
    acct = book.shape[0] - 1
    window = ts // SECOND_NS
    if window != get_int(book, acct, A_RATE_WINDOW):
        set_int(book, acct, A_RATE_WINDOW, window)
        set_int(book, acct, A_RATE_COUNT, 0)
    add_int(book, acct, A_RATE_COUNT, 1)


@entry
def _atr_distance(book: np.ndarray, i: int, multiple: float, ticks: float) -> float:
    atr = book[i, I_ATR]
    if multiple > 0.0 and np.isfinite(atr):
        return max(1.0, np.rint(multiple * atr / book[i, I_TICK_SIZE]))
    return ticks


@entry
def size_order(book: np.ndarray, i: int) -> float:
    """Return the units of the next entry on instrument ``i``.

    Fixed ``quantity`` lots, or with ``risk_per_trade`` set, the whole lots whose loss at the
    stop stays within it, capped at max_position. A multiple of the lot size; 0 = too small.
    """
    lot_size = book[i, I_LOT_SIZE]
    risk = book[i, I_RISK_PER_TRADE]
    if risk <= 0.0:
        return book[i, I_QUANTITY] * lot_size
    stop_ticks = _atr_distance(book, i, book[i, I_STOP_ATR], book[i, I_STOP_TICKS])
    loss_per_lot = stop_ticks * book[i, I_TICK_SIZE] * book[i, I_POINT_VALUE] * lot_size
    lots = min(np.floor(risk / loss_per_lot), book[i, I_MAX_POSITION])
    return lots * lot_size


@entry
def bracket_levels(book: np.ndarray, i: int, side: int, entry_ticks: float) -> None:
    """Set instrument ``i``'s bracket target and stop, in ticks, around ``entry_ticks``.

    Distances are the configured ticks, or ATR multiples once the ATR is warm.
    """
    target = _atr_distance(book, i, book[i, I_TARGET_ATR], book[i, I_TARGET_TICKS])
    stop = _atr_distance(book, i, book[i, I_STOP_ATR], book[i, I_STOP_TICKS])
    book[i, I_TARGET] = entry_ticks + side * target
    book[i, I_STOP] = entry_ticks - side * stop
    book[i, I_STOP_KIND] = R_STOP


@kernel
def check_bracket(book: np.ndarray, i: int) -> int:
    """Check instrument ``i``'s open bracket against the LTP; return the exit reason or R_NONE.

    A long exits at the target when the tick reaches it (a limit), at the tick's own price
    when it reaches the stop (stop-market: a gap fills worse); a short mirrored. The exit price
    goes to I_EXIT_TICKS. Without an exit the stop trails, then moves to breakeven. Nothing
    happens on the entry tick itself.
    """
    side = book[i, I_SIDE]
    kind = book[i, I_STOP_KIND]
    # Conditions are combined with & and chosen with selects, not branches: with instruments
    # interleaved, whether this one holds a position is a coin flip the CPU cannot predict.
    # Flat instruments have no bracket (kind R_NONE), so they fall through unchanged.
    active = (kind != R_NONE) & (book[i, I_ENTERED_AT] != book[i, I_TICKS])
    ltp_ticks = book[i, I_LTP_TICKS]
    entry = book[i, I_ENTRY_TICKS]
    excursion = side * (ltp_ticks - entry) if active else 0.0
    book[i, I_MFE_TICKS] = max(book[i, I_MFE_TICKS], excursion)
    book[i, I_MAE_TICKS] = min(book[i, I_MAE_TICKS], excursion)

    target = book[i, I_TARGET]
    stop = book[i, I_STOP]
    hit_target = active & (side * (ltp_ticks - target) >= 0.0)
    hit_stop = active & (side * (stop - ltp_ticks) >= 0.0)
    if hit_target | hit_stop:
        if hit_target:
            book[i, I_EXIT_TICKS] = target
            return R_TARGET
        book[i, I_EXIT_TICKS] = ltp_ticks
        return int(kind)

    trail = book[i, I_TRAIL_TICKS]
    candidate = ltp_ticks - side * trail
    trails = active & (trail > 0.0) & (side * (candidate - stop) > 0.0)
    stop = candidate if trails else stop
    kind = R_TRAIL if trails else kind
    breakeven = book[i, I_BREAKEVEN_TICKS]
    evens = active & (breakeven > 0.0) & (excursion >= breakeven) & (side * (entry - stop) > 0.0)
    book[i, I_STOP] = entry if evens else stop
    book[i, I_STOP_KIND] = R_BREAKEVEN if evens else kind
    return R_NONE
