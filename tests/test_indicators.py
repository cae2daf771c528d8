"""Wilder ATR and RSI on closed bars against TA-Lib, bars rebuilt from the tick stream here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import talib
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kernels import on_tick
from kernels.layout import I_ATR, I_BARS, I_RSI
from tests.conftest import SECOND, T0, make_state

BAR_SECONDS = 2


def tick_stream(seed: int, n: int, flat_bias: bool) -> list[tuple[float, float, int]]:
    """A random walk on a 0.25 grid: several ticks per bar, equal timestamps, empty bars, and
    the odd bad tick (which must not reach the bars)."""
    rng = np.random.default_rng(seed)
    steps = [-2, -1, 0, 0, 0, 0, 1, 2] if flat_bias else [-3, -2, -1, 0, 1, 2, 3]
    grid, ts = 400, T0
    rows = []
    for _ in range(n):
        grid = max(grid + int(rng.choice(steps)), 1)
        ts += int(rng.choice([0, SECOND // 4, SECOND // 2, SECOND, 5 * SECOND]))
        rows.append((grid * 0.25, float(rng.integers(1, 10)), ts))
        if rng.random() < 0.02:
            rows.append((math.nan if rng.random() < 0.5 else -1.0, 1.0, ts))
    return rows


def closed_bars(rows, bar_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """High, low and close of every bar that a later tick closed, by bucket ts // bar_ns."""
    buckets: dict[int, list[float]] = {}
    for price, _, ts in rows:
        if math.isfinite(price) and price > 0:
            buckets.setdefault(ts // bar_ns, []).append(price)
    keys = sorted(buckets)[:-1]  # the last bar is still open
    high = np.array([max(buckets[k]) for k in keys])
    low = np.array([min(buckets[k]) for k in keys])
    close = np.array([buckets[k][-1] for k in keys])
    return high, low, close


def engine_values(rows, atr_period: int, rsi_period: int) -> tuple[np.ndarray, np.ndarray]:
    """I_ATR and I_RSI read right after each bar close, driving on_tick one tick at a time."""
    state = make_state(
        strategy={"bar_seconds": BAR_SECONDS, "atr_period": atr_period, "rsi_period": rsi_period}
    )
    state.ensure_calendar(rows[0][2], rows[-1][2])
    book, events = state.book, state.events
    atr, rsi = [], []
    bars = 0.0
    for price, size, ts in rows:
        on_tick(book, events, 0, price, size, ts)
        if book[0, I_BARS] != bars:
            assert book[0, I_BARS] == bars + 1.0
            bars = book[0, I_BARS]
            atr.append(book[0, I_ATR])
            rsi.append(book[0, I_RSI])
    return np.array(atr), np.array(rsi)


def assert_matches_talib(got: np.ndarray, want: np.ndarray, period: int) -> None:
    assert len(got) == len(want)
    assert np.isnan(got[:period]).all()
    assert not np.isnan(got[period:]).any()
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[period:], want[period:], rtol=0, atol=1e-9)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    atr_period=st.integers(1, 20),
    rsi_period=st.integers(2, 20),  # TA-Lib's RSI takes no period 1
    flat_bias=st.booleans(),
)
@example(seed=7, atr_period=2, rsi_period=2, flat_bias=False)
@example(seed=8, atr_period=5, rsi_period=5, flat_bias=True)
@example(seed=9, atr_period=14, rsi_period=14, flat_bias=False)
def test_atr_and_rsi_match_talib(seed, atr_period, rsi_period, flat_bias):
    rows = tick_stream(seed, 600, flat_bias)
    high, low, close = closed_bars(rows, BAR_SECONDS * SECOND)
    assert len(close) > 2 * max(atr_period, rsi_period)  # warm, with room after
    atr, rsi = engine_values(rows, atr_period, rsi_period)
    assert_matches_talib(atr, talib.ATR(high, low, close, timeperiod=atr_period), atr_period)
    assert_matches_talib(rsi, talib.RSI(close, timeperiod=rsi_period), rsi_period)


@pytest.mark.parametrize("period", [2, 5, 14])
def test_rsi_of_flat_bars_matches_talib(period):
    # no gain and no loss during warm-up: the 0/0 case, then a move
    rows = [(100.0, 1.0, T0 + k * SECOND) for k in range(2 * BAR_SECONDS * (period + 3))]
    rows += [
        (100.0 + 0.25 * k, 1.0, rows[-1][2] + (k + 1) * BAR_SECONDS * SECOND) for k in range(6)
    ]
    _, _, close = closed_bars(rows, BAR_SECONDS * SECOND)
    _, rsi = engine_values(rows, 14, period)
    assert_matches_talib(rsi, talib.RSI(close, timeperiod=period), period)
    assert rsi[period] == 0.0
    assert rsi[-1] > 0.0


def test_indicators_are_nan_until_the_first_bar_closes():
    state = make_state(strategy={"bar_seconds": BAR_SECONDS, "atr_period": 1, "rsi_period": 1})
    state.ensure_calendar(T0, T0 + 60 * SECOND)
    for k in range(BAR_SECONDS * 4):
        on_tick(state.book, state.events, 0, 100.0 + 0.25 * k, 1.0, T0 + k * SECOND // 2)
        assert math.isnan(state.book[0, I_ATR])
        assert math.isnan(state.book[0, I_RSI])
    assert state.book[0, I_BARS] == 1.0
    # with period 1 the second closed bar gives the first value
    on_tick(state.book, state.events, 0, 101.0, 1.0, T0 + 4 * SECOND)
    assert state.book[0, I_BARS] == 2.0
    assert not math.isnan(state.book[0, I_ATR])
    assert not math.isnan(state.book[0, I_RSI])
