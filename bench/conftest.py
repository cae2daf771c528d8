"""Shared fixtures of the benchmark suites: tick streams, engine configs, the smoke-mode switch.

CI runs ``pytest tests bench --benchmark-disable``, which runs every benchmark body once to
prove it works. In that mode every stream is cut to :data:`SMOKE_TICKS` ticks so the suites stay
quick; the test ids do not change, only the ``ticks`` recorded in ``extra_info``.

The helpers reach the benchmark modules as fixtures, never through ``import conftest``: the
name ``conftest`` is not unique when ``tests/`` has one too.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import orjson
import pytest

#: the repository root, so ``tests.reference`` and ``bench.pyloop`` import under plain ``pytest``
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.config import EngineConfig  # noqa: E402
from engine.feeds.sim import SimFeed, write_ticks_csv  # noqa: E402
from engine.feeds.ticks import TickBatch  # noqa: E402

#: ticks of every stream when benchmarks are disabled (CI smoke mode)
SMOKE_TICKS = 100_000
#: 2025-11-21 05:20 UTC in ns, a realistic 19-digit timestamp
START_TS = 1_763_702_400_000_000_000
#: seed of every simulated stream
SEED = 1
#: simulated tick rate; sets the timestamps and so how often bars close
TICKS_PER_SECOND = 1000.0
#: the largest stream the suites use
MAX_TICKS = 10_000_000
#: the one-instrument book
SINGLE = ("NIFTY",)
#: ten instruments interleaved at random by the sim feed
MULTI = tuple(f"SYM{k}" for k in range(10))
#: tick size of every benchmark instrument
TICK_SIZE = 0.05


@dataclass(frozen=True)
class StrategyParams:
    """The strategy the engine config below runs, for the pure-Python competitors."""

    tick_size: float = TICK_SIZE
    fast: int = 10
    slow: int = 30
    quantity: int = 1
    target_ticks: int = 20
    stop_ticks: int = 10


#: the benchmark strategy: ``ema_cross`` with its defaults and a 20/10-tick bracket
STRATEGY = StrategyParams()


def scaled_ticks(nominal: int, disabled: bool) -> int:
    """Return the ticks a case runs: ``nominal``, or at most SMOKE_TICKS in smoke mode.

    Parameters
    ----------
    nominal : int
        Ticks of the case when benchmarks are measured.
    disabled : bool
        True under ``--benchmark-disable``.
    """
    return min(nominal, SMOKE_TICKS) if disabled else nominal


def start_prices(symbols: tuple[str, ...]) -> list[float]:
    """Return a distinct starting price per symbol, on the tick grid."""
    return [22000.0 + 500.0 * k for k in range(len(symbols))]


def config_dict(
    symbols: tuple[str, ...], event_capacity: int = 65536, bar_seconds: int = 60
) -> dict:
    """Return the benchmark engine config as a JSON-ready dict.

    The default ``ema_cross`` strategy (fast 10, slow 30, 1 lot, bracket 20/10 ticks), session
    disabled, and risk limits out of reach, so the engine trades exactly like the oracle and the
    pure-Python loop on the same ticks.

    Parameters
    ----------
    symbols : tuple of str
        Instruments, tick size 0.05, lot size 1, point value 1.
    event_capacity : int
        Rows of the event ring.
    bar_seconds : int
        Length of the bars feeding ATR and RSI.
    """
    return {
        "instruments": [
            {"symbol": symbol, "tick_size": TICK_SIZE, "sim_start_price": price}
            for symbol, price in zip(symbols, start_prices(symbols), strict=True)
        ],
        "strategy": {
            "name": "ema_cross",
            "fast": STRATEGY.fast,
            "slow": STRATEGY.slow,
            "quantity": STRATEGY.quantity,
            "bar_seconds": bar_seconds,
        },
        "bracket": {"target_ticks": STRATEGY.target_ticks, "stop_ticks": STRATEGY.stop_ticks},
        "session": {"enabled": False},
        "risk": {"max_position": 1_000_000, "max_orders_per_second": 1_000_000},
        "state": {"event_capacity": event_capacity},
    }


@dataclass(frozen=True)
class Ticks:
    """A simulated tick stream as the four column arrays the kernels take."""

    symbols: tuple[str, ...]
    idx: np.ndarray
    price: np.ndarray
    size: np.ndarray
    ts: np.ndarray

    @property
    def n(self) -> int:
        """Ticks in the stream."""
        return int(self.idx.shape[0])

    def head(self, n: int) -> Ticks:
        """Return the first ``n`` ticks as contiguous views (the same ticks, no copy)."""
        if n > self.n:
            raise ValueError(f"the stream holds {self.n} ticks, {n} asked")
        return Ticks(self.symbols, self.idx[:n], self.price[:n], self.size[:n], self.ts[:n])


def simulate_ticks(symbols: tuple[str, ...], n: int) -> Ticks:
    """Return ``n`` ticks of the seeded sim feed over ``symbols``.

    The stream is deterministic, so its first ``m`` ticks are the ``m``-tick stream.
    """
    feed = SimFeed(
        list(symbols),
        [TICK_SIZE] * len(symbols),
        start_prices(symbols),
        SEED,
        TICKS_PER_SECOND,
        start_ts=START_TS,
    )
    batch = TickBatch(n)
    feed.fill(batch, n)
    return Ticks(symbols, batch.idx, batch.price, batch.size, batch.ts)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bench_disabled(request: pytest.FixtureRequest) -> bool:
    """Return True when benchmarks run once each (``--benchmark-disable``, the CI smoke mode)."""
    return bool(request.config.getoption("benchmark_disable"))


@pytest.fixture(scope="session")
def strategy() -> StrategyParams:
    """Return the benchmark strategy's parameters."""
    return STRATEGY


@pytest.fixture(scope="session")
def tick_count(bench_disabled: bool) -> Callable[[int], int]:
    """Return ``scaled_ticks`` bound to the session's mode: nominal ticks -> ticks to run."""
    return lambda nominal: scaled_ticks(nominal, bench_disabled)


@pytest.fixture(scope="session")
def engine_config() -> Callable[..., EngineConfig]:
    """Return a factory of validated benchmark configs; arguments as for ``config_dict``."""

    def make(symbols: tuple[str, ...], **kwargs: int) -> EngineConfig:
        return EngineConfig.model_validate(config_dict(symbols, **kwargs))

    return make


@pytest.fixture(scope="session")
def ticks_1inst(tick_count: Callable[[int], int]) -> Ticks:
    """Return the one-instrument stream, 10M ticks (SMOKE_TICKS in smoke mode), made once."""
    return simulate_ticks(SINGLE, tick_count(MAX_TICKS))


@pytest.fixture(scope="session")
def ticks_10inst(tick_count: Callable[[int], int]) -> Ticks:
    """Return the ten-instrument stream, 10M ticks (SMOKE_TICKS in smoke mode), made once."""
    return simulate_ticks(MULTI, tick_count(MAX_TICKS))


@dataclass(frozen=True)
class BacktestFiles:
    """Inputs of a whole-process backtest: the config file and a tick file per size."""

    config: Path
    ticks: Callable[[int], Path]


@pytest.fixture(scope="session")
def backtest_files(
    tmp_path_factory: pytest.TempPathFactory, tick_count: Callable[[int], int]
) -> BacktestFiles:
    """Return the one-instrument config and CSV tick files, each file written on first use.

    ``ticks(nominal)`` returns the CSV of ``tick_count(nominal)`` ticks of the same stream as
    ``ticks_1inst``.
    """
    base = tmp_path_factory.mktemp("bench_process")
    config = base / "engine.json"
    config.write_bytes(orjson.dumps(config_dict(SINGLE), option=orjson.OPT_INDENT_2))
    files: dict[int, Path] = {}

    def ticks(nominal: int) -> Path:
        n = tick_count(nominal)
        if n not in files:
            path = base / f"ticks_{n}.csv"
            write_ticks_csv(
                path,
                list(SINGLE),
                [TICK_SIZE],
                start_prices(SINGLE),
                n,
                SEED,
                START_TS,
                ticks_per_second=TICKS_PER_SECOND,
            )
            files[n] = path
        return files[n]

    return BacktestFiles(config, ticks)


# -- hooks ----------------------------------------------------------------------------------------


# -- machine info for the report ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Add what ``bench/report.py`` prints about the machine to the saved JSON."""
    machine_info["otrade"] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numba": _version("numba"),
        "llvmlite": _version("llvmlite"),
        "numpy": _version("numpy"),
        "pytest_benchmark": _version("pytest-benchmark"),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
