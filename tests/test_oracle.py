"""The Numba pipeline must reproduce the pure-Python oracle exactly.

Every comparison is exact (``==`` on floats): the kernels evaluate the same float expressions in
the same order as ``tests/reference.py``, so any difference is a semantic bug, not noise.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given

from engine.backtest import run_arrays
from engine.config import parse_config
from tests.reference import Result, simulate
from tests.strategies import ORACLE_SETTINGS, Scenario, scenarios, ticks_to_arrays

TRADE_KEYS = (
    "symbol",
    "side",
    "qty",
    "entry_ts",
    "entry_price",
    "exit_ts",
    "exit_price",
    "pnl",
    "exit_reason",
)


def engine_config(
    instruments: list[dict], strategy: dict, bracket: dict, slippage_ticks: int
) -> dict:
    """The engine config dict equivalent to the oracle's inputs.

    Risk limits are set out of reach and the session is off, because the oracle has neither.
    """
    return {
        "instruments": instruments,
        "strategy": {"name": "ema_cross", **strategy},
        "bracket": bracket,
        "broker": {"name": "paper", "slippage_ticks": slippage_ticks},
        "session": {"enabled": False},
        "risk": {"max_position": 1_000_000, "max_orders_per_second": 1_000_000},
    }


def _plain(value):
    """Python scalar of a numpy scalar, so failure diffs read cleanly."""
    return value.item() if isinstance(value, np.generic) else value


def assert_engine_matches_oracle(
    instruments: list[dict],
    strategy: dict,
    bracket: dict,
    slippage_ticks: int,
    ticks: list[tuple[int, float, float, int]],
) -> Result:
    """Run both implementations on the same input and assert identical outcomes.

    Parameters
    ----------
    instruments, strategy, bracket, slippage_ticks, ticks
        As for :func:`tests.reference.simulate`.

    Returns
    -------
    Result
        The oracle's result, for callers that want to check the case was not vacuous.
    """
    expected = simulate(instruments, strategy, bracket, slippage_ticks, ticks)
    cfg = parse_config(orjson.dumps(engine_config(instruments, strategy, bracket, slippage_ticks)))
    got = run_arrays(cfg, *ticks_to_arrays(ticks))

    got_trades = [{k: _plain(t[k]) for k in TRADE_KEYS} for t in got.trades]
    # Point at the first differing trade rather than dumping two long lists.
    for i, (g, e) in enumerate(zip(got_trades, expected.trades, strict=False)):
        assert g == e, f"trade #{i} differs"
    assert len(got_trades) == len(expected.trades), "trade count differs"

    got_positions = {
        symbol: {k: _plain(v) for k, v in pos.items()} for symbol, pos in got.positions.items()
    }
    assert got_positions == expected.positions
    assert {k: v for k, v in got.rejected.items() if v} == expected.rejected
    assert _plain(got.realized_pnl) == expected.realized_pnl
    return expected


@ORACLE_SETTINGS
@given(scenarios())
def test_engine_matches_oracle(scenario: Scenario) -> None:
    assert_engine_matches_oracle(
        scenario.instruments,
        scenario.strategy,
        scenario.bracket,
        scenario.slippage_ticks,
        scenario.ticks,
    )


def _long_stream(
    seed: int, n: int, instruments: list[dict], bad_fraction: float
) -> list[tuple[int, float, float, int]]:
    """A seeded multi-instrument random walk in grid ticks, with gaps, off-grid noise and bad
    ticks, as tick tuples."""
    rng = np.random.default_rng(seed)
    k = len(instruments)
    idx = rng.integers(0, k, n)
    steps = rng.integers(-2, 3, n)
    gaps = rng.random(n) < 0.002
    steps[gaps] = rng.integers(-40, 41, int(gaps.sum()))
    grid = np.empty(n, dtype=np.float64)
    for i in range(k):
        mine = idx == i
        # Each instrument walks on its own; clamp keeps prices positive.
        grid[mine] = np.maximum(2000 + np.cumsum(steps[mine]), 1)
    off_grid = np.where(rng.random(n) < 0.3, rng.uniform(-0.5, 0.5, n), 0.0)
    tick_sizes = np.array([inst["tick_size"] for inst in instruments])
    price = (grid + off_grid) * tick_sizes[idx]
    size = rng.choice([0.0, 1.0, 25.0, 75.0], n)
    ts = 1_763_700_000_000_000_000 + np.cumsum(rng.choice([0, 1, 1_000, 1_000_000], n))

    ticks = list(zip(idx.tolist(), price.tolist(), size.tolist(), ts.tolist(), strict=True))
    for j in np.flatnonzero(rng.random(n) < bad_fraction).tolist():
        i, p, q, t = ticks[j]
        ticks[j] = [
            (k, p, q, t),
            (-1, p, q, t),
            (i, math.nan, q, t),
            (i, math.inf, q, t),
            (i, 0.0, q, t),
            (i, -p, q, t),
            (i, p, math.nan, t),
            (i, p, -1.0, t),
            (i, p, q, t - 5_000_000_000),
        ][j % 9]
    return ticks


LONG_INSTRUMENTS = [
    {"symbol": "NIFTY", "tick_size": 0.05, "lot_size": 75, "point_value": 1.0},
    {"symbol": "ES", "tick_size": 0.25, "lot_size": 1, "point_value": 50.0},
    {"symbol": "RELIANCE", "tick_size": 0.01, "lot_size": 1, "point_value": 1.0},
]


@pytest.mark.parametrize(
    ("seed", "strategy", "bracket", "slippage", "bad_fraction"),
    [
        (
            1,
            {"fast": 3, "slow": 8, "quantity": 1},
            {"target_ticks": 12, "stop_ticks": 8, "trail_ticks": 0, "breakeven_ticks": 0},
            0,
            0.0,
        ),
        (
            2,
            {"fast": 5, "slow": 20, "quantity": 2},
            {"target_ticks": 30, "stop_ticks": 10, "trail_ticks": 6, "breakeven_ticks": 4},
            1,
            0.005,
        ),
        (
            3,
            {"fast": 2, "slow": 4, "quantity": 3},
            {"target_ticks": 4, "stop_ticks": 3, "trail_ticks": 2, "breakeven_ticks": 0},
            3,
            0.01,
        ),
    ],
)
def test_engine_matches_oracle_on_long_stream(seed, strategy, bracket, slippage, bad_fraction):
    ticks = _long_stream(seed, 200_000, LONG_INSTRUMENTS, bad_fraction)
    expected = assert_engine_matches_oracle(LONG_INSTRUMENTS, strategy, bracket, slippage, ticks)
    # Guard against a vacuous pass: every instrument must have traded a lot.
    assert len(expected.trades) > 1_000
    assert {t["symbol"] for t in expected.trades} == {i["symbol"] for i in LONG_INSTRUMENTS}
