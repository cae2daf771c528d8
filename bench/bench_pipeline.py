"""Benchmarks: the batch pipeline over 1M and 10M ticks, and Python running the same strategy.

Four ways through the same one-instrument stream, in the same run, so the report can set them
against each other per tick:

* ``Engine.process`` in chunks of ``state.chunk_ticks``, as the backtest and the live feed drive
  it, draining the event ring whenever ``run_ticks`` hands back early: the realistic path;
* raw ``run_ticks`` with an event ring big enough that it never returns early: the kernel loop;
* ``bench.pyloop.run_single``: the tight pure-Python loop, given a list of floats (its fastest
  input, so the ratio is conservative);
* ``tests.reference.simulate``: the pure-Python oracle, given its tick tuples.

The engine cases also run ten instruments interleaved at random. Each round starts from a fresh
``Engine`` built in the setup, with its session calendar filled, outside the timing. Every
benchmark records ``ticks`` and ``instruments`` in ``extra_info`` for the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.pyloop import run_single
from engine.config import EngineConfig
from engine.core import Engine
from kernels import layout, run_ticks
from tests.reference import simulate

if TYPE_CHECKING:
    from bench.conftest import StrategyParams, Ticks

#: event ring rows for raw run_ticks: 10M ticks of the benchmark stream emit about 60k events
RAW_EVENT_CAPACITY = 1 << 18
#: timed rounds by nominal ticks; the 10M rounds take about a second each
ROUNDS = {1_000_000: 15, 10_000_000: 5}
#: (instruments, nominal ticks) of the engine cases
CASES = [
    pytest.param(1, 1_000_000, id="1inst-1m"),
    pytest.param(1, 10_000_000, id="1inst-10m"),
    pytest.param(10, 1_000_000, id="10inst-1m"),
    pytest.param(10, 10_000_000, id="10inst-10m"),
]
#: ticks of the pure-Python comparisons: the engine's 1M one-instrument stream
PYTHON_TICKS = 1_000_000


def _stream(request: pytest.FixtureRequest, instruments: int) -> Ticks:
    # looked up lazily, so running only the one-instrument cases never builds the other stream
    return request.getfixturevalue("ticks_1inst" if instruments == 1 else "ticks_10inst")


def _calendar_bounds(t: Ticks) -> tuple[int, int]:
    return int(t.ts.min()), int(t.ts.max())


def run_process(engine: Engine, t: Ticks) -> Engine:
    """Feed ``t`` to ``engine.process`` in chunks of ``state.chunk_ticks``, like a replay."""
    chunk = engine.cfg.state.chunk_ticks
    for a in range(0, t.n, chunk):
        b = min(a + chunk, t.n)
        engine.process(t.idx[a:b], t.price[a:b], t.size[a:b], t.ts[a:b], b - a)
    return engine


def run_raw(engine: Engine, t: Ticks) -> Engine:
    """Run ``t`` through ``run_ticks`` in one call, emptying the ring if it ever hands back."""
    state = engine.state
    book, events, ints, acct = state.book, state.events, state.ints, state.acct
    codes = state.tick_codes(t.n)
    start = 0
    while start < t.n:
        start = run_ticks(
            book, events, t.idx, t.price, t.size, t.ts, codes, state.record, state.record_ctl,
            start, t.n,
        )  # fmt: skip
        ints[acct, layout.A_EVENTS] = 0
    return engine


def _bench_engine(
    benchmark: BenchmarkFixture,
    request: pytest.FixtureRequest,
    tick_count: Callable[[int], int],
    cfg: EngineConfig,
    runner: Callable[[Engine, Ticks], Engine],
    instruments: int,
    nominal: int,
    path: str,
) -> None:
    t = _stream(request, instruments).head(tick_count(nominal))
    ts_min, ts_max = _calendar_bounds(t)

    def setup() -> tuple[tuple[Engine, Ticks], dict]:
        engine = Engine(cfg)
        engine.state.ensure_calendar(ts_min, ts_max)
        return (engine, t), {}

    benchmark.extra_info.update(
        kind=path, ticks=t.n, instruments=instruments, event_capacity=cfg.state.event_capacity
    )
    engine = benchmark.pedantic(
        runner, setup=setup, rounds=ROUNDS[nominal], warmup_rounds=1, iterations=1
    )
    state = engine.state
    assert state.account_int(layout.A_TICKS) == t.n
    assert state.account_int(layout.A_EVENTS_LOST) == 0
    benchmark.extra_info["trades"] = int(state.book[: state.n, layout.I_TRADES].sum())


@pytest.mark.benchmark(group="pipeline")
@pytest.mark.parametrize(("instruments", "nominal"), CASES)
def test_engine_process(
    benchmark: BenchmarkFixture,
    request: pytest.FixtureRequest,
    tick_count: Callable[[int], int],
    engine_config: Callable[..., EngineConfig],
    instruments: int,
    nominal: int,
) -> None:
    symbols = _stream(request, instruments).symbols
    cfg = engine_config(symbols)
    _bench_engine(benchmark, request, tick_count, cfg, run_process, instruments, nominal, "process")


@pytest.mark.benchmark(group="pipeline")
@pytest.mark.parametrize(("instruments", "nominal"), CASES)
def test_run_ticks(
    benchmark: BenchmarkFixture,
    request: pytest.FixtureRequest,
    tick_count: Callable[[int], int],
    engine_config: Callable[..., EngineConfig],
    instruments: int,
    nominal: int,
) -> None:
    symbols = _stream(request, instruments).symbols
    cfg = engine_config(symbols, event_capacity=RAW_EVENT_CAPACITY)
    _bench_engine(benchmark, request, tick_count, cfg, run_raw, instruments, nominal, "run_ticks")


@pytest.mark.benchmark(group="pipeline")
def test_pyloop(
    benchmark: BenchmarkFixture,
    ticks_1inst: Ticks,
    tick_count: Callable[[int], int],
    strategy: StrategyParams,
) -> None:
    t = ticks_1inst.head(tick_count(PYTHON_TICKS))
    prices = t.price.tolist()
    s = strategy
    args = (prices, s.tick_size, s.fast, s.slow, s.quantity, s.target_ticks, s.stop_ticks)
    benchmark.extra_info.update(kind="pyloop", ticks=t.n, instruments=1)
    trades, _ = benchmark.pedantic(run_single, args=args, rounds=7, warmup_rounds=1)
    benchmark.extra_info["trades"] = trades


@pytest.mark.benchmark(group="pipeline")
def test_oracle(
    benchmark: BenchmarkFixture,
    ticks_1inst: Ticks,
    tick_count: Callable[[int], int],
    strategy: StrategyParams,
) -> None:
    t = ticks_1inst.head(tick_count(PYTHON_TICKS))
    ticks = list(zip(t.idx.tolist(), t.price.tolist(), t.size.tolist(), t.ts.tolist(), strict=True))
    s = strategy
    instruments = [
        {"symbol": t.symbols[0], "tick_size": s.tick_size, "lot_size": 1, "point_value": 1.0}
    ]
    params = {"fast": s.fast, "slow": s.slow, "quantity": s.quantity}
    bracket = {"target_ticks": s.target_ticks, "stop_ticks": s.stop_ticks}
    benchmark.extra_info.update(kind="oracle", ticks=t.n, instruments=1)
    result = benchmark.pedantic(
        simulate, args=(instruments, params, bracket, 0, ticks), rounds=3, warmup_rounds=0
    )
    benchmark.extra_info["trades"] = len(result.trades)
    assert np.isfinite(result.realized_pnl)
