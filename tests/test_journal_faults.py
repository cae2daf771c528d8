"""A journal that cannot be written: a full disk, a size limit, a removed file, a bad path.

The faults are real: ``/dev/full`` answers every write with ENOSPC, ``RLIMIT_FSIZE`` set on the
running process makes its writes fail with EFBIG until it is lifted, and the file is removed
with ``os.remove`` under the open journal.
"""

from __future__ import annotations

import datetime
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from engine.config import parse_config
from engine.core import Engine
from engine.journal import Journal, read_journal, restore
from engine.state import State
from kernels import layout
from tests.conftest import config_dict, wait_until
from tests.live import ROOT, LiveEngine

TS0 = 1_763_700_000_000_000_000


def trading_walk(n: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(5)
    price = 100.0 + np.cumsum(rng.integers(-1, 2, n)) * 0.25
    return np.zeros(n, np.int64), price, np.ones(n), TS0 + np.arange(n, dtype=np.int64) * 10**6


def journal_engine(path: str) -> tuple[Engine, Journal, list]:
    sections = {"journal": {"path": path}, "bracket": {"target_ticks": 3, "stop_ticks": 3}}
    cfg = parse_config(orjson.dumps(config_dict(**sections)))
    engine = Engine(cfg)
    journal = Journal(cfg, engine.state.symbols)
    engine.sinks.append(journal)
    states: list = []
    journal.on_state = states.append
    return engine, journal, states


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_holds_the_lines_in_order_and_says_so(tmp_path) -> None:
    engine, journal, states = journal_engine("/dev/full")
    engine.process(*trading_walk(2000), 2000)
    journal.control("pause")
    assert states == [journal.error] and journal.error.startswith("ENOSPC")
    assert not journal.writable
    held = [orjson.loads(line) for line in bytes(journal._pending).splitlines()]
    fills = [line for line in held if line["type"] == "fill"]
    assert len(fills) > 10 and held[-1]["action"] == "pause"
    assert not journal.flush()  # still full: held, not lost, and no exception
    assert len(bytes(journal._pending).splitlines()) == len(held)


def test_a_journal_removed_under_the_engine_is_written_back_whole(tmp_path) -> None:
    path = tmp_path / "journal.jsonl"
    engine, journal, states = journal_engine(str(path))
    idx, price, size, ts = trading_walk(4000)
    engine.process(idx[:2000], price[:2000], size[:2000], ts[:2000], 2000)
    before = path.read_bytes()
    os.remove(path)
    engine.process(idx[2000:], price[2000:], size[2000:], ts[2000:], 2000)
    journal.close()
    after = path.read_bytes()
    assert after.startswith(before) and len(after) > len(before)
    lines = list(read_journal(path))
    assert len(lines) == len(after.splitlines())  # every line whole
    assert states == []  # nothing was lost, so nothing to report


def test_a_journal_path_that_cannot_be_written_stops_the_start(tmp_path) -> None:
    blocker = tmp_path / "var"
    blocker.write_text("a file where the journal's folder should be")
    path = tmp_path / "engine.json"
    journal = blocker / "journal.jsonl"
    path.write_bytes(orjson.dumps(config_dict(journal={"path": str(journal)})))
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--config", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "journal.path" in result.stderr and str(journal) in result.stderr


def test_a_journal_that_fails_mid_session_halts_entries_and_loses_nothing(tmp_path) -> None:
    live = LiveEngine(
        tmp_path,
        feed={"name": "sim", "seed": 3, "ticks_per_second": 2000},
        bracket={"target_ticks": 3, "stop_ticks": 3},
    )
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        wait_until(lambda: sum(line["type"] == "fill" for line in live.lines()) >= 4, 60)
        # the process may write no byte more to any file: its writes fail with EFBIG
        resource.prlimit(live.process.pid, resource.RLIMIT_FSIZE, (1, limit[1]))
        wait_until(lambda: live.status()["halt"] == "journal", 30)
        halted_at = time.time_ns()  # the sim feed dates its ticks by this clock
        ticks = live.status()["ticks"]
        wait_until(lambda: live.status()["ticks"] > ticks + 4000, 30)  # trading on, unwritten
        assert live.status()["halt"] == "journal"
        lifted_at = time.time_ns()
        resource.prlimit(live.process.pid, resource.RLIMIT_FSIZE, limit)
        wait_until(lambda: live.status()["halt"] is None, 30)
        # kill: flat and still from here, so the journal must hold every fill of the account
        live.post("/api/control/kill")
        realized = live.status()["account"]["realized"]
    finally:
        assert live.stop() == 0
    lines = live.lines()  # every line parses: none was torn or written twice
    assert len({line["tag"] for line in lines if line["type"] == "order"}) == sum(
        line["type"] == "order" for line in lines
    )
    written = [line for line in lines if line["type"] == "control" and line["action"] == "journal"]
    assert [line["state"] for line in written] == ["written"]
    # no entry while the journal could not take its line; the refusals are journaled
    fills = [line for line in lines if line["type"] == "fill"]
    assert not [f for f in fills if f["action"] == "entry" and halted_at < f["tick_t"] < lifted_at]
    during = lines[: lines.index(written[0])]
    assert any(line.get("reason") == "paused" for line in during if line["type"] == "risk")
    cfg = parse_config(live.config.read_bytes())
    restored = State(cfg)
    restore(restored, cfg.journal.path, datetime.date.today())
    assert restored.positions() == {}
    assert restored.account(layout.A_REALIZED) == pytest.approx(realized)
