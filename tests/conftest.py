"""Shared helpers: configs, engines, tick arrays, an event-collecting sink, polling."""

from __future__ import annotations

import copy
import socket
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from engine.config import EngineConfig, parse_config
from engine.core import Engine
from engine.events import event_record, trade_records
from engine.state import State
from kernels import layout

# the brokers' harnesses hold fixtures loaded with ``pytest_plugins`` after a test module has
# imported them: rewrite their asserts from the first import
pytest.register_assert_rewrite(
    "tests.kite_harness", "tests.upstox_harness", "tests.projectx_harness"
)

#: 2025-11-21 04:40:00 UTC (10:10 in Asia/Kolkata), a Friday
T0 = 1_763_700_000_000_000_000
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

#: a quiet base for tests: one instrument on a binary-exact tick, the session off, limits far
BASE_CONFIG: dict = {
    "instruments": [{"symbol": "AAA", "tick_size": 0.25, "lot_size": 1, "point_value": 1.0}],
    "strategy": {"fast": 1, "slow": 2, "quantity": 1, "bar_seconds": 60},
    "bracket": {"target_ticks": 100, "stop_ticks": 100},
    "risk": {"max_position": 1000, "max_orders_per_second": 1_000_000},
    "session": {"enabled": False},
}


def config_dict(**sections: dict | list) -> dict:
    """Return BASE_CONFIG with each given section's keys merged in (lists replace)."""
    data = copy.deepcopy(BASE_CONFIG)
    for name, value in sections.items():
        if isinstance(value, dict):
            data[name] = {**data.get(name, {}), **value}
        else:
            data[name] = value
    return data


def make_config(**sections: dict | list) -> EngineConfig:
    """Build a validated config the way the engine reads one: JSON through parse_config."""
    return parse_config(orjson.dumps(config_dict(**sections)))


def make_state(**sections: dict | list) -> State:
    return State(make_config(**sections))


def make_engine(**sections: dict | list) -> tuple[Engine, EventLog]:
    """Return an engine and an EventLog sink collecting everything it drains."""
    engine = Engine(make_config(**sections))
    log = EventLog(engine.state.symbols)
    engine.sinks.append(log)
    return engine, log


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def local_ns(text: str, zone: str) -> int:
    """UTC ns of a local wall time ``"YYYY-MM-DD HH:MM[:SS]"`` in ``zone``."""
    moment = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))
    return int(moment.timestamp()) * SECOND


class Ticks:
    """A tick stream under construction; ``arrays()`` gives the engine's four columns."""

    def __init__(self, ts: int = T0, step: int = SECOND) -> None:
        self.rows: list[tuple[int, float, float, int]] = []
        self.ts = ts
        self.step = step

    def add(self, price: float, *, idx: int = 0, size: float = 1.0, ts: int | None = None):
        """Append one tick at ``ts`` or one step after the previous one; return its ts."""
        if ts is None:
            ts = self.ts + self.step if self.rows else self.ts
        self.ts = ts
        self.rows.append((idx, float(price), float(size), int(ts)))
        return ts

    def extend(self, prices: Iterable[float], *, idx: int = 0, start: int | None = None):
        """Append ticks one step apart, the first at ``start`` when given."""
        for k, price in enumerate(prices):
            self.add(price, idx=idx, ts=start if k == 0 and start is not None else None)
        return self

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return tick_arrays(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def tick_arrays(rows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split ``(idx, price, size, ts)`` rows into int64, float64, float64, int64 arrays."""
    idx = np.array([r[0] for r in rows], np.int64)
    price = np.array([r[1] for r in rows], np.float64)
    size = np.array([r[2] for r in rows], np.float64)
    ts = np.array([r[3] for r in rows], np.int64)
    return idx, price, size, ts


def run(engine: Engine, ticks: Ticks | list) -> None:
    """Process a whole stream in one batch."""
    rows = ticks.rows if isinstance(ticks, Ticks) else ticks
    arrays = tick_arrays(rows)
    engine.process(*arrays, len(rows))


class EventLog:
    """An engine sink keeping a copy of every drained event row (the ring is reused)."""

    def __init__(self, symbols: tuple[str, ...]) -> None:
        self.symbols = symbols
        self.blocks: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray, recv_ns: int) -> None:
        self.blocks.append(rows.copy())

    @property
    def rows(self) -> np.ndarray:
        if not self.blocks:
            return np.zeros((0, layout.N_EVENT_COLS), np.int64)
        return np.concatenate(self.blocks)

    def records(self, kind: str | None = None) -> list[dict]:
        out = [event_record(row, self.symbols) for row in self.rows]
        return out if kind is None else [r for r in out if r["type"] == kind]

    def trades(self) -> list[dict]:
        return trade_records(self.rows, self.symbols)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
