"""Benchmarks: CSV/NPY replay end to end and the sim feed, 1M ticks each.

The tick files are generated once per session with the sim writers. Parsing goes through the
public path the engine uses (``open_replay`` then ``next_chunk`` until 0), so file I/O, the
Python loop and the numba kernel are all in the number.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from engine.feeds.replay import open_replay
from engine.feeds.sim import SimFeed, write_ticks_csv, write_ticks_npy
from engine.feeds.ticks import TickBatch

#: Ticks per benchmark file and per sim fill.
N_TICKS = 1_000_000
#: Instruments of the benchmark files: index-like, stock-like and a sub-paisa tick.
SYMBOLS = ["NIFTY", "BANKNIFTY", "RELIANCE", "USDINR"]
TICK_SIZES = [0.05, 0.05, 0.1, 0.0025]
START_PRICES = [22150.25, 48000.0, 2500.0, 83.25]
#: 2025-11-21 05:20 UTC in ns, a realistic 19-digit timestamp.
START_TS = 1_763_702_400_000_000_000


@pytest.fixture(scope="session")
def tick_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bench_feeds")
    paths = {"csv": base / "ticks_1m.csv", "npy": base / "ticks_1m.npy"}
    write_ticks_csv(paths["csv"], SYMBOLS, TICK_SIZES, START_PRICES, N_TICKS, 1, START_TS)
    write_ticks_npy(paths["npy"], SYMBOLS, TICK_SIZES, START_PRICES, N_TICKS, 1, START_TS)
    return paths


def replay_all(path: Path) -> int:
    total = 0
    with open_replay(path, SYMBOLS) as replay:
        while (n := replay.next_chunk()) > 0:
            total += n
    return total


def test_replay_csv_1m(benchmark: BenchmarkFixture, tick_files: dict[str, Path]) -> None:
    replay_all(tick_files["csv"])  # compile or load the numba cache outside the timing
    benchmark.extra_info["ticks"] = N_TICKS
    benchmark.extra_info["bytes"] = tick_files["csv"].stat().st_size
    assert benchmark.pedantic(replay_all, args=(tick_files["csv"],), rounds=7) == N_TICKS


def test_replay_npy_1m(benchmark: BenchmarkFixture, tick_files: dict[str, Path]) -> None:
    benchmark.extra_info["ticks"] = N_TICKS
    assert benchmark.pedantic(replay_all, args=(tick_files["npy"],), rounds=7) == N_TICKS


def test_sim_fill_1m(benchmark: BenchmarkFixture) -> None:
    feed = SimFeed(SYMBOLS, TICK_SIZES, START_PRICES, 1, 1000.0, start_ts=START_TS)
    batch = TickBatch(N_TICKS)
    feed.fill(batch, 1)  # compile or load the numba cache outside the timing
    benchmark.extra_info["ticks"] = N_TICKS
    assert benchmark(feed.fill, batch, N_TICKS) == N_TICKS
