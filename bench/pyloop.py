"""The fastest honest pure-Python version of the single-instrument strategy.

``tests/reference.py`` is written for clarity; this is written for speed, so the benchmarks can
say how much the Numba kernels gain over the best a careful Python programmer would write, not
over a deliberately slow oracle. Same pinned semantics (EMA crossover, target fills at the
target, stop-market fills at the tick), minus everything a tight loop would leave out: no
validation, no trailing stop, no breakeven, no slippage, lot size and point value of 1.
"""

from __future__ import annotations

from itertools import islice

import numpy as np


def run_single(
    prices: list[float] | np.ndarray,
    tick_size: float,
    fast: int,
    slow: int,
    quantity: int,
    target_ticks: int,
    stop_ticks: int,
) -> tuple[int, float]:
    """Run EMA crossover with a fixed target/stop bracket over one instrument's prices.

    Parameters
    ----------
    prices
        Tick prices in arrival order; all assumed valid (finite, positive).
    tick_size
        Price grid step; levels are compared in whole ticks.
    fast, slow
        EMA lengths, ``fast < slow``.
    quantity
        Units per trade.
    target_ticks, stop_ticks
        Bracket distances from the entry, in ticks.

    Returns
    -------
    tuple[int, float]
        Number of closed trades and realized pnl (summed in closing order), identical to
        ``tests.reference.simulate`` with lot size 1, point value 1 and no trail, breakeven or
        slippage.
    """
    if isinstance(prices, np.ndarray):
        # Iterating a list of Python floats is several times faster than numpy scalars.
        prices = prices.tolist()
    n = len(prices)
    if n == 0:
        return 0, 0.0

    af = 2.0 / (fast + 1)
    bf = 1.0 - af
    a_s = 2.0 / (slow + 1)
    bs = 1.0 - a_s
    ema_f = ema_s = prices[0]
    rnd = round

    # Warm-up: no signal can fire for k <= slow, hence no position either; only the EMAs move.
    warm = min(slow, n)
    for price in islice(prices, 1, warm):
        ema_f = af * price + bf * ema_f
        ema_s = a_s * price + bs * ema_s
    prev = ema_f - ema_s  # 0.0 when only the seed tick was seen, as the spec starts it

    trades = 0
    pnl = 0.0
    side = 0  # 0 flat, +1 long, -1 short
    entry = target = stop = 0
    for price in islice(prices, warm, None):
        ema_f = af * price + bf * ema_f
        ema_s = a_s * price + bs * ema_s
        diff = ema_f - ema_s
        if side:
            p = rnd(price / tick_size)
            # Exits inlined per side; a short's pnl is the negated long expression, which is
            # bit-identical to the oracle's side * (...) because negation is exact.
            if side > 0:
                if p >= target:
                    pnl += (target * tick_size - entry * tick_size) * quantity
                    trades += 1
                    side = 0
                elif p <= stop:
                    pnl += (p * tick_size - entry * tick_size) * quantity
                    trades += 1
                    side = 0
            elif p <= target:
                pnl += -(target * tick_size - entry * tick_size) * quantity
                trades += 1
                side = 0
            elif p >= stop:
                pnl += -(p * tick_size - entry * tick_size) * quantity
                trades += 1
                side = 0
        if not side:
            if prev <= 0 < diff:
                side = 1
            elif prev >= 0 > diff:
                side = -1
            if side:
                entry = rnd(price / tick_size)
                target = entry + side * target_ticks
                stop = entry - side * stop_ticks
        prev = diff
    return trades, pnl
