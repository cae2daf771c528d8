"""Benchmark: load config/engine.json (read + orjson + pydantic validation)."""

from __future__ import annotations

from pathlib import Path

from pytest_benchmark.fixture import BenchmarkFixture

from engine.config import DEFAULT_CONFIG_PATH, EngineConfig, load_config

CONFIG = Path(__file__).resolve().parents[1] / DEFAULT_CONFIG_PATH


def test_config_load(benchmark: BenchmarkFixture) -> None:
    cfg = benchmark(load_config, CONFIG)
    assert isinstance(cfg, EngineConfig)
