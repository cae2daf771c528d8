"""Hypothesis strategies for multi-instrument tick streams and strategy parameters.

The streams are built to hit the edges of the pinned semantics often, not to look like markets:

* prices walk in segments of small integer tick steps (so targets and stops are touched
  exactly), long flat stretches (so the EMAs converge to the last ulp and ``prev_diff == 0``
  happens), and gaps of many ticks (so stop-market exits fill through the level); most
  patterns end with a leg back to their start and repeat, so they oscillate;
* each segment sits on the grid, exactly half a tick off it (round half to even), or at a fixed
  fraction off it;
* small ``fast``/``slow`` and brackets make many trades per example; short streams and
  ``slow`` up to 20 cover the warm-up edge;
* bad ticks of every kind, alone and in combination so that the check order matters, are
  inserted after segments;
* instruments are interleaved by a seeded RNG, with equal timestamps common.

The profiles registered here are used through :data:`ORACLE_SETTINGS` (decorator) rather than
loaded globally, so other test modules keep their own settings. Pick one with the environment
variable ``OTRADE_HYPOTHESIS_PROFILE`` (``otrade`` default, ``otrade-quick``, ``otrade-deep``).
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Examples are long streams: generation is slow by hypothesis' standards and shrinking each
# distinct failing assertion separately takes minutes, so one bug at a time is reported.
_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "report_multiple_bugs": False,
}
settings.register_profile("otrade", max_examples=300, **_COMMON)
settings.register_profile("otrade-quick", max_examples=50, **_COMMON)
settings.register_profile("otrade-deep", max_examples=5000, **_COMMON)
ORACLE_SETTINGS = settings.get_profile(os.environ.get("OTRADE_HYPOTHESIS_PROFILE", "otrade"))

SYMBOLS = ("NIFTY", "ES", "RELIANCE", "CL")
TICK_SIZES = (0.05, 0.25, 1.0, 0.01)
START_TS = 1_763_700_000_000_000_000
# Keeps one example well under a second through the oracle and the engine.
MAX_TICKS_PER_INSTRUMENT = 1500

# Bad tick kinds; several break more than one rule, so the first rule in the pinned order wins.
BAD_KINDS = (
    "unknown_negative",  # idx -1
    "unknown_high",  # idx == number of instruments
    "unknown_and_nan",  # unknown_symbol beats non_finite
    "nan",
    "inf",
    "neg_inf",  # non_finite beats non_positive
    "zero",
    "neg_zero",
    "negative",
    "size_nan",
    "size_inf",
    "size_negative",
    "nan_and_bad_size",  # non_finite beats bad_size
    "zero_and_stale",  # non_positive beats stale_timestamp
    "stale",
    "stale_and_bad_size",  # bad_size beats stale_timestamp
    "future",
    "absurd_high",  # the 1.23e29, far outside the price band
    "absurd_low",
    "band_and_stale",  # stale_timestamp beats price_band
)


@dataclass(frozen=True)
class Scenario:
    """One generated backtest: configuration plus a tick stream.

    ``ticks`` holds ``(instrument index, price, size, ts_ns)`` tuples, the exact input of
    ``tests.reference.simulate``.
    """

    instruments: list[dict]
    strategy: dict
    bracket: dict
    slippage_ticks: int
    ticks: list[tuple[int, float, float, int]]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Column arrays ``(idx int64, price float64, size float64, ts int64)`` of the ticks."""
        return ticks_to_arrays(self.ticks)


def ticks_to_arrays(
    ticks: list[tuple[int, float, float, int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split tick tuples into the four column arrays the engine consumes.

    Parameters
    ----------
    ticks
        ``(instrument index, price, size, ts_ns)`` tuples.

    Returns
    -------
    tuple of np.ndarray
        ``idx`` int64, ``price`` float64, ``size`` float64, ``ts`` int64.
    """
    n = len(ticks)
    idx = np.empty(n, dtype=np.int64)
    price = np.empty(n, dtype=np.float64)
    size = np.empty(n, dtype=np.float64)
    ts = np.empty(n, dtype=np.int64)
    for i, (k, p, q, t) in enumerate(ticks):
        idx[i] = k
        price[i] = p
        size[i] = q
        ts[i] = t
    return idx, price, size, ts


def instrument_specs(n: int) -> st.SearchStrategy[list[dict]]:
    """``n`` instrument dicts with distinct symbols and exchange-like tick/lot/point values."""
    one = st.fixed_dictionaries(
        {
            "tick_size": st.sampled_from(TICK_SIZES),
            "lot_size": st.one_of(st.just(1), st.integers(1, 75)),
            "point_value": st.sampled_from((1.0, 50.0)),
        }
    )
    return st.lists(one, min_size=n, max_size=n).map(
        lambda specs: [{"symbol": SYMBOLS[i], **spec} for i, spec in enumerate(specs)]
    )


@st.composite
def strategy_params(draw: st.DrawFn) -> dict:
    """``{fast, slow, quantity}``, mostly small EMA lengths so crossovers are frequent."""
    fast = draw(st.integers(1, 8))
    slow = draw(st.one_of(st.integers(fast + 1, fast + 4), st.integers(fast + 1, 20)))
    quantity = draw(st.integers(1, 5))
    return {"fast": fast, "slow": slow, "quantity": quantity}


def bracket_params() -> st.SearchStrategy[dict]:
    """``{target_ticks, stop_ticks, trail_ticks, breakeven_ticks}``, often tight."""
    distance = st.one_of(st.integers(1, 6), st.integers(1, 30))
    optional = st.one_of(st.just(0), st.integers(1, 10))
    return st.fixed_dictionaries(
        {
            "target_ticks": distance,
            "stop_ticks": distance,
            "trail_ticks": optional,
            "breakeven_ticks": optional,
        }
    )


# A segment is (length, step in ticks per tick, offset off the grid in ticks, bad kind or None).
_offsets = st.one_of(
    st.just(0.0),
    st.sampled_from((0.5, -0.5)),
    st.floats(-0.49, 0.49, allow_nan=False, allow_infinity=False),
)
_bad = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(BAD_KINDS))
_walk_segment = st.tuples(st.integers(1, 12), st.integers(-3, 3), _offsets, _bad)
_gap_segment = st.tuples(
    st.just(1),
    st.one_of(st.integers(8, 60), st.integers(-60, -8)),
    _offsets,
    _bad,
)
# Long flat stretches let both EMAs converge to the last ulp, so diff becomes exactly 0.0 (or
# stays an ulp off): the prev_diff == 0 edge of the crossover test, and a probe of whether the
# EMA formula is evaluated exactly as pinned.
_flat_segment = st.tuples(st.integers(20, 150), st.just(0), _offsets, _bad)
segments = st.one_of(_walk_segment, _walk_segment, _walk_segment, _gap_segment, _flat_segment)


@st.composite
def instrument_events(
    draw: st.DrawFn, tick_size: float, max_segments: int, max_cycles: int
) -> list:
    """One instrument's events in order: ``("good", price)`` or ``("bad", kind)``."""
    grid = draw(st.integers(200, 5000))
    segs = draw(st.lists(segments, min_size=1, max_size=max_segments))
    # Hypothesis keeps lists short, so a drawn pattern is cycled: an up-and-down pattern
    # repeated is exactly the oscillating market that makes many crossovers and trades.
    cycles = draw(st.one_of(st.integers(1, max_cycles), st.integers(max_cycles // 2, max_cycles)))
    # Usually close the pattern with a leg back to its start, so cycles oscillate instead of
    # trending away (a trend crosses once and then holds one position for the whole stream).
    net = sum(length * step for length, step, _, _ in segs)
    if net != 0 and draw(st.integers(0, 3)) != 0:
        back = draw(st.integers(1, 3)) * (-1 if net > 0 else 1)
        segs = [*segs, (math.ceil(abs(net) / abs(back)), back, draw(_offsets), None)]
    events: list = []
    for length, step, offset, bad in segs * cycles:
        if len(events) >= MAX_TICKS_PER_INSTRUMENT:
            break
        for _ in range(length):
            # Clamp above zero: bad prices come only from the explicit bad kinds.
            grid = max(grid + step, 1)
            events.append(("good", (grid + offset) * tick_size))
        if bad is not None:
            events.append(("bad", bad))
    return events


def _bad_tick(
    kind: str, idx: int, n_instruments: int, price: float, size: float, ts: int, last_ts: int
) -> tuple[int, float, float, int]:
    """The refused tick of ``kind`` for instrument ``idx`` at the current stream position."""
    # 1 to 5000 ns before the instrument's last accepted tick, varied without another draw.
    stale = last_ts - 1 - (ts % 5000)
    match kind:
        case "unknown_negative":
            return -1, price, size, ts
        case "unknown_high":
            return n_instruments, price, size, ts
        case "unknown_and_nan":
            return n_instruments + 3, math.nan, size, ts
        case "nan":
            return idx, math.nan, size, ts
        case "inf":
            return idx, math.inf, size, ts
        case "neg_inf":
            return idx, -math.inf, size, ts
        case "zero":
            return idx, 0.0, size, ts
        case "neg_zero":
            return idx, -0.0, size, ts
        case "negative":
            return idx, -price, size, ts
        case "size_nan":
            return idx, price, math.nan, ts
        case "size_inf":
            return idx, price, math.inf, ts
        case "size_negative":
            return idx, price, -1.0, ts
        case "nan_and_bad_size":
            return idx, math.nan, -1.0, ts
        case "zero_and_stale":
            return idx, 0.0, size, stale
        case "stale":
            return idx, price, size, stale
        case "stale_and_bad_size":
            return idx, price, math.nan, stale
        case "future":
            return idx, price, size, 2**63 - 1
        case "absurd_high":
            return idx, 123456789012345678901234567890.0, size, ts
        case "absurd_low":
            return idx, price / 1000.0, size, ts
        case "band_and_stale":
            return idx, price * 1e25, size, stale
    raise ValueError(kind)


def interleave(per_instrument: list[list], seed: int) -> list[tuple[int, float, float, int]]:
    """Merge per-instrument event lists into one tick stream with a seeded random order.

    Timestamps advance by 0 (equal stamps are legal), 1 ns, 1 us, 1 ms or 250 ms per tick;
    stale bad ticks go back from their instrument's last good timestamp.
    """
    rng = random.Random(seed)
    n = len(per_instrument)
    pos = [0] * n
    last_good_price = [1.0] * n
    last_good_ts = [START_TS] * n
    ts = START_TS
    out: list[tuple[int, float, float, int]] = []
    live = [i for i in range(n) if per_instrument[i]]
    while live:
        # Runs of the same instrument are common in real feeds; bias towards them a little.
        i = out[-1][0] if out and out[-1][0] in live and rng.random() < 0.3 else rng.choice(live)
        kind, value = per_instrument[i][pos[i]]
        pos[i] += 1
        if pos[i] == len(per_instrument[i]):
            live.remove(i)
        ts += rng.choice((0, 0, 1, 1_000, 1_000_000, 250_000_000))
        size = rng.choice((0.0, 1.0, 2.0, 0.5, 50.0, 75.0))
        if kind == "good":
            out.append((i, value, size, ts))
            last_good_price[i] = value
            last_good_ts[i] = ts
        else:
            out.append(_bad_tick(value, i, n, last_good_price[i], size, ts, last_good_ts[i]))
    return out


@st.composite
def scenarios(
    draw: st.DrawFn,
    max_instruments: int = 4,
    max_segments: int = 24,
    max_cycles: int = 30,
    allow_bad: bool = True,
) -> Scenario:
    """A full backtest scenario: instruments, parameters and an interleaved tick stream.

    Parameters
    ----------
    draw
        Supplied by ``st.composite``.
    max_instruments
        Upper bound on the number of instruments (at least 1).
    max_segments
        Upper bound on distinct walk segments per instrument (each 1-12 ticks).
    max_cycles
        Upper bound on how often an instrument's segment pattern repeats. One example in four
        is short instead (at most 3 segments, no repeat) to land around the warm-up
        edge.
    allow_bad
        Whether to insert refused ticks.
    """
    n = draw(st.integers(1, max_instruments))
    instruments = draw(instrument_specs(n))
    # One in four examples is a short stream (shrinking goes there first).
    short = draw(st.integers(0, 3)) == 0
    per_instrument = [
        draw(
            instrument_events(
                inst["tick_size"], 3 if short else max_segments, 1 if short else max_cycles
            )
        )
        for inst in instruments
    ]
    if not allow_bad:
        per_instrument = [[e for e in events if e[0] == "good"] for events in per_instrument]
    seed = draw(st.integers(0, 2**32 - 1))
    return Scenario(
        instruments=instruments,
        strategy=draw(strategy_params()),
        bracket=draw(bracket_params()),
        slippage_ticks=draw(st.integers(0, 3)),
        ticks=interleave(per_instrument, seed),
    )
