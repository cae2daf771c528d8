"""Market kernels: validate and store a tick, build time bars."""

import numpy as np

from kernels.jit import add_int, get_int, kernel, set_int
from kernels.layout import (
    A_DAY_HALT,
    A_DAY_REALIZED,
    A_EOD_HIGH,
    A_FLOOR,
    A_FLOOR_LOCK,
    A_MAX_LOSS_LIMIT,
    A_MAX_LOSS_MODE,
    A_MAX_TS,
    A_N_INST,
    A_PRICE_BAND,
    A_REALIZED,
    A_SESSION_END,
    A_SESSION_ROW,
    A_TICKS,
    I_BAR_CLOSE,
    I_BAR_END,
    I_BAR_HIGH,
    I_BAR_LOW,
    I_BAR_NS,
    I_BAR_OPEN,
    I_BAR_VOLUME,
    I_BARS,
    I_DAY_HIGH,
    I_DAY_LOW,
    I_DAY_START,
    I_DAY_TURNOVER,
    I_DAY_VOLUME,
    I_LAST_CLOSE,
    I_LAST_HIGH,
    I_LAST_LOW,
    I_LAST_TS,
    I_LTP,
    I_LTP_TICKS,
    I_PREV_BAR_CLOSE,
    I_REF_PRICE,
    I_TICK_SIZE,
    I_TICKS,
    ML_EOD_TRAILING,
    REJECT_COLUMNS,
    S_DAY_END,
    S_DAY_START,
)

#: apply_tick return codes; code - 1 indexes layout.REJECT_REASONS
TICK_OK = 0
TICK_UNKNOWN = 1
TICK_NON_FINITE = 2
TICK_NON_POSITIVE = 3
TICK_BAD_SIZE = 4
TICK_STALE = 5
TICK_FUTURE = 6
TICK_PRICE_BAND = 7


@kernel
def advance_session(book: np.ndarray, ts: int) -> bool:
    """Move the account to the session day holding ``ts``; return True when the day changed.

    A new day clears the day's realized P&L and lifts the daily-loss halt.
    The calendar rows are filled by the driver ahead of the ticks; a tick beyond the last row
    stays on the last day, whose session is then closed to entries.
    """
    acct = book.shape[0] - 1
    row = get_int(book, acct, A_SESSION_ROW)
    end = get_int(book, acct, A_SESSION_END)
    if ts < get_int(book, row, S_DAY_END) or row + 1 >= end:
        return False
    while row + 1 < end and ts >= get_int(book, row, S_DAY_END):
        row += 1
    set_int(book, acct, A_SESSION_ROW, row)
    end_day(book)
    return True


@kernel
def end_day(book: np.ndarray) -> None:
    """Close the account's trading day: clear the day's P&L and daily-loss halt, and move the
    end-of-day trailing floor up to the highest end-of-day balance less the limit."""
    acct = book.shape[0] - 1
    set_int(book, acct, A_DAY_HALT, 0)
    book[acct, A_DAY_REALIZED] = 0.0
    if get_int(book, acct, A_MAX_LOSS_MODE) != ML_EOD_TRAILING:
        return
    high = max(book[acct, A_EOD_HIGH], book[acct, A_REALIZED])
    book[acct, A_EOD_HIGH] = high
    floor = high - book[acct, A_MAX_LOSS_LIMIT]
    if get_int(book, acct, A_FLOOR_LOCK) != 0 and floor > 0.0:
        floor = 0.0
    book[acct, A_FLOOR] = floor


@kernel
def tick_code(book: np.ndarray, i: int, price: float, size: float, ts: int) -> int:
    """Return TICK_OK, or the first rule instrument ``i``'s tick breaks; count nothing.

    The rules, in order: a known instrument, a finite and positive price, a finite size >= 0,
    a time before the account's ``A_MAX_TS`` and not before the instrument's last tick, and a
    price within the band around the reference: the last accepted price, or before the first
    one the configured or restored reference (no reference, no band).
    """
    acct = book.shape[0] - 1
    if i < 0 or i >= get_int(book, acct, A_N_INST):
        return TICK_UNKNOWN
    if not np.isfinite(price):
        return TICK_NON_FINITE
    if price <= 0.0:
        return TICK_NON_POSITIVE
    if not (size >= 0.0 and size < np.inf):
        return TICK_BAD_SIZE
    if ts >= get_int(book, acct, A_MAX_TS):
        return TICK_FUTURE
    if ts < get_int(book, i, I_LAST_TS):
        return TICK_STALE
    reference = book[i, I_LTP] if book[i, I_TICKS] > 0.0 else book[i, I_REF_PRICE]
    if reference > 0.0 and abs(price - reference) > book[acct, A_PRICE_BAND] * reference:
        return TICK_PRICE_BAND
    return TICK_OK


@kernel
def apply_tick(book: np.ndarray, i: int, price: float, size: float, ts: int) -> int:
    """Validate one tick and store it as instrument ``i``'s last traded price.

    Return TICK_OK, or the reason the tick was refused (see ``tick_code``); a refused tick
    changes nothing but its reject counter. Updates the LTP, its tick-grid value, the tick
    count and the session day's high, low, volume and turnover.
    """
    acct = book.shape[0] - 1
    code = tick_code(book, i, price, size, ts)
    if code != TICK_OK:
        add_int(book, acct, REJECT_COLUMNS[code - 1], 1)
        return code

    advance_session(book, ts)
    set_int(book, i, I_LAST_TS, ts)
    add_int(book, acct, A_TICKS, 1)
    book[i, I_LTP] = price
    book[i, I_LTP_TICKS] = np.rint(price / book[i, I_TICK_SIZE])
    book[i, I_TICKS] += 1.0

    day_start = get_int(book, get_int(book, acct, A_SESSION_ROW), S_DAY_START)
    if get_int(book, i, I_DAY_START) != day_start:
        set_int(book, i, I_DAY_START, day_start)
        book[i, I_DAY_HIGH] = price
        book[i, I_DAY_LOW] = price
        book[i, I_DAY_VOLUME] = 0.0
        book[i, I_DAY_TURNOVER] = 0.0
    book[i, I_DAY_HIGH] = max(book[i, I_DAY_HIGH], price)
    book[i, I_DAY_LOW] = min(book[i, I_DAY_LOW], price)
    book[i, I_DAY_VOLUME] += size
    book[i, I_DAY_TURNOVER] += price * size
    return TICK_OK


@kernel
def update_bar(book: np.ndarray, i: int, price: float, size: float, ts: int) -> bool:
    """Add a tick to instrument ``i``'s current time bar; return True when a bar closed.

    Bars are aligned to multiples of the bar length since the epoch. The first tick at or past
    the bar's end closes it into the last-bar columns and opens the next bar; intervals with no
    ticks make no bars.
    """
    if ts < get_int(book, i, I_BAR_END):
        book[i, I_BAR_HIGH] = max(book[i, I_BAR_HIGH], price)
        book[i, I_BAR_LOW] = min(book[i, I_BAR_LOW], price)
        book[i, I_BAR_CLOSE] = price
        book[i, I_BAR_VOLUME] += size
        return False

    closed = get_int(book, i, I_BAR_END) != 0
    if closed:
        book[i, I_PREV_BAR_CLOSE] = book[i, I_LAST_CLOSE]
        book[i, I_LAST_HIGH] = book[i, I_BAR_HIGH]
        book[i, I_LAST_LOW] = book[i, I_BAR_LOW]
        book[i, I_LAST_CLOSE] = book[i, I_BAR_CLOSE]
        book[i, I_BARS] += 1.0
    bar_ns = get_int(book, i, I_BAR_NS)
    set_int(book, i, I_BAR_END, (ts // bar_ns + 1) * bar_ns)
    book[i, I_BAR_OPEN] = price
    book[i, I_BAR_HIGH] = price
    book[i, I_BAR_LOW] = price
    book[i, I_BAR_CLOSE] = price
    book[i, I_BAR_VOLUME] = size
    return closed
