"""The flight recorder: a live session's recording replays to the journal it wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from engine.config import parse_config
from engine.core import Engine
from engine.record import SUFFIX, Recorder
from engine.replay_session import read_records, recording_files, replay_session
from kernels import layout
from tests.conftest import config_dict, wait_until
from tests.fakes.kite import FakeKite
from tests.kite_live import INFY, open_long, placed
from tests.kite_live import start as kite_start
from tests.live import ROOT, LiveEngine

#: the fields a replayed order or fill line must share with the live one
SAME = ("type", "action", "symbol", "side", "qty", "price", "tick_t", "reason", "pnl")


def trading_lines(path: Path) -> list[dict]:
    lines = [orjson.loads(raw) for raw in path.read_bytes().splitlines()]
    return [
        {key: line.get(key) for key in SAME} for line in lines if line["type"] in ("order", "fill")
    ]


def replay(config: Path, recording: Path, journal: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "run.py"), "--config", str(config), "replay-session"]
    command += ["--recording", str(recording), "--journal", str(journal)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_a_paper_session_with_controls_replays_to_the_same_orders(tmp_path) -> None:
    live = LiveEngine(
        tmp_path,
        instruments=[
            {"symbol": "AAA", "tick_size": 0.25, "sim_start_price": 100.0},
            {"symbol": "BBB", "tick_size": 0.05, "sim_start_price": 50.0},
        ],
        feed={"name": "sim", "seed": 11, "ticks_per_second": 3000},
        bracket={"target_ticks": 4, "stop_ticks": 4, "trail_ticks": 2},
        risk={"max_position": 1000, "max_orders_per_second": 1_000_000, "daily_loss_limit": 1e9},
    )

    def fills() -> int:
        return sum(line["type"] == "fill" for line in live.lines())

    def trade_on(more: int) -> None:
        count = fills()
        wait_until(lambda: fills() > count + more, 60)

    def tick_on() -> None:  # paused or killed: no fills, only ticks
        ticks = live.status()["ticks"]
        wait_until(lambda: live.status()["ticks"] > ticks + 1000, 60)

    try:
        for action, body, then in (
            ("pause", None, tick_on),
            ("resume", None, lambda: trade_on(3)),
            ("flatten", {"symbol": "BBB"}, lambda: trade_on(3)),
            ("kill", None, tick_on),
            ("resume", None, lambda: trade_on(3)),
        ):
            assert live.post(f"/api/control/{action}", json=body).status_code == 200
            then()
        patch = {"strategy": {"fast": 2, "slow": 4}, "bracket": {"stop_ticks": 6}}
        answer = live.http.patch("/api/strategy", json=patch, headers=live.auth())
        assert answer.status_code == 200
        trade_on(6)
    finally:
        assert live.stop() == 0
    recorded = trading_lines(live.journal)
    actions = [line["action"] for line in live.lines() if line["type"] == "control"]
    assert {"pause", "resume", "flatten", "kill", "strategy"} <= set(actions)

    out = tmp_path / "replayed.jsonl"
    result = replay(live.config, tmp_path / "var" / "record", out)
    assert result.returncode == 0, result.stderr
    replayed = trading_lines(out)
    assert len(recorded) > 40
    assert replayed == recorded


def _recorder(tmp_path: Path, record_dir: str) -> tuple[Engine, Recorder]:
    sections = {"journal": {"path": str(tmp_path / "j.jsonl")}, "record": {"dir": record_dir}}
    cfg = parse_config(orjson.dumps(config_dict(**sections)))
    engine = Engine(cfg)
    recorder = Recorder(cfg, engine.state, "run1")
    engine.recorder = recorder
    return engine, recorder


def _walk(n: int, t0: int = 1_763_700_000_000_000_000) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(2)
    price = 100.0 + np.cumsum(rng.integers(-1, 2, n)) * 0.25
    return np.zeros(n, np.int64), price, np.ones(n), t0 + np.arange(n, dtype=np.int64) * 10**6


def test_a_recording_cut_mid_record_replays_up_to_its_last_whole_record(tmp_path) -> None:
    engine, recorder = _recorder(tmp_path, str(tmp_path / "rec"))
    recorder.open("2025-11-21")
    idx, price, size, ts = _walk(3000)
    for start in range(0, 3000, 100):
        end = start + 100
        engine.process(idx[start:end], price[start:end], size[start:end], ts[start:end], 100)
    recorder.close()
    path = recorder.path
    whole = sum(1 for kind, *_ in read_records(path) if kind == 1)
    assert whole == 30
    path.write_bytes(path.read_bytes()[:-40])  # the last batch loses its tail
    assert sum(1 for kind, *_ in read_records(path) if kind == 1) == 29
    cfg = parse_config(orjson.dumps(config_dict(journal={"path": str(tmp_path / "x.jsonl")})))
    totals = replay_session(cfg, path, tmp_path / "replayed.jsonl")
    assert (totals["batches"], totals["ticks"]) == (29, 2900)


def test_a_new_trading_day_starts_a_new_file_with_its_own_snapshot(tmp_path) -> None:
    engine, recorder = _recorder(tmp_path, str(tmp_path / "rec"))
    recorder.open("2025-11-21")
    idx, price, size, ts = _walk(200)
    engine.process(idx[:100], price[:100], size[:100], ts[:100], 100)
    recorder.roll("2025-11-21")  # the same day: flushed, same file
    recorder.roll("2025-11-22")
    engine.process(idx[100:], price[100:], size[100:], ts[100:], 100)
    recorder.close()
    files = recording_files(tmp_path / "rec")
    assert [f.name for f in files] == [f"2025-11-2{d}-run1-000{SUFFIX}" for d in (1, 2)]
    for path in files:
        kinds = [kind for kind, *_ in read_records(path)]
        assert kinds[:2] == [3, 4] and kinds.count(1) == 1  # header, book, one batch


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_recording_that_cannot_be_written_drops_and_counts_and_trading_goes_on(tmp_path):
    engine, recorder = _recorder(tmp_path, str(tmp_path / "rec"))
    (tmp_path / "rec").mkdir()
    # the day's first part lands on a full disk: every write fails with ENOSPC
    (tmp_path / "rec" / f"2025-11-21-run1-000{SUFFIX}").symlink_to("/dev/full")
    recorder.open("2025-11-21")
    idx, price, size, ts = _walk(1000)
    engine.process(idx, price, size, ts, 1000)
    recorder.flush()
    assert recorder.lost >= 1000 * 32 and recorder.written == 0
    assert recorder.status()["error"].endswith("No space left on device")
    assert engine.state.account_int(layout.A_TICKS) == 1000  # every tick ran
    recorder.roll("2025-11-21")  # the next second: a new part with its own snapshot
    assert recorder.path.name.endswith(f"-001{SUFFIX}") and recorder.status()["bytes"] > 0
    engine.process(idx, price, size, ts + 10**12, 1000)
    recorder.close()
    kinds = [kind for kind, *_ in read_records(recorder.path)]
    assert kinds == [3, 4, 1]  # header, snapshot, the batch after the failure


def kernel_lines(path: Path) -> list[dict]:
    """The kernels' own lines: intents (orders ``entry``/``exit``), stop moves and fills."""
    return [
        line
        for line in trading_lines(path)
        if line["type"] == "fill" or line["action"] in ("entry", "exit", "modify")
    ]


def test_a_kite_session_replays_to_the_same_intents_and_fills(tmp_path) -> None:
    with FakeKite([{**INFY, "last_price": 100.0}]) as fake:
        live = kite_start(tmp_path, fake)
        try:
            open_long(live, fake)
            wait_until(lambda: len(placed(fake)) == 3, 10)
            fake.push_ticks("INFY", [100.4, 100.0])  # the stop fills
            wait_until(lambda: live.http.get("/api/positions").json() == [], 10)
            assert live.post("/api/control/pause").status_code == 200
            fake.push_ticks("INFY", [100.0, 100.0, 101.0])  # a crossing, refused: paused
            assert live.post("/api/control/resume").status_code == 200
            patch = {"bracket": {"stop_ticks": 6}}
            assert live.http.patch("/api/strategy", json=patch, headers=live.auth()).is_success
            fake.push_ticks("INFY", [100.0, 100.0, 100.0, 101.0])  # crosses up again: a buy
            wait_until(lambda: len(live.http.get("/api/positions").json()) == 1, 10)
            assert live.post("/api/control/flatten").status_code == 200
            wait_until(lambda: live.http.get("/api/positions").json() == [], 10)
        finally:
            assert live.stop() == 0
    recorded = kernel_lines(live.journal)
    assert [line["action"] for line in recorded if line["type"] == "order"].count("entry") == 2
    out = tmp_path / "replayed.jsonl"
    result = replay(live.config, tmp_path / "var" / "record", out)
    assert result.returncode == 0, result.stderr
    assert kernel_lines(out) == recorded
