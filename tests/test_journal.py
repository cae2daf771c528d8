"""The journal: what it records, and a restart after SIGKILL that loses nothing."""

import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import orjson
import pytest

from engine.config import parse_config
from engine.core import Engine
from engine.journal import Journal, read_journal, restore
from engine.state import State
from kernels import layout
from tests.conftest import wait_until
from tests.live import LiveEngine
from tests.test_cli import ROOT, read_lines

TS0 = 1_763_700_000_000_000_000  # 2025-11-21 04:40 UTC


def config(tmp_path: Path, **sections) -> dict:
    return {
        "session": {"enabled": False},
        "journal": {"path": str(tmp_path / "journal.jsonl")},
        **sections,
    }


def walk(n: int, seed: int = 3) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    price = 22000 + np.cumsum(rng.integers(-2, 3, n)) * 0.05
    return np.zeros(n, np.int64), price, np.ones(n), TS0 + np.arange(n, dtype=np.int64) * 10**6


def test_every_order_and_fill_is_journaled_with_its_stamps(tmp_path):
    cfg = parse_config(orjson.dumps(config(tmp_path)))
    engine = Engine(cfg)
    journal = Journal(cfg, engine.state.symbols)
    engine.sinks.append(journal)
    idx, price, size, ts = walk(20_000)
    engine.process(idx, price, size, ts, len(idx), recv_ns=123)
    engine.kill(ts=int(ts[-1]))
    journal.close()

    lines = list(read_journal(cfg.journal.path))
    orders = [line for line in lines if line["type"] == "order"]
    fills = [line for line in lines if line["type"] == "fill"]
    assert orders and len(fills) == sum(o["action"] != "modify" for o in orders)
    for order in orders:
        assert order["tick_t"] in set(ts.tolist()) or order["action"] == "exit"
        assert order["recv_ns"] in (123, 0)
        assert order["submit_ns"] > 0
    assert len({order["tag"] for order in orders}) == len(orders)
    exits = [f for f in fills if f["action"] == "exit"]
    assert sum(f["pnl"] for f in exits) == pytest.approx(engine.state.account(layout.A_REALIZED))
    assert any(line["type"] == "risk" and line["reason"] == "halted" for line in lines)


def test_restore_rebuilds_positions_brackets_and_day_pnl(tmp_path):
    cfg = parse_config(
        orjson.dumps(config(tmp_path, bracket={"target_ticks": 400, "stop_ticks": 400}))
    )
    engine = Engine(cfg)
    journal = Journal(cfg, engine.state.symbols)
    engine.sinks.append(journal)
    idx, price, size, ts = walk(30_000)
    engine.process(idx, price, size, ts, len(idx))
    journal.close()
    before = engine.state.positions()
    assert before, "the stream should leave a position open"

    fresh = State(cfg)
    summary = restore(fresh, cfg.journal.path, date(2025, 11, 21))
    after = fresh.positions()
    assert summary["positions"] == sorted(before)
    for symbol, position in before.items():
        for key in ("side", "qty", "entry_price", "target", "stop", "entry_ts"):
            assert after[symbol][key] == pytest.approx(position[key]), key
    assert fresh.account(layout.A_REALIZED) == pytest.approx(
        engine.state.account(layout.A_REALIZED)
    )
    assert fresh.account(layout.A_DAY_REALIZED) == pytest.approx(
        engine.state.account(layout.A_DAY_REALIZED)
    )
    other_day = State(cfg)
    restore(other_day, cfg.journal.path, date(2025, 11, 22))
    assert other_day.account(layout.A_DAY_REALIZED) == 0.0


def test_kill_survives_a_restart_until_resume(tmp_path):
    cfg = parse_config(orjson.dumps(config(tmp_path)))
    engine = Engine(cfg)
    journal = Journal(cfg, engine.state.symbols)
    engine.sinks.append(journal)
    engine.kill(ts=TS0)
    journal.close()
    fresh = State(cfg)
    restore(fresh, cfg.journal.path, date(2025, 11, 21))
    assert fresh.halt_reason() == "halted"


def test_a_sigkilled_run_restarts_with_its_positions(tmp_path):
    """Kill the live process with SIGKILL while a position is open, restart, lose nothing."""
    path = tmp_path / "c.json"
    journal = tmp_path / "journal.jsonl"
    path.write_bytes(
        orjson.dumps(
            config(
                tmp_path,
                feed={"name": "sim", "seed": 7, "ticks_per_second": 20000},
                bracket={"target_ticks": 150, "stop_ticks": 150},
            )
        )
    )

    def open_positions() -> dict[str, dict]:
        held: dict[str, dict] = {}
        for line in read_lines(journal):
            if line["type"] == "fill" and line["action"] == "entry":
                held[line["symbol"]] = line
            elif line["type"] == "fill":
                held.pop(line["symbol"], None)
        return held

    first = start(path, tmp_path)
    try:
        wait_until(lambda: open_positions(), 300)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
    held = open_positions()
    realized = sum(
        line["pnl"] for line in read_lines(journal) if line["type"] == "fill" and "pnl" in line
    )
    assert held

    second = start(path, tmp_path)
    try:
        wait_until(lambda: sum(is_start(line) for line in read_lines(journal)) == 2, 300)
        restarted = [line for line in read_lines(journal) if is_start(line)][-1]
        assert restarted["restored"]["positions"] == sorted(held)
        assert restarted["restored"]["realized_pnl"] == pytest.approx(realized)
        # the open position is closed by the second run, not entered again
        symbol, entry = next(iter(held.items()))

        def closed_after_restart() -> list[dict]:
            lines = read_lines(journal)
            after = lines[lines.index(restarted) + 1 :]
            return [line for line in after if line["type"] == "fill"]

        wait_until(lambda: closed_after_restart(), 300)
        first_fill = closed_after_restart()[0]
        assert first_fill["action"] == "exit"
        assert first_fill["symbol"] == symbol
        assert first_fill["entry_ts"] == entry["tick_t"]
        assert first_fill["entry_price"] == pytest.approx(entry["price"])
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0


def is_start(line: dict) -> bool:
    return line["type"] == "control" and line["action"] == "start"


def start(config_path: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "--config", str(config_path)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_operator_controls_are_journaled_and_a_resume_lifts_the_restored_halt(tmp_path):
    cfg = parse_config(orjson.dumps(config(tmp_path)))
    engine = Engine(cfg)
    journal = Journal(cfg, engine.state.symbols)
    engine.sinks.append(journal)
    engine.controls.append(journal.control)
    engine.pause()
    engine.kill(ts=TS0)
    engine.resume()
    journal.close()
    actions = [
        line["action"] for line in read_journal(cfg.journal.path) if line["type"] == "control"
    ]
    assert actions == ["pause", "kill", "resume"]
    fresh = State(cfg)
    restore(fresh, cfg.journal.path, date(2025, 11, 21))
    assert fresh.halt_reason() is None


def test_a_run_of_the_same_refusal_is_journaled_once(tmp_path):
    sections = config(tmp_path, strategy={"name": "ema_cross", "fast": 2, "slow": 3})
    sections["session"] = {
        "enabled": True,
        "timezone": "UTC",
        "open": "09:00",
        "close": "10:00",
        "flatten_at": "10:00",
    }
    cfg = parse_config(orjson.dumps(sections))
    engine = Engine(cfg)
    journal = Journal(cfg, engine.state.symbols)
    engine.sinks.append(journal)
    idx, price, size, ts = walk(5_000)  # 04:40 UTC: the session is closed
    engine.process(idx, price, size, ts, len(idx))
    journal.close()
    refused = engine.state.refused_entries()["outside_session"]
    lines = [line for line in read_journal(cfg.journal.path) if line["type"] == "risk"]
    assert refused > 10
    assert [(line["event"], line["reason"]) for line in lines] == [("refused", "outside_session")]


def test_a_torn_last_line_is_set_aside_and_every_later_line_survives(tmp_path):
    cfg = parse_config(orjson.dumps(config(tmp_path)))
    engine = Engine(cfg)
    journal = Journal(cfg, engine.state.symbols)
    engine.sinks.append(journal)
    idx, price, size, ts = walk(2_000)
    engine.process(idx, price, size, ts, len(idx))
    journal.close()
    path = Path(cfg.journal.path)
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) > 3
    body, last = b"".join(lines[:-1]), lines[-1]
    for cut in range(len(last)):  # 0: it ends cleanly; len - 1: whole but for its newline
        path.write_bytes(body + last[:cut])
        for old in tmp_path.glob("journal.jsonl.torn-*"):
            old.unlink()
        restart = Journal(cfg, engine.state.symbols)
        restart.control("start")
        restart.line("fill", "exit", symbol="NIFTY")
        restart.close()
        whole = lines[:-1] + ([last] if cut == len(last) - 1 else [])
        after = path.read_bytes().splitlines()
        assert len(after) == len(whole) + 2, f"cut at {cut}: a line was glued or lost"
        assert [orjson.loads(line) for line in after[:-2]] == [orjson.loads(w) for w in whole]
        assert [orjson.loads(line)["action"] for line in after[-2:]] == ["start", "exit"]
        torn = list(tmp_path.glob("journal.jsonl.torn-*"))
        if cut == 0:
            assert restart.repaired is None and torn == []
        elif cut == len(last) - 1:
            assert restart.repaired == {"newline_added": True} and torn == []
        else:
            [kept] = torn
            assert kept.read_bytes() == last[:cut]
            assert restart.repaired == {"torn_bytes": cut, "kept_in": str(kept)}


def test_a_start_after_a_torn_write_says_what_it_repaired(tmp_path):
    journal = tmp_path / "journal.jsonl"
    whole = b'{"type":"control","action":"stop","ts":1}\n'
    journal.write_bytes(whole + b'{"type":"fill","action":"ex')
    live = LiveEngine(tmp_path)
    try:
        lines = live.lines()  # every line parses: nothing was glued onto the torn bytes
        [start] = [line for line in lines if line["action"] == "start"]
        assert start["repaired"]["torn_bytes"] == len(b'{"type":"fill","action":"ex')
        assert Path(start["repaired"]["kept_in"]).read_bytes() == b'{"type":"fill","action":"ex'
        assert lines[0] == orjson.loads(whole)
    finally:
        assert live.stop() == 0


def test_a_restart_shows_the_restored_account_before_any_tick(tmp_path):
    cfg = parse_config(orjson.dumps(config(tmp_path)))
    lines = []
    for k, pnl in enumerate((10.0, -30.0, 5.0)):
        day = "2025-11-20" if k == 0 else "2025-11-21"
        fill = {"symbol": "NIFTY", "qty": 1, "price": 100.0, "tick_t": TS0 + k, "day": day}
        lines.append({"type": "fill", "action": "entry", "side": "buy", "avg_price": 100.0, **fill})
        lines.append({"type": "fill", "action": "exit", "side": "sell", "pnl": pnl, **fill})
    Path(cfg.journal.path).write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    state = State(cfg)
    restore(state, cfg.journal.path, date(2025, 11, 21))
    account = {
        name: state.account(getattr(layout, f"A_{name.upper()}"))
        for name in ("realized", "day_pnl", "equity", "peak", "drawdown", "max_drawdown")
    }
    assert account == {
        "realized": -15.0,
        "day_pnl": -25.0,  # today's two exits
        "equity": -15.0,
        "peak": 10.0,
        "drawdown": 25.0,
        "max_drawdown": 30.0,  # after the -30
    }
