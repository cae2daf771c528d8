"""Unit tests of the twelve kernels and the pipeline, called directly on a fresh State."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

import kernels
from engine.backtest import run_arrays
from engine.state import State
from kernels import (
    apply_fill,
    apply_tick,
    bracket_levels,
    check_bracket,
    detect_crossover,
    mark_to_market,
    on_tick,
    run_ticks,
    size_order,
    update_bar,
    update_ema,
)
from kernels.layout import (
    A_DAY_HALT,
    A_DAY_PNL,
    A_DAY_REALIZED,
    A_DRAWDOWN,
    A_EQUITY,
    A_EVENT_CAP,
    A_EVENTS,
    A_EVENTS_LOST,
    A_HALT,
    A_MAX_DRAWDOWN,
    A_N_INST,
    A_PEAK,
    A_REALIZED,
    A_SEQ,
    A_TICKS,
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
    I_ATR,
    I_BAR_CLOSE,
    I_BAR_END,
    I_BAR_HIGH,
    I_BAR_LOW,
    I_BAR_OPEN,
    I_BAR_VOLUME,
    I_BARS,
    I_DAY_HIGH,
    I_DAY_LOW,
    I_DAY_VOLUME,
    I_DIFF,
    I_EMA_FAST,
    I_EMA_SLOW,
    I_ENTRY_TICKS,
    I_ENTRY_TS,
    I_EXIT_TICKS,
    I_LAST_CLOSE,
    I_LAST_HIGH,
    I_LAST_LOW,
    I_LAST_TS,
    I_LTP,
    I_LTP_TICKS,
    I_MAE_TICKS,
    I_MFE_TICKS,
    I_PREV_DIFF,
    I_QTY,
    I_REALIZED,
    I_SIDE,
    I_SIGNAL,
    I_STOP,
    I_STOP_KIND,
    I_TARGET,
    I_TICKS,
    I_TRADES,
    I_UNREALIZED,
    K_ENTRY,
    K_EXIT,
    LONG,
    R_BREAKEVEN,
    R_MANUAL,
    R_NONE,
    R_STOP,
    R_TARGET,
    R_TRAIL,
    REJECT_COLUMNS,
    REJECT_REASONS,
    SHORT,
    TS_HORIZON,
)
from kernels.market import TICK_PRICE_BAND
from tests.conftest import (
    DAY,
    MINUTE,
    SECOND,
    T0,
    Ticks,
    local_ns,
    make_config,
    make_engine,
    make_state,
    tick_arrays,
)

PIPELINE_ORDER = (
    "apply_tick",
    "update_bar",
    "update_ema",
    "update_atr",
    "update_rsi",
    "detect_crossover",
    "risk_gate",
    "size_order",
    "bracket_levels",
    "check_bracket",
    "apply_fill",
    "mark_to_market",
)


def fresh(**sections) -> State:
    """A State whose calendar covers a week around T0, as Engine.process would leave it."""
    state = make_state(**sections)
    state.ensure_calendar(T0 - DAY, T0 + 7 * DAY)
    return state


def tick(state: State, price: float, ts: int, size: float = 1.0, i: int = 0) -> int:
    return apply_tick(state.book, i, float(price), float(size), int(ts))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact equality of float arrays, NaN included."""
    return np.array_equal(a.view(np.int64), b.view(np.int64))


def test_kernels_are_the_twelve_dispatchers_in_pipeline_order():
    assert len(kernels.KERNELS) == 12
    assert all(isinstance(k, CPUDispatcher) for k in kernels.KERNELS)
    assert tuple(k.py_func.__name__ for k in kernels.KERNELS) == PIPELINE_ORDER
    assert tuple(getattr(kernels, name) for name in PIPELINE_ORDER) == kernels.KERNELS


# -- apply_tick ------------------------------------------------------------------------------

NAN, INF = math.nan, math.inf
# from the last tick of the refusal test to int64's limit and to the horizon
INT64_MAX_DT = 2**63 - 1 - (T0 + 2 * SECOND)
HORIZON_DT = TS_HORIZON - (T0 + 2 * SECOND)


@pytest.mark.parametrize(
    ("i", "price", "size", "dt", "reason"),
    [
        (-1, 100.0, 1.0, 1, "unknown_symbol"),
        (2, 100.0, 1.0, 1, "unknown_symbol"),
        (2, NAN, -1.0, -1, "unknown_symbol"),
        (0, NAN, 1.0, 1, "non_finite"),
        (0, INF, 1.0, 1, "non_finite"),
        (0, -INF, 1.0, 1, "non_finite"),
        (0, NAN, NAN, -1, "non_finite"),
        (0, 0.0, 1.0, 1, "non_positive"),
        (0, -0.0, 1.0, 1, "non_positive"),
        (0, -5.0, 1.0, 1, "non_positive"),
        (0, 0.0, 1.0, -1, "non_positive"),
        (0, 100.0, NAN, 1, "bad_size"),
        (0, 100.0, INF, 1, "bad_size"),
        (0, 100.0, -1.0, 1, "bad_size"),
        (0, 100.0, -1.0, -1, "bad_size"),
        (0, 100.0, 1.0, -1, "stale_timestamp"),
        (1, 100.0, 1.0, -10 * SECOND, "stale_timestamp"),
        (0, 100.0, 1.0, INT64_MAX_DT, "future_timestamp"),
        (0, 100.0, 1.0, HORIZON_DT, "future_timestamp"),
        (0, NAN, 1.0, INT64_MAX_DT, "non_finite"),
        (0, 123456789012345678901234567890.0, 1.0, 1, "price_band"),
        (0, 79.5, 1.0, 1, "price_band"),  # 20 % below the last 99.5 is 79.6
        (0, 119.5, 1.0, 1, "price_band"),
        (0, 1e30, 1.0, -1, "stale_timestamp"),
    ],
)
def test_apply_tick_refuses_a_bad_tick_and_changes_only_its_counter(i, price, size, dt, reason):
    # the last accepted tick of AAA is 99.5 at T0 + 2 s
    instruments = [{"symbol": "AAA", "tick_size": 0.25}, {"symbol": "BBB", "tick_size": 0.25}]
    state = fresh(instruments=instruments)
    for k, p in enumerate((100.0, 101.0, 99.5)):
        assert tick(state, p, T0 + k * SECOND, i=0) == 0
        assert tick(state, p + 10.0, T0 + k * SECOND, i=1) == 0
    last_ts = T0 + 2 * SECOND
    book_before = state.book.copy()
    events_before = state.events.copy()

    code = tick(state, price, last_ts + dt, size, i=i)

    assert code == REJECT_REASONS.index(reason) + 1
    assert state.rejected_ticks() == {reason: 1}
    expected = book_before.view(np.int64)
    expected[state.acct, REJECT_COLUMNS[REJECT_REASONS.index(reason)]] += 1
    assert np.array_equal(state.ints, expected)
    assert np.array_equal(state.events, events_before)


@pytest.mark.parametrize(
    ("price", "size", "dt"),
    [(100.0, 0.0, 1), (100.0, 1.0, 0), (1e-9, 1.0, 1), (1e12, 1e12, DAY)],
    ids=["zero-size", "same-ts", "tiny-price", "huge"],
)
def test_apply_tick_accepts_edge_ticks(price, size, dt):
    state = fresh(risk={"price_band_pct": None})
    assert tick(state, 99.0, T0) == 0
    assert tick(state, price, T0 + dt, size) == 0
    assert state.rejected_ticks() == {}
    assert state.account_int(A_TICKS) == 2
    assert state.book[0, I_TICKS] == 2.0
    assert state.book[0, I_LTP] == price
    assert state.book[0, I_LTP_TICKS] == np.rint(price / 0.25)
    assert state.ints[0, I_LAST_TS] == T0 + dt


def test_the_band_follows_the_last_accepted_price_and_is_inclusive():
    state = fresh(risk={"price_band_pct": 10.0})
    assert tick(state, 100.0, T0) == 0
    # 10 % either way of 100 is accepted, just beyond is not; each accepted tick moves the band
    assert tick(state, 110.0, T0 + 1) == 0
    assert tick(state, 121.5, T0 + 2) == TICK_PRICE_BAND
    assert tick(state, 121.0, T0 + 3) == 0
    assert tick(state, 108.0, T0 + 4) == TICK_PRICE_BAND
    assert state.book[0, I_LTP] == 121.0
    assert state.rejected_ticks() == {"price_band": 2}


def test_the_first_tick_is_checked_against_the_reference_price_when_one_is_set():
    instruments = [{"symbol": "AAA", "tick_size": 0.25, "reference_price": 22000.0}]
    state = fresh(instruments=instruments)
    assert tick(state, 123456789012345678901234567890.0, T0) == TICK_PRICE_BAND
    assert tick(state, 220.0, T0 + 1) == TICK_PRICE_BAND
    assert state.book[0, I_TICKS] == 0.0
    assert tick(state, 21000.0, T0 + 2) == 0
    assert tick(state, 17000.0, T0 + 3) == 0  # from now on the band follows the ticks
    # with no reference the first tick is taken as it is
    assert tick(fresh(), 1e29, T0) == 0


def test_apply_tick_rounds_the_ltp_to_the_tick_grid():
    state = fresh(instruments=[{"symbol": "AAA", "tick_size": 0.05}], risk={"price_band_pct": None})
    for k, (price, grid) in enumerate([(22150.25, 443005), (100.07, 2001), (100.08, 2002)]):
        tick(state, price, T0 + k)
        assert state.book[0, I_LTP_TICKS] == grid


def test_day_statistics_follow_the_session_day_and_reset_at_local_midnight():
    state = make_state(session={"timezone": "Asia/Kolkata"})
    midnight = local_ns("2025-11-22 00:00:00", "Asia/Kolkata")
    state.ensure_calendar(midnight - DAY, midnight + DAY)
    day1 = [(100.0, 2.0), (101.5, 0.0), (99.25, 3.0), (100.5, 5.0), (98.0, 0.0), (99.0, 1.0)]
    start = midnight - 10 * MINUTE
    for k, (price, size) in enumerate(day1):
        assert tick(state, price, start + k * MINUTE, size) == 0
    # one nanosecond before local midnight still belongs to day 1
    assert tick(state, 102.0, midnight - 1, 4.0) == 0
    day1.append((102.0, 4.0))

    prices = [p for p, _ in day1]
    volume = sum(s for _, s in day1)
    row = state.book[0]
    assert row[I_DAY_HIGH] == max(prices)
    assert row[I_DAY_LOW] == min(prices)
    assert row[I_DAY_VOLUME] == volume
    assert state.vwap(0) == pytest.approx(sum(p * s for p, s in day1) / volume, rel=1e-15)

    assert tick(state, 97.5, midnight, 2.0) == 0
    assert tick(state, 97.75, midnight + SECOND, 6.0) == 0
    assert row[I_DAY_HIGH] == 97.75
    assert row[I_DAY_LOW] == 97.5
    assert row[I_DAY_VOLUME] == 8.0
    assert state.vwap(0) == pytest.approx((97.5 * 2 + 97.75 * 6) / 8, rel=1e-15)


def test_vwap_is_the_price_until_the_day_has_volume():
    state = fresh()
    tick(state, 100.0, T0, 0.0)
    assert state.vwap(0) == 100.0
    tick(state, 101.0, T0 + 1, 0.0)
    assert state.vwap(0) == 101.0
    tick(state, 102.0, T0 + 2, 3.0)
    tick(state, 90.0, T0 + 3, 0.0)
    assert state.vwap(0) == 102.0


# -- update_bar ------------------------------------------------------------------------------


def test_update_bar_closes_exactly_at_the_boundary():
    state = fresh(strategy={"bar_seconds": 60})
    book = state.book
    assert T0 % (60 * SECOND) == 0
    boundary = T0 + 60 * SECOND
    bar = [(10.0, 1.0, T0 + SECOND), (12.0, 2.0, T0 + 20 * SECOND), (9.0, 3.0, T0 + 30 * SECOND)]
    bar.append((11.0, 4.0, boundary - 1))
    for price, size, ts in bar:
        assert update_bar(book, 0, price, size, ts) is False
    assert book[0, I_BARS] == 0.0
    assert (book[0, I_BAR_OPEN], book[0, I_BAR_HIGH], book[0, I_BAR_LOW]) == (10.0, 12.0, 9.0)
    assert (book[0, I_BAR_CLOSE], book[0, I_BAR_VOLUME]) == (11.0, 10.0)

    assert update_bar(book, 0, 13.0, 5.0, boundary) is True
    assert book[0, I_BARS] == 1.0
    assert (book[0, I_LAST_HIGH], book[0, I_LAST_LOW], book[0, I_LAST_CLOSE]) == (12.0, 9.0, 11.0)
    assert book[0, I_BAR_OPEN] == book[0, I_BAR_CLOSE] == 13.0
    assert book[0, I_BAR_VOLUME] == 5.0
    assert state.ints[0, I_BAR_END] == boundary + 60 * SECOND


def test_update_bar_skips_empty_intervals():
    state = fresh(strategy={"bar_seconds": 5})
    book, width = state.book, 5 * SECOND
    assert update_bar(book, 0, 10.0, 1.0, T0 + 2 * SECOND) is False
    # seven empty bars later: one bar closes, not eight
    late = T0 + 8 * width + 3 * SECOND
    assert update_bar(book, 0, 14.0, 1.0, late) is True
    assert book[0, I_BARS] == 1.0
    assert book[0, I_LAST_CLOSE] == 10.0
    assert state.ints[0, I_BAR_END] == T0 + 9 * width
    assert update_bar(book, 0, 15.0, 1.0, T0 + 9 * width - 1) is False
    assert update_bar(book, 0, 16.0, 1.0, T0 + 9 * width) is True
    assert book[0, I_BARS] == 2.0
    assert (book[0, I_LAST_HIGH], book[0, I_LAST_LOW], book[0, I_LAST_CLOSE]) == (15.0, 14.0, 15.0)


# -- update_ema and detect_crossover ---------------------------------------------------------


@pytest.mark.parametrize(("fast", "slow"), [(1, 2), (3, 7), (10, 30)])
def test_update_ema_follows_the_pinned_formula(fast, slow):
    state = fresh(strategy={"fast": fast, "slow": slow})
    rng = np.random.default_rng(fast * 100 + slow)
    prices = 100.0 + np.cumsum(rng.integers(-3, 4, 200)) * 0.25
    alpha_fast, alpha_slow = 2.0 / (fast + 1), 2.0 / (slow + 1)
    ema_fast = ema_slow = diff = None
    for k, price in enumerate(prices.tolist()):
        tick(state, price, T0 + k)
        update_ema(state.book, 0, price)
        prev_diff = 0.0 if diff is None else diff
        if k == 0:
            ema_fast = ema_slow = price
        else:
            ema_fast = alpha_fast * price + (1.0 - alpha_fast) * ema_fast
            ema_slow = alpha_slow * price + (1.0 - alpha_slow) * ema_slow
        diff = ema_fast - ema_slow
        row = state.book[0]
        assert (row[I_EMA_FAST], row[I_EMA_SLOW]) == (ema_fast, ema_slow), k
        assert (row[I_DIFF], row[I_PREV_DIFF]) == (diff, prev_diff), k


def crossovers(state: State, prices) -> list[int]:
    out = []
    for k, price in enumerate(prices):
        assert tick(state, float(price), T0 + k) == 0
        update_ema(state.book, 0, float(price))
        out.append(detect_crossover(state.book, 0))
        assert state.book[0, I_SIGNAL] == out[-1]
    return out


@pytest.mark.parametrize("slow", [2, 3, 7])
@pytest.mark.parametrize("side", [LONG, SHORT])
def test_detect_crossover_warm_up_edge(slow, side):
    jump = 100.0 + side * 0.25
    # the first move comes on tick k == slow: the EMAs cross, but too early to signal
    early = fresh(strategy={"fast": 1, "slow": slow})
    assert crossovers(early, [100.0] * (slow - 1) + [jump]) == [0] * slow
    assert early.book[0, I_PREV_DIFF] == 0.0
    assert side * early.book[0, I_DIFF] > 0.0
    # the same move one tick later, k == slow + 1, signals
    ready = fresh(strategy={"fast": 1, "slow": slow})
    assert crossovers(ready, [100.0] * slow + [jump]) == [0] * slow + [side]


def test_detect_crossover_both_directions_once_per_cross():
    state = fresh(strategy={"fast": 2, "slow": 5})
    prices = [100.0] * 6 + [101.0, 102.0, 103.0, 103.0, 100.0, 99.0, 98.0, 101.0, 104.0]
    signals = crossovers(state, prices)
    diffs = []  # recompute the sign changes independently
    fast = slow = prices[0]
    for price in prices:
        fast = 2 / 3 * price + (1 - 2 / 3) * fast
        slow = 2 / 6 * price + (1 - 2 / 6) * slow
        diffs.append(fast - slow)
    expected = [0] * len(prices)
    for k in range(6, len(prices)):
        if diffs[k - 1] <= 0.0 < diffs[k]:
            expected[k] = LONG
        elif diffs[k - 1] >= 0.0 > diffs[k]:
            expected[k] = SHORT
    assert signals == expected
    assert LONG in signals and SHORT in signals


# -- size_order and bracket_levels -----------------------------------------------------------

SIZING_INSTRUMENT = [{"symbol": "AAA", "tick_size": 0.25, "lot_size": 10, "point_value": 2.0}]


def test_size_order_fixed_quantity_is_lots_times_lot_size():
    state = fresh(instruments=SIZING_INSTRUMENT, strategy={"quantity": 3})
    assert size_order(state.book, 0) == 30.0


# stop 8 ticks * 0.25 * point value 2 * lot 10 = 40 per lot
@pytest.mark.parametrize(
    ("risk", "max_position", "lots"),
    [
        (1000.0, 100, 25),
        (1039.99, 100, 25),
        (1040.0, 100, 26),
        (1000.0, 20, 20),
        (40.0, 100, 1),
        (39.99, 100, 0),
    ],
)
def test_size_order_risk_per_trade(risk, max_position, lots):
    state = fresh(
        instruments=SIZING_INSTRUMENT,
        strategy={"quantity": 7, "risk_per_trade": risk},
        bracket={"stop_ticks": 8},
        risk={"max_position": max_position},
    )
    assert size_order(state.book, 0) == lots * 10


def test_size_order_uses_the_atr_stop_once_warm():
    state = fresh(
        instruments=SIZING_INSTRUMENT,
        strategy={"risk_per_trade": 1000.0},
        bracket={"stop_ticks": 8, "stop_atr": 2.0},
    )
    assert size_order(state.book, 0) == 250.0  # ATR still NaN: the 8-tick stop
    state.book[0, I_ATR] = 1.3  # 2 * 1.3 / 0.25 = 10.4 -> 10 ticks -> 50 per lot
    assert size_order(state.book, 0) == 200.0


@pytest.mark.parametrize(("side", "target", "stop"), [(LONG, 406.0, 396.0), (SHORT, 394.0, 404.0)])
def test_bracket_levels_in_ticks(side, target, stop):
    state = fresh(bracket={"target_ticks": 6, "stop_ticks": 4})
    bracket_levels(state.book, 0, side, 400.0)
    assert state.book[0, I_TARGET] == target
    assert state.book[0, I_STOP] == stop
    assert state.book[0, I_STOP_KIND] == R_STOP


@pytest.mark.parametrize(
    ("atr", "target_distance", "stop_distance"),
    [
        (math.nan, 6.0, 4.0),  # not warm: the tick distances
        (1.3, 16.0, 8.0),  # 3 * 1.3 / 0.25 = 15.6 -> 16; 1.5 * 1.3 / 0.25 = 7.8 -> 8
        (0.01, 1.0, 1.0),  # rounds to 0 ticks: at least one
    ],
)
@pytest.mark.parametrize("side", [LONG, SHORT])
def test_bracket_levels_in_atr_multiples(atr, target_distance, stop_distance, side):
    state = fresh(bracket={"target_ticks": 6, "stop_ticks": 4, "target_atr": 3.0, "stop_atr": 1.5})
    state.book[0, I_ATR] = atr
    bracket_levels(state.book, 0, side, 400.0)
    assert state.book[0, I_TARGET] == 400.0 + side * target_distance
    assert state.book[0, I_STOP] == 400.0 - side * stop_distance


# -- check_bracket ---------------------------------------------------------------------------


def open_position(state: State, side: int, price: float = 100.0, qty: float = 1.0) -> int:
    """Enter like the pipeline does: a tick, the bracket, the fill. Return the entry ticks."""
    ts = T0
    assert tick(state, price, ts) == 0
    entry = state.book[0, I_LTP_TICKS] + side * state.cfg.broker.slippage_ticks
    bracket_levels(state.book, 0, side, entry)
    apply_fill(state.book, state.events, 0, side, qty, entry, ts, R_NONE)
    return int(entry)


def step(state: State, price: float) -> int:
    ts = int(state.ints[0, I_LAST_TS]) + SECOND
    assert tick(state, price, ts) == 0
    return check_bracket(state.book, 0)


# offsets in ticks in the position's favour, with the exit expected (reason, offset of fill)
@pytest.mark.parametrize(
    ("offset", "reason", "fill"),
    [
        (3, R_NONE, None),
        (4, R_TARGET, 4),  # exact touch
        (9, R_TARGET, 4),  # a limit fills at its price
        (-3, R_NONE, None),
        (-4, R_STOP, -4),  # exact touch
        (-10, R_STOP, -10),  # a stop-market fills at the gapped tick
    ],
)
@pytest.mark.parametrize("side", [LONG, SHORT])
def test_check_bracket_target_and_stop(side, offset, reason, fill):
    state = fresh(bracket={"target_ticks": 4, "stop_ticks": 4})
    entry = open_position(state, side)
    assert step(state, (entry + side * offset) * 0.25) == reason
    if fill is not None:
        assert state.book[0, I_EXIT_TICKS] == entry + side * fill


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_check_bracket_does_nothing_on_the_entry_tick(side):
    # slippage beyond the stop puts the entry tick's own LTP through the stop
    state = fresh(bracket={"target_ticks": 10, "stop_ticks": 3}, broker={"slippage_ticks": 5})
    entry = open_position(state, side)
    ltp = state.book[0, I_LTP_TICKS]
    assert side * (ltp - state.book[0, I_STOP]) <= 0
    assert check_bracket(state.book, 0) == R_NONE
    assert state.book[0, I_STOP] == entry - side * 3
    assert step(state, ltp * 0.25) == R_STOP
    assert state.book[0, I_EXIT_TICKS] == ltp


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_check_bracket_trails_the_stop(side):
    state = fresh(bracket={"target_ticks": 100, "stop_ticks": 4, "trail_ticks": 2})
    entry = open_position(state, side)

    def at(offset):
        return step(state, (entry + side * offset) * 0.25)

    assert at(1) == R_NONE
    assert (state.book[0, I_STOP], state.book[0, I_STOP_KIND]) == (entry - side, R_TRAIL)
    assert at(0) == R_NONE  # a trailing stop never moves back
    assert state.book[0, I_STOP] == entry - side
    assert at(3) == R_NONE
    assert state.book[0, I_STOP] == entry + side
    assert at(1) == R_TRAIL
    assert state.book[0, I_EXIT_TICKS] == entry + side


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_check_bracket_moves_the_stop_to_breakeven(side):
    state = fresh(bracket={"target_ticks": 100, "stop_ticks": 4, "breakeven_ticks": 3})
    entry = open_position(state, side)

    def at(offset):
        return step(state, (entry + side * offset) * 0.25)

    assert at(2) == R_NONE
    assert (state.book[0, I_STOP], state.book[0, I_STOP_KIND]) == (entry - side * 4, R_STOP)
    assert at(3) == R_NONE
    assert (state.book[0, I_STOP], state.book[0, I_STOP_KIND]) == (entry, R_BREAKEVEN)
    assert at(6) == R_NONE
    assert state.book[0, I_STOP] == entry
    assert at(0) == R_BREAKEVEN
    assert state.book[0, I_EXIT_TICKS] == entry


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_check_bracket_trail_then_breakeven_on_one_tick(side):
    state = fresh(
        bracket={"target_ticks": 100, "stop_ticks": 8, "trail_ticks": 5, "breakeven_ticks": 3}
    )
    entry = open_position(state, side)

    def at(offset):
        return step(state, (entry + side * offset) * 0.25)

    # +3: the trail lifts the stop to -2, then breakeven lifts it to the entry
    assert at(3) == R_NONE
    assert (state.book[0, I_STOP], state.book[0, I_STOP_KIND]) == (entry, R_BREAKEVEN)
    assert at(6) == R_NONE
    assert (state.book[0, I_STOP], state.book[0, I_STOP_KIND]) == (entry + side, R_TRAIL)
    assert at(1) == R_TRAIL


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_check_bracket_tracks_excursions(side):
    state = fresh(bracket={"target_ticks": 100, "stop_ticks": 100})
    entry = open_position(state, side)
    for offset in (2, -3, 5, -1, 4):
        assert step(state, (entry + side * offset) * 0.25) == R_NONE
    assert state.book[0, I_MFE_TICKS] == 5.0
    assert state.book[0, I_MAE_TICKS] == -3.0


@pytest.mark.parametrize(
    ("bracket", "path", "moves", "reason", "exit_price"),
    [
        # trail 2: 100.75 lifts the stop to 100.25, 101.0 to 100.5, 100.5 fills it
        ({"trail_ticks": 2}, [100.75, 101.0, 100.5], [100.25, 100.5], "trail", 100.5),
        # breakeven after 2 ticks: 100.75 moves the stop to the entry, 100.25 fills it
        ({"breakeven_ticks": 2}, [100.75, 100.25], [100.25], "breakeven", 100.25),
    ],
)
def test_pipeline_reports_stop_moves_and_the_exit_reason(bracket, path, moves, reason, exit_price):
    engine, log = make_engine(bracket={"target_ticks": 100, "stop_ticks": 4, **bracket})
    ticks = Ticks().extend([100.0, 100.0, 100.0, 100.25, *path])
    engine.process(*ticks.arrays(), len(ticks))
    records = log.records()
    assert [r["type"] for r in records[: len(moves) + 2]] == [
        "entry",
        *["stop_moved"] * len(moves),
        "exit",
    ]
    assert [(r["stop"], r["reason"]) for r in records[1 : len(moves) + 1]] == [
        (stop, reason) for stop in moves
    ]
    exit_record = records[len(moves) + 1]
    assert (exit_record["reason"], exit_record["price"]) == (reason, exit_price)
    assert exit_record["pnl"] == exit_price - 100.25


# -- apply_fill ------------------------------------------------------------------------------

LEDGER_INSTRUMENT = [{"symbol": "AAA", "tick_size": 0.25, "lot_size": 1, "point_value": 2.0}]


def fill(state: State, side: int, qty: float, price_ticks: float, ts: int, reason=R_NONE):
    return apply_fill(state.book, state.events, 0, side, float(qty), float(price_ticks), ts, reason)


def last_event(state: State) -> tuple[np.ndarray, np.ndarray]:
    k = state.account_int(A_EVENTS) - 1
    return state.events[k], state.event_floats[k]


def test_apply_fill_open_add_reduce_close():
    state = fresh(instruments=LEDGER_INSTRUMENT)
    row, acct = state.book[0], state.book[state.acct]
    t1, t2, t3, t4 = (T0 + k * SECOND for k in range(4))

    assert fill(state, LONG, 10, 400, t1) == 0.0
    assert (row[I_SIDE], row[I_QTY], row[I_ENTRY_TICKS]) == (LONG, 10.0, 400.0)
    assert state.ints[0, I_ENTRY_TS] == t1
    ints, floats = last_event(state)
    assert (ints[E_KIND], ints[E_SIDE], ints[E_QTY], ints[E_TS]) == (K_ENTRY, LONG, 10, t1)
    assert (floats[E_PRICE], floats[E_ENTRY_PRICE]) == (100.0, 100.0)

    assert fill(state, LONG, 10, 404, t2) == 0.0  # add: average (400 * 10 + 404 * 10) / 20
    assert (row[I_QTY], row[I_ENTRY_TICKS]) == (20.0, 402.0)
    ints, floats = last_event(state)
    assert (ints[E_KIND], ints[E_QTY]) == (K_ENTRY, 10)
    assert (floats[E_PRICE], floats[E_ENTRY_PRICE]) == (101.0, 100.5)

    # reduce: (102.5 - 100.5) * 5 units * point value 2
    assert fill(state, SHORT, 5, 410, t3, R_MANUAL) == 20.0
    assert (row[I_SIDE], row[I_QTY], row[I_ENTRY_TICKS]) == (LONG, 15.0, 402.0)
    assert row[I_TRADES] == 0.0
    ints, floats = last_event(state)
    assert (ints[E_KIND], ints[E_SIDE], ints[E_QTY], ints[E_REASON]) == (K_EXIT, SHORT, 5, R_MANUAL)
    assert ints[E_ENTRY_TS] == t1
    assert (floats[E_PRICE], floats[E_ENTRY_PRICE], floats[E_PNL]) == (102.5, 100.5, 20.0)

    # close: (99.5 - 100.5) * 15 * 2
    assert fill(state, SHORT, 15, 398, t4, R_MANUAL) == -30.0
    assert (row[I_SIDE], row[I_QTY], row[I_TRADES]) == (FLAT, 0.0, 1.0)
    assert (row[I_TARGET], row[I_STOP], row[I_STOP_KIND]) == (0.0, 0.0, R_NONE)
    assert row[I_REALIZED] == acct[A_REALIZED] == acct[A_DAY_REALIZED] == -10.0
    assert state.account_int(A_EVENTS) == 4
    assert state.events[:4, E_SEQ].tolist() == [0, 1, 2, 3]


def test_apply_fill_short_round_trip():
    state = fresh(instruments=LEDGER_INSTRUMENT)
    fill(state, SHORT, 4, 404, T0)
    assert (state.book[0, I_SIDE], state.book[0, I_QTY]) == (SHORT, 4.0)
    assert fill(state, LONG, 4, 400, T0 + 1, R_TARGET) == 8.0  # -1 * (100 - 101) * 4 * 2
    ints, floats = last_event(state)
    assert (ints[E_KIND], ints[E_SIDE], ints[E_REASON]) == (K_EXIT, LONG, R_TARGET)
    assert floats[E_PNL] == 8.0
    assert state.book[0, I_SIDE] == FLAT


def test_apply_fill_flip_opens_the_remainder_without_a_bracket():
    state = fresh(instruments=LEDGER_INSTRUMENT, bracket={"target_ticks": 6, "stop_ticks": 4})
    tick(state, 100.0, T0)
    bracket_levels(state.book, 0, LONG, 400.0)
    fill(state, LONG, 10, 400, T0)
    assert fill(state, SHORT, 15, 404, T0 + SECOND, R_MANUAL) == 20.0  # (101 - 100) * 10 * 2
    row = state.book[0]
    assert (row[I_SIDE], row[I_QTY], row[I_ENTRY_TICKS]) == (SHORT, 5.0, 404.0)
    assert row[I_STOP_KIND] == R_NONE
    assert state.ints[0, I_ENTRY_TS] == T0 + SECOND
    exit_row, entry_row = state.events[1], state.events[2]
    assert (exit_row[E_KIND], exit_row[E_QTY], exit_row[E_SIDE]) == (K_EXIT, 10, SHORT)
    assert (entry_row[E_KIND], entry_row[E_QTY], entry_row[E_SIDE]) == (K_ENTRY, 5, SHORT)
    assert state.event_floats[2, E_PRICE] == 101.0
    assert state.positions()["AAA"]["target"] is None
    assert state.positions()["AAA"]["qty"] == 5


def test_apply_fill_exit_event_carries_the_trade_excursions():
    state = fresh(instruments=LEDGER_INSTRUMENT, bracket={"target_ticks": 10, "stop_ticks": 10})
    entry = open_position(state, LONG)
    for offset in (3, -2, 1):
        step(state, (entry + offset) * 0.25)
    fill(state, SHORT, 1, entry + 1, T0 + 9 * SECOND, R_MANUAL)
    ints, floats = last_event(state)
    assert ints[E_INST] == 0
    assert (floats[E_MAE], floats[E_MFE]) == (-0.5, 0.75)
    assert (floats[E_TARGET], floats[E_STOP]) == (0.0, 0.0)  # exit rows carry no bracket


def test_apply_fill_entry_event_carries_the_bracket():
    state = fresh(bracket={"target_ticks": 6, "stop_ticks": 4})
    open_position(state, SHORT)
    ints, floats = last_event(state)
    assert ints[E_KIND] == K_ENTRY
    assert (floats[E_TARGET], floats[E_STOP]) == (98.5, 101.0)


# -- mark_to_market --------------------------------------------------------------------------


def mark(state: State, price: float, ts: int, i: int = 0) -> int:
    assert tick(state, price, ts, i=i) == 0
    return mark_to_market(state.book, i)


def test_mark_to_market_equity_peak_drawdown():
    state = fresh(instruments=LEDGER_INSTRUMENT)
    acct = state.book[state.acct]
    tick(state, 100.0, T0)
    fill(state, LONG, 10, 400, T0)
    # unrealized = (price - 100) * 10 * 2
    expected = [(101.0, 20.0, 20.0, 0.0), (99.5, -10.0, 20.0, 30.0), (100.5, 10.0, 20.0, 10.0)]
    for k, (price, equity, peak, drawdown) in enumerate(expected, 1):
        assert mark(state, price, T0 + k) == G_OK
        assert state.book[0, I_UNREALIZED] == acct[A_UNREALIZED] == equity
        assert (acct[A_EQUITY], acct[A_PEAK], acct[A_DRAWDOWN]) == (equity, peak, drawdown)
        assert acct[A_DAY_PNL] == equity
    assert acct[A_MAX_DRAWDOWN] == 30.0


def test_mark_to_market_sums_the_instruments():
    instruments = [
        {"symbol": "AAA", "tick_size": 0.25, "point_value": 2.0},
        {"symbol": "BBB", "tick_size": 0.5, "point_value": 10.0},
    ]
    state = fresh(instruments=instruments)
    acct = state.book[state.acct]
    tick(state, 100.0, T0, i=0)
    apply_fill(state.book, state.events, 0, LONG, 3.0, 400.0, T0, R_NONE)
    tick(state, 50.0, T0, i=1)
    apply_fill(state.book, state.events, 1, SHORT, 2.0, 100.0, T0, R_NONE)
    mark(state, 101.0, T0 + 1, i=0)  # +1 * 3 * 2 = 6
    mark(state, 51.5, T0 + 2, i=1)  # -1.5 * 2 * 10 = -30
    assert acct[A_UNREALIZED] == acct[A_EQUITY] == -24.0
    mark(state, 99.0, T0 + 3, i=0)  # -1 * 3 * 2 = -6
    assert acct[A_UNREALIZED] == acct[A_EQUITY] == -36.0
    assert acct[A_PEAK] == 6.0  # the first mark
    assert acct[A_DRAWDOWN] == 42.0


def test_mark_to_market_flags_the_daily_loss_at_the_limit():
    state = fresh(instruments=LEDGER_INSTRUMENT, risk={"daily_loss_limit": 25.0})
    tick(state, 100.0, T0)
    fill(state, LONG, 10, 400, T0)
    assert mark(state, 99.0, T0 + 1) == G_OK  # -20
    assert mark(state, 98.75, T0 + 2) == G_DAILY_LOSS  # -25: at the limit
    state.ints[state.acct, A_DAY_HALT] = G_DAILY_LOSS
    assert mark(state, 98.5, T0 + 3) == G_OK  # already halted for the day


def test_mark_to_market_flags_max_loss_beyond_the_limit():
    state = fresh(instruments=LEDGER_INSTRUMENT, risk={"max_loss_limit": 30.0})
    tick(state, 100.0, T0)
    fill(state, LONG, 10, 400, T0)
    assert mark(state, 101.0, T0 + 1) == G_OK  # peak 20
    assert mark(state, 99.5, T0 + 2) == G_OK  # drawdown 30: not beyond
    assert mark(state, 99.25, T0 + 3) == G_MAX_LOSS  # drawdown 35
    state.ints[state.acct, A_HALT] = G_MAX_LOSS
    assert mark(state, 99.0, T0 + 4) == G_OK


def test_mark_to_market_after_a_close_books_the_realized_pnl():
    state = fresh(instruments=LEDGER_INSTRUMENT)
    acct = state.book[state.acct]
    tick(state, 100.0, T0)
    fill(state, LONG, 10, 400, T0)
    mark(state, 101.0, T0 + 1)
    assert acct[A_EQUITY] == 20.0
    fill(state, SHORT, 10, 408, T0 + 2, R_TARGET)  # +2 * 10 * 2 = 40 realized
    mark_to_market(state.book, 0)
    assert acct[A_REALIZED] == 40.0
    assert (acct[A_EQUITY], acct[A_PEAK], acct[A_DAY_PNL]) == (40.0, 40.0, 40.0)


# -- on_tick and run_ticks -------------------------------------------------------------------


def zigzag(n: int, start: int = T0, step: int = SECOND) -> Ticks:
    """Up and down by one tick: with fast 1 / slow 2 every tick after warm-up crosses."""
    ticks = Ticks(ts=start, step=step)
    ticks.extend([100.0, 100.0, 100.0])
    ticks.extend([100.25 if k % 2 == 0 else 100.0 for k in range(n)])
    return ticks


def test_run_ticks_returns_early_when_the_event_ring_is_nearly_full():
    state = fresh(bracket={"target_ticks": 1, "stop_ticks": 1}, state={"event_capacity": 1024})
    idx, price, size, ts = zigzag(2000).arrays()
    n = len(idx)
    codes = state.tick_codes(n)
    stop = run_ticks(
        state.book, state.events, idx, price, size, ts, codes, state.record, state.record_ctl, 0, n
    )
    assert 0 < stop < n
    written = state.account_int(A_EVENTS)
    room = state.account_int(A_EVENT_CAP) - state.account_int(A_N_INST) - 4
    assert room < written <= 1024
    assert state.account_int(A_EVENTS_LOST) == 0
    assert state.account_int(A_TICKS) == stop


def test_driver_loop_loses_no_events_with_the_smallest_ring():
    cfg = {
        "instruments": [
            {"symbol": "AAA", "tick_size": 0.25},
            {"symbol": "BBB", "tick_size": 0.25},
        ],
        "bracket": {"target_ticks": 1, "stop_ticks": 1},
    }
    ticks = zigzag(3000, step=SECOND // 10)
    rows = ticks.rows + [(1, p, s, t) for _, p, s, t in ticks.rows]
    rows.sort(key=lambda r: r[3])
    small = run_arrays(make_config(**cfg, state={"event_capacity": 1024}), *tick_arrays(rows))
    large = run_arrays(make_config(**cfg, state={"event_capacity": 65536}), *tick_arrays(rows))

    state = small.engine.state
    closed = int(state.book[: state.n, I_TRADES].sum())
    assert closed > 4 * 1024  # the ring filled many times over
    assert len(small.trades) == closed
    assert state.account_int(A_EVENTS_LOST) == 0
    assert small.trades == large.trades


def test_driver_loop_hands_sinks_every_event_in_sequence():
    engine, log = make_engine(
        bracket={"target_ticks": 1, "stop_ticks": 1}, state={"event_capacity": 1024}
    )
    ticks = zigzag(2500)
    engine.process(*ticks.arrays(), len(ticks))
    assert len(log.blocks) > 4
    assert all(len(block) <= 1024 for block in log.blocks)
    seqs = log.rows[:, E_SEQ]
    assert seqs.tolist() == list(range(engine.state.account_int(A_SEQ)))
    exits = int((log.rows[:, E_KIND] == K_EXIT).sum())
    assert exits == len(log.trades()) == engine.state.book[0, I_TRADES]
    assert engine.state.account_int(A_EVENTS) == 0


def random_stream(seed: int, n_inst: int, n: int) -> list[tuple[int, float, float, int]]:
    """Interleaved random walks with bad ticks and equal timestamps, across a session close."""
    rng = np.random.default_rng(seed)
    start = local_ns("2025-11-21 15:05:00", "Asia/Kolkata")
    grid = rng.integers(380, 420, n_inst).astype(float)
    ts = start
    rows = []
    for _ in range(n):
        i = int(rng.integers(0, n_inst))
        grid[i] += rng.integers(-2, 3)
        ts += int(rng.choice([0, 1, 250 * 1_000_000, 2 * SECOND]))
        rows.append((i, grid[i] * 0.25, float(rng.integers(0, 5)), ts))
        if rng.random() < 0.03:
            bad = rng.integers(0, 4)
            rows.append(
                [
                    (n_inst, 100.0, 1.0, ts),
                    (i, math.nan, 1.0, ts),
                    (i, 100.0, -1.0, ts),
                    (i, 100.0, 1.0, ts - SECOND),
                ][bad]
            )
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_on_tick_and_run_ticks_agree(seed):
    sections = {
        "instruments": [{"symbol": s, "tick_size": 0.25} for s in ("AAA", "BBB", "CCC")],
        "strategy": {"fast": 2, "slow": 5, "bar_seconds": 5, "atr_period": 3},
        "bracket": {"target_ticks": 6, "stop_ticks": 4, "trail_ticks": 3, "breakeven_ticks": 2},
        "risk": {"daily_loss_limit": 40.0, "max_orders_per_second": 3, "max_position": 5},
        "session": {"enabled": True, "timezone": "Asia/Kolkata"},
    }
    rows = random_stream(seed, 3, 3000)
    idx, price, size, ts = tick_arrays(rows)
    one, batch = make_state(**sections), make_state(**sections)
    for state in (one, batch):
        state.ensure_calendar(int(ts.min()), int(ts.max()))

    codes = [
        on_tick(one.book, one.events, int(i), float(p), float(s), int(t))
        for i, p, s, t in zip(idx, price, size, ts, strict=True)
    ]
    batch_codes = batch.tick_codes(len(idx))
    ran = run_ticks(
        batch.book, batch.events, idx, price, size, ts, batch_codes, batch.record,
        batch.record_ctl, 0, len(idx),
    )  # fmt: skip
    assert ran == len(idx)
    assert batch_codes[: len(idx)].tolist() == codes

    assert same_bits(one.book, batch.book)
    written = one.account_int(A_EVENTS)
    assert written == batch.account_int(A_EVENTS)
    assert np.array_equal(one.events[:written], batch.events[:written])
    # not vacuous: the stream traded, was refused, and had bad ticks
    assert one.book[:3, I_TRADES].sum() > 0
    assert one.refused_entries()
    assert sum(1 for c in codes if c) == sum(one.rejected_ticks().values()) > 0
