"""Indicator kernels: tick EMAs and their crossover, Wilder ATR and RSI on closed bars.

No fastmath: these decide signals and must agree bit for bit with ``tests/reference.py``.
"""

import numpy as np

from kernels.jit import kernel
from kernels.layout import (
    I_ALPHA_FAST,
    I_ALPHA_SLOW,
    I_ATR,
    I_ATR_PERIOD,
    I_ATR_SUM,
    I_BARS,
    I_DIFF,
    I_EMA_FAST,
    I_EMA_SLOW,
    I_LAST_CLOSE,
    I_LAST_HIGH,
    I_LAST_LOW,
    I_PREV_BAR_CLOSE,
    I_PREV_DIFF,
    I_RSI,
    I_RSI_GAIN,
    I_RSI_LOSS,
    I_RSI_PERIOD,
    I_SIGNAL,
    I_SLOW,
    I_TICKS,
    LONG,
    SHORT,
)


@kernel
def update_ema(book: np.ndarray, i: int, price: float) -> None:
    """Update instrument ``i``'s fast and slow EMAs and their difference with ``price``.

    The first tick seeds both EMAs with the price; the previous difference is kept for the
    crossover test.
    """
    if book[i, I_TICKS] == 1.0:
        ema_fast = price
        ema_slow = price
    else:
        alpha_fast = book[i, I_ALPHA_FAST]
        alpha_slow = book[i, I_ALPHA_SLOW]
        ema_fast = alpha_fast * price + (1.0 - alpha_fast) * book[i, I_EMA_FAST]
        ema_slow = alpha_slow * price + (1.0 - alpha_slow) * book[i, I_EMA_SLOW]
    book[i, I_EMA_FAST] = ema_fast
    book[i, I_EMA_SLOW] = ema_slow
    book[i, I_PREV_DIFF] = book[i, I_DIFF]
    book[i, I_DIFF] = ema_fast - ema_slow


@kernel
def detect_crossover(book: np.ndarray, i: int) -> int:
    """Return +1 when the fast EMA crossed above the slow one on this tick, -1 below, else 0.

    Signals wait until the instrument has seen more ticks than the slow period.
    """
    signal = 0
    if book[i, I_TICKS] > book[i, I_SLOW]:
        prev_diff = book[i, I_PREV_DIFF]
        diff = book[i, I_DIFF]
        if prev_diff <= 0.0 < diff:
            signal = LONG
        elif prev_diff >= 0.0 > diff:
            signal = SHORT
    book[i, I_SIGNAL] = signal
    return signal


@kernel
def update_atr(book: np.ndarray, i: int) -> float:
    """Fold the bar that just closed into instrument ``i``'s Wilder ATR and return it.

    Matches TA-Lib's ATR: the first value is the mean of the first ``period`` true ranges
    (from the second bar on), then ``atr = (atr * (period - 1) + tr) / period``. NaN until warm.
    """
    bars = book[i, I_BARS]
    if bars < 2.0:
        book[i, I_ATR] = np.nan
        return np.nan
    high = book[i, I_LAST_HIGH]
    low = book[i, I_LAST_LOW]
    prev_close = book[i, I_PREV_BAR_CLOSE]
    true_range = max(high - low, abs(high - prev_close), abs(low - prev_close))
    period = book[i, I_ATR_PERIOD]
    if bars <= period + 1.0:
        book[i, I_ATR_SUM] += true_range
        if bars == period + 1.0:
            book[i, I_ATR] = book[i, I_ATR_SUM] / period
        else:
            book[i, I_ATR] = np.nan
    else:
        book[i, I_ATR] = (book[i, I_ATR] * (period - 1.0) + true_range) / period
    return book[i, I_ATR]


@kernel
def update_rsi(book: np.ndarray, i: int) -> float:
    """Fold the bar that just closed into instrument ``i``'s Wilder RSI and return it.

    Matches TA-Lib's RSI: average gain and loss over the first ``period`` close-to-close
    changes, then Wilder smoothing; 0 when there was neither gain nor loss. NaN until warm.
    """
    bars = book[i, I_BARS]
    if bars < 2.0:
        book[i, I_RSI] = np.nan
        return np.nan
    change = book[i, I_LAST_CLOSE] - book[i, I_PREV_BAR_CLOSE]
    gain = change if change > 0.0 else 0.0
    loss = -change if change < 0.0 else 0.0
    period = book[i, I_RSI_PERIOD]
    if bars <= period + 1.0:
        book[i, I_RSI_GAIN] += gain
        book[i, I_RSI_LOSS] += loss
        if bars < period + 1.0:
            book[i, I_RSI] = np.nan
            return np.nan
        book[i, I_RSI_GAIN] /= period
        book[i, I_RSI_LOSS] /= period
    else:
        book[i, I_RSI_GAIN] = (book[i, I_RSI_GAIN] * (period - 1.0) + gain) / period
        book[i, I_RSI_LOSS] = (book[i, I_RSI_LOSS] * (period - 1.0) + loss) / period
    total = book[i, I_RSI_GAIN] + book[i, I_RSI_LOSS]
    book[i, I_RSI] = 100.0 * book[i, I_RSI_GAIN] / total if total != 0.0 else 0.0
    return book[i, I_RSI]
