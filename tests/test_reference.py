"""Hand-worked scenarios that pin the oracle in tests/reference.py.

Most scenarios use one instrument with tick size 1.0, lot size 1, point value 1 and EMAs
fast=1, slow=2. With fast=1 the fast EMA is the price itself (alpha = 1), and with slow=2
(alpha = 2/3)

    diff_k = price_k - (2/3 price_k + 1/3 ema_{k-1}) = (price_k - ema_{k-1}) / 3,

so the sign of diff is simply "is this price above the previous slow EMA". Every expected value
below follows from that and from integer prices, so it is exact.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pyloop import run_single
from tests.reference import simulate
from tests.strategies import ORACLE_SETTINGS

X = {"symbol": "X", "tick_size": 1.0, "lot_size": 1, "point_value": 1.0}


def run(
    prices: list[float],
    *,
    fast: int = 1,
    slow: int = 2,
    target: int = 3,
    stop: int = 2,
    trail: int = 0,
    breakeven: int = 0,
    slippage: int = 0,
):
    """Simulate one instrument X with timestamps 1, 2, 3, ... (tick k has ts k)."""
    return simulate(
        [X],
        {"fast": fast, "slow": slow, "quantity": 1},
        {
            "target_ticks": target,
            "stop_ticks": stop,
            "trail_ticks": trail,
            "breakeven_ticks": breakeven,
        },
        slippage,
        [(0, p, 1.0, k) for k, p in enumerate(prices, start=1)],
    )


def trade(side, entry_ts, entry, exit_ts, exit_, pnl, reason, qty=1, symbol="X") -> dict:
    return {
        "symbol": symbol,
        "side": side,
        "qty": qty,
        "entry_ts": entry_ts,
        "entry_price": entry,
        "exit_ts": exit_ts,
        "exit_price": exit_,
        "pnl": pnl,
        "exit_reason": reason,
    }


# Shared opening: k1 100 seeds both EMAs (diff 0); k2 99: diff < 0 but k = slow, no signal;
# slow EMA 99.333. k3 101 > 99.333: diff > 0 after prev < 0 -> long at 101 (k3 > slow).
# slow EMA after k3 = 2/3*101 + 1/3*99.333 = 100.444.
LONG_OPEN = [100.0, 99.0, 101.0]


def test_long_crossover_hits_target_exactly_on_touch():
    # Entry 101, target 104, stop 99. k4 102: inside. k5 104: touches the target -> exit at
    # 104 (no signal: 104 is above the EMA as was 102). pnl = +1 * (104 - 101) * 1 * 1 = 3.
    r = run([*LONG_OPEN, 102.0, 104.0])
    assert r.trades == [trade("long", 3, 101.0, 5, 104.0, 3.0, "target")]
    assert r.positions == {}
    assert r.realized_pnl == 3.0
    assert r.rejected == {}


def test_levels_use_grid_rounding_half_to_even():
    # k3 100.6 rounds to 101 (diff > 0: 100.6 > 99.333) -> long entry 101.0, target 105
    # (target=4), stop 99. k4 104.5 rounds to 104 (half to even; half-up would say 105 and
    # exit) -> no exit; EMA = 2/3*104.5 + 1/3*100.444 = 103.148.
    # k5 98.5 rounds to 98 (half-up would say 99) -> stop exit filled at 98.0, pnl -3. It also
    # crosses down (98.5 < 103.148) -> short at grid 98, target 94, stop 100.
    r = run([100.0, 99.0, 100.6, 104.5, 98.5], target=4)
    assert r.trades == [trade("long", 3, 101.0, 5, 98.0, -3.0, "stop")]
    assert r.positions == {
        "X": {"side": "short", "qty": 1, "entry_price": 98.0, "target": 94.0, "stop": 100.0}
    }
    # A target touched by rounding fills at the target level, not at the raw price.
    r = run([100.0, 99.0, 101.0, 103.5])
    assert r.trades == [trade("long", 3, 101.0, 4, 104.0, 3.0, "target")]


def test_gap_through_stop_fills_at_gap_price_and_signal_ignored_in_position():
    # Long 101, stop 99. k4 100: 100 < EMA 100.444 -> short crossover, ignored while long;
    # 100 > stop so the position stays. EMA = 2/3*100 + 1/3*100.444 = 100.148.
    # k5 95: gaps through the stop 99 -> stop-market fills at 95, not 99. No signal here
    # (diff < 0 after prev < 0), so flat at the end. pnl = 95 - 101 = -6.
    r = run([*LONG_OPEN, 100.0, 95.0])
    assert r.trades == [trade("long", 3, 101.0, 5, 95.0, -6.0, "stop")]
    assert r.positions == {}
    assert r.realized_pnl == -6.0


def test_short_side_mirrored_target():
    # k1 100; k2 101: diff > 0 at k = slow, no signal; EMA 100.667.
    # k3 99 < 100.667 -> short at 99, target 99 - 3 = 96, stop 99 + 2 = 101; EMA 99.556.
    # k4 98: inside (96 < 98 < 101), no cross; EMA 98.519. k5 96: touches target -> exit 96.
    # pnl = -1 * (96 - 99) * 1 * 1 = 3.
    r = run([100.0, 101.0, 99.0, 98.0, 96.0])
    assert r.trades == [trade("short", 3, 99.0, 5, 96.0, 3.0, "target")]
    assert r.positions == {}
    assert r.realized_pnl == 3.0


def test_short_gap_stop_then_reverse_on_the_same_tick():
    # Short at 99 as above (stop 101), k4 98 (EMA 98.519). k5 103 gaps over the stop -> exit
    # at 103, pnl = -1 * (103 - 99) = -4. The same tick crosses up (103 > 98.519 after
    # prev < 0): flat again, so a long enters at 103 with target 106 and stop 101.
    r = run([100.0, 101.0, 99.0, 98.0, 103.0])
    assert r.trades == [trade("short", 3, 99.0, 5, 103.0, -4.0, "stop")]
    assert r.positions == {
        "X": {"side": "long", "qty": 1, "entry_price": 103.0, "target": 106.0, "stop": 101.0}
    }
    assert r.realized_pnl == -4.0


def test_exit_on_target_and_reenter_same_tick_then_stop():
    # Long 101 (target 104). k4 100: short cross ignored (in position), EMA 100.148.
    # k5 104: target exit at 104 (+3); the same tick crosses up (104 > 100.148, prev < 0), the
    # position is flat -> long again at 104, target 107, stop 102. EMA = 69.333 + 33.383 =
    # 102.716. k6 102: touches the new stop -> exit at 102, pnl -2; 102 < 102.716 crosses
    # down -> short at 102, target 99, stop 104, still open at the end.
    r = run([*LONG_OPEN, 100.0, 104.0, 102.0])
    assert r.trades == [
        trade("long", 3, 101.0, 5, 104.0, 3.0, "target"),
        trade("long", 5, 104.0, 6, 102.0, -2.0, "stop"),
    ]
    assert r.positions == {
        "X": {"side": "short", "qty": 1, "entry_price": 102.0, "target": 99.0, "stop": 104.0}
    }
    assert r.realized_pnl == 1.0


def test_warmup_no_signal_at_k_equal_slow_but_at_slow_plus_one():
    # [100, 100, 101]: diff is exactly 0.0 at k1 and k2, and > 0 at k3 with prev_diff == 0.
    # With slow = 2, k3 = slow + 1 may signal -> long at 101.
    r = run([100.0, 100.0, 101.0], slow=2)
    assert r.positions["X"]["entry_price"] == 101.0
    # With slow = 3 the same crossover is at k = slow and is dropped. EMA (alpha 0.5) after
    # k3 = 100.5; k4 102 has diff > 0 after prev > 0, so no crossover and no position.
    r = run([100.0, 100.0, 101.0, 102.0], slow=3)
    assert r.positions == {}
    assert r.trades == []
    # [100, 101, 102] with slow = 2: the up-cross is at k2 = slow (dropped); k3 continues up.
    r = run([100.0, 101.0, 102.0], slow=2)
    assert r.positions == {}


def test_trailing_stop_moves_and_exit_reason_trail():
    # Long 101, target 111, stop 99, trail 2. k4 103: candidate 101 > 99 -> stop 101 ("trail");
    # EMA 102.148. k5 104: candidate 102 > 101 -> stop 102; EMA 103.383. k6 103: candidate 101
    # < 102, stop stays; 103 < 103.383 crosses down but in position, ignored; EMA 103.128.
    # k7 102: touches 102 -> exit at 102, reason "trail", pnl +1. 102 < EMA but prev < 0 too,
    # no new cross -> flat at the end.
    r = run([*LONG_OPEN, 103.0, 104.0, 103.0, 102.0], target=10, trail=2)
    assert r.trades == [trade("long", 3, 101.0, 7, 102.0, 1.0, "trail")]
    assert r.positions == {}


def test_trail_not_applied_on_entry_tick():
    # Long at 101 with trail 1: if trailing ran on the entry tick the stop would be 100;
    # it must stay at the bracket stop 99 until the next tick.
    r = run(LONG_OPEN, target=10, trail=1)
    assert r.positions["X"]["stop"] == 99.0


def test_breakeven_exit_has_zero_pnl():
    # Long 101, target 111, stop 98, breakeven 2. k4 103: 103 - 101 = 2 >= 2 and stop 98 < 101
    # -> stop 101 ("breakeven"); EMA 102.148. k5 101: touches 101 -> exit at the entry, pnl 0,
    # reason "breakeven". 101 < 102.148 after prev > 0 -> short at 101 (target 91, stop 104).
    r = run([*LONG_OPEN, 103.0, 101.0], target=10, stop=3, breakeven=2)
    assert r.trades == [trade("long", 3, 101.0, 5, 101.0, 0.0, "breakeven")]
    assert r.positions == {
        "X": {"side": "short", "qty": 1, "entry_price": 101.0, "target": 91.0, "stop": 104.0}
    }
    assert r.realized_pnl == 0.0


def test_trail_then_breakeven_on_the_same_tick():
    # Long 101, stop 95 (stop=6), trail 3, breakeven 2. k4 103: trail candidate 100 > 95 ->
    # stop 100 ("trail"); then 103 - 101 >= 2 and 100 < 101 -> stop 101 ("breakeven").
    r = run([*LONG_OPEN, 103.0], target=10, stop=6, trail=3, breakeven=2)
    assert r.positions["X"]["stop"] == 101.0
    # k5 104: trail candidate 101 is not above 101, stays "breakeven"; k6 101 exits there.
    # EMA: k4 102.148, k5 103.383; 101 < 103.383 crosses down -> short at 101 afterwards.
    r = run([*LONG_OPEN, 103.0, 104.0, 101.0], target=10, stop=6, trail=3, breakeven=2)
    assert r.trades == [trade("long", 3, 101.0, 6, 101.0, 0.0, "breakeven")]


def test_slippage_on_entry():
    # Long signal at 101 with 2 ticks of slippage: entry 103, target 106, stop 101.
    # k4 101 (101 > EMA 100.444: no cross) touches the stop -> exit 101, pnl -2.
    r = run([*LONG_OPEN, 101.0], slippage=2)
    assert r.trades == [trade("long", 3, 103.0, 4, 101.0, -2.0, "stop")]
    # Short side: short at 99 becomes 97, target 94, stop 99.
    r = run([100.0, 101.0, 99.0], slippage=2)
    assert r.positions == {
        "X": {"side": "short", "qty": 1, "entry_price": 97.0, "target": 94.0, "stop": 99.0}
    }


def test_bad_ticks_are_counted_and_skipped():
    nan, inf = math.nan, math.inf
    ticks = [
        (5, 100.0, 1.0, 1),  # unknown_symbol
        (-1, nan, 1.0, 1),  # unknown_symbol beats non_finite
        (0, 100.0, 1.0, 10),  # accepted, k1
        (0, nan, 1.0, 1000),  # non_finite; its ts must not become the last ts
        (0, inf, 1.0, 11),  # non_finite
        (0, -inf, 1.0, 11),  # non_finite beats non_positive
        (0, 0.0, 1.0, 11),  # non_positive
        (0, -0.0, 1.0, 11),  # non_positive
        (0, -5.0, 1.0, 11),  # non_positive
        (0, 0.0, 1.0, 5),  # non_positive beats stale_timestamp
        (0, 120.0, nan, 11),  # bad_size
        (0, 120.0, inf, 11),  # bad_size
        (0, 120.0, -1.0, 11),  # bad_size
        (0, nan, -1.0, 11),  # non_finite beats bad_size
        (0, 120.0, 1.0, 9),  # stale_timestamp (9 < 10)
        (0, 120.0, nan, 9),  # bad_size beats stale_timestamp
        # Accepted, k2: equal ts is fine, size 0 is fine. prev_diff 0 < diff, but k2 == slow,
        # so no signal; had the 14 refused ticks counted, k would be 16 and a long would open.
        (0, 101.0, 0.0, 10),
        # k3: 102 > EMA 100.667 after prev > 0, no crossover.
        (0, 102.0, 1.0, 20),
    ]
    r = simulate(
        [X],
        {"fast": 1, "slow": 2, "quantity": 1},
        {"target_ticks": 3, "stop_ticks": 2, "trail_ticks": 0, "breakeven_ticks": 0},
        0,
        ticks,
    )
    assert r.trades == []
    assert r.positions == {}
    assert r.rejected == {
        "unknown_symbol": 2,
        "non_finite": 4,
        "non_positive": 4,
        "bad_size": 4,
        "stale_timestamp": 1,
    }


def test_two_instruments_interleaved_independently():
    a = {"symbol": "A", "tick_size": 1.0, "lot_size": 1, "point_value": 1.0}
    b = {"symbol": "B", "tick_size": 0.25, "lot_size": 2, "point_value": 50.0}
    # A alone: 100, 99, 101 (long at 101, target 104), 104 -> target, +3.
    # B alone: 20.00; 20.25 (up-cross at k2 == slow, dropped; EMA 20.1667); 19.75 < EMA ->
    # short at grid 79 (19.75), target 76 (19.00), stop 81 (20.25); 18.75 (grid 75 <= 76)
    # -> exit at the target 19.00. qty = 1 * 2 = 2, pnl = -1 * (19.0 - 19.75) * 2 * 50 = 75.
    # Interleaved A1 B1 A2 B2 A3 B3 B4 A4: counts and EMAs must stay per instrument.
    ticks = [
        (0, 100.0, 1.0, 1),
        (1, 20.00, 1.0, 2),
        (0, 99.0, 1.0, 3),
        (1, 20.25, 1.0, 4),
        (0, 101.0, 1.0, 5),
        (1, 19.75, 1.0, 6),
        (1, 18.75, 1.0, 7),
        (0, 104.0, 1.0, 8),
    ]
    r = simulate(
        [a, b],
        {"fast": 1, "slow": 2, "quantity": 1},
        {"target_ticks": 3, "stop_ticks": 2, "trail_ticks": 0, "breakeven_ticks": 0},
        0,
        ticks,
    )
    assert r.trades == [
        trade("short", 6, 19.75, 7, 19.0, 75.0, "target", qty=2, symbol="B"),
        trade("long", 5, 101.0, 8, 104.0, 3.0, "target", symbol="A"),
    ]
    assert r.realized_pnl == 78.0
    assert r.positions == {}


def _reference_single(prices, tick_size, fast, slow, quantity, target, stop) -> tuple[int, float]:
    inst = {"symbol": "S", "tick_size": tick_size, "lot_size": 1, "point_value": 1}
    r = simulate(
        [inst],
        {"fast": fast, "slow": slow, "quantity": quantity},
        {"target_ticks": target, "stop_ticks": stop, "trail_ticks": 0, "breakeven_ticks": 0},
        0,
        [(0, float(p), 1.0, i) for i, p in enumerate(prices)],
    )
    return len(r.trades), r.realized_pnl


def test_pyloop_agrees_with_oracle_on_seeded_stream():
    rng = np.random.default_rng(20240601)
    # Integer-tick random walk with occasional gaps, plus off-grid noise, on a 0.05 grid.
    steps = rng.integers(-2, 3, size=20_000) + rng.choice([0, 0, 0, 0, 0, 0, 0, 0, 0, 15], 20_000)
    prices = (20_000 + np.cumsum(steps) + rng.uniform(-0.5, 0.5, 20_000)) * 0.05
    for fast, slow, target, stop in [(3, 8, 6, 4), (2, 5, 2, 2), (5, 21, 30, 12)]:
        expected = _reference_single(prices.tolist(), 0.05, fast, slow, 2, target, stop)
        assert expected[0] > 100
        assert run_single(prices, 0.05, fast, slow, 2, target, stop) == expected
        assert run_single(prices.tolist(), 0.05, fast, slow, 2, target, stop) == expected


@settings(ORACLE_SETTINGS, max_examples=min(ORACLE_SETTINGS.max_examples, 100))
@given(
    steps=st.lists(st.integers(-3, 3), max_size=300),
    fast=st.integers(1, 6),
    gap=st.integers(1, 8),
    target=st.integers(1, 8),
    stop=st.integers(1, 8),
    tick_size=st.sampled_from([0.05, 0.25, 1.0, 0.01]),
)
def test_pyloop_agrees_with_oracle_property(steps, fast, gap, target, stop, tick_size):
    prices = (1000 + np.cumsum(np.asarray(steps, dtype=np.int64))) * tick_size
    slow = fast + gap
    expected = _reference_single(prices.tolist(), tick_size, fast, slow, 1, target, stop)
    assert run_single(prices, tick_size, fast, slow, 1, target, stop) == expected
