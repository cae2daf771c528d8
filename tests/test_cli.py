"""The command line as users run it: `python run.py ...` in a real process."""

import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_json(path: Path, data: dict) -> Path:
    path.write_bytes(orjson.dumps(data))
    return path


def test_doctor_prints_the_resolved_config(tmp_path):
    config = write_json(tmp_path / "c.json", {"strategy": {"fast": 5, "slow": 12}})
    result = run_cli("doctor", "--config", str(config))
    assert result.returncode == 0, result.stderr
    resolved = orjson.loads(result.stdout)
    assert resolved["strategy"]["fast"] == 5
    assert resolved["bracket"]["stop_ticks"] == 10  # defaults filled in
    assert resolved["instruments"][0]["symbol"] == "NIFTY"


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"bracket": {"stop_ticks": -3}}, "bracket.stop_ticks: must be > 0, got -3"),
        ({"strategy": {"fsat": 3}}, "strategy.fsat"),
    ],
)
def test_a_bad_config_stops_every_command_with_status_2(tmp_path, config, named):
    path = write_json(tmp_path / "bad.json", config)
    ticks = tmp_path / "t.csv"
    ticks.write_text("ts,price\n1,100\n")
    for args in (["doctor"], ["backtest", "--ticks", str(ticks)], ["run"]):
        result = run_cli(*args, "--config", str(path))
        assert result.returncode == 2, args
        assert named in result.stderr
    assert not (tmp_path / "var").exists()


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "strategy": {"fast": 5,,}\n}\n')
    result = run_cli("doctor", "--config", str(path))
    assert result.returncode == 2
    assert "line 2, column" in result.stderr


def test_a_backtest_reports_a_tick_dated_ahead_of_the_file(tmp_path):
    config = write_json(tmp_path / "c.json", {"session": {"enabled": False}})
    ticks = tmp_path / "ticks.csv"
    made = run_cli("ticks", "--config", str(config), "--out", str(ticks), "--count", "3000")
    assert made.returncode == 0, made.stderr
    lines = ticks.read_text().splitlines(keepends=True)
    header = lines[0].startswith("ts")
    at = 1000 + header  # the file's tick 1000
    ts, rest = lines[at].split(",", 1)
    lines[at] = f"{int(ts) + 86_400_000_000_000},{rest}"
    ticks.write_text("".join(lines))
    report_path = tmp_path / "report.json"
    result = run_cli(
        "backtest", "--config", str(config), "--ticks", str(ticks), "--report", str(report_path)
    )
    assert result.returncode == 0, result.stderr
    report = orjson.loads(report_path.read_bytes())
    assert report["clock_jumps"] == {
        "count": 1,
        "first": [
            {
                "tick": 1000,
                "ts": int(ts) + 86_400_000_000_000,
                "next_ts": int(lines[at + 1].split(",")[0]),
            }
        ],
    }
    # what the jump did: the day's ticks after it are stale for the kernels
    assert report["rejected_ticks"] == {"stale_timestamp": 1999}


def test_backtest_writes_the_report(tmp_path):
    config = write_json(
        tmp_path / "c.json",
        {
            "instruments": [
                {"symbol": "NIFTY", "tick_size": 0.05, "sim_start_price": 22000.0},
                {"symbol": "BANKNIFTY", "tick_size": 0.05, "sim_start_price": 48000.0},
            ],
            "strategy": {"name": "ema_cross", "fast": 5, "slow": 20, "quantity": 2},
            "session": {"enabled": False},
        },
    )
    ticks = tmp_path / "ticks.csv"
    made = run_cli("ticks", "--config", str(config), "--out", str(ticks), "--count", "50000")
    assert made.returncode == 0, made.stderr
    with ticks.open("a") as file:
        file.write("1,NIFTY,abc,1\n1,NOPE,100,1\n")  # not a number, unknown symbol
    report_path = tmp_path / "out" / "report.json"
    result = run_cli(
        "backtest", "--config", str(config), "--ticks", str(ticks), "--report", str(report_path)
    )
    assert result.returncode == 0, result.stderr
    report = orjson.loads(report_path.read_bytes())

    assert report["ticks"] == 50002
    assert report["rejected_ticks"] == {"not_a_number": 1, "unknown_symbol": 1}
    # the appended rows are dated 1 ns after the epoch: the file steps back after its last tick
    (jump,) = report["clock_jumps"]["first"]
    assert report["clock_jumps"]["count"] == 1
    assert (jump["tick"], jump["next_ts"]) == (49999, 1)
    summary, trades = report["summary"], report["trades"]
    assert summary["trades"] == len(trades) > 0
    assert summary["wins"] + summary["losses"] <= summary["trades"]
    assert summary["realized_pnl"] == pytest.approx(sum(t["pnl"] for t in trades))
    assert summary["win_rate"] == pytest.approx(summary["wins"] / summary["trades"])
    assert summary["max_drawdown"] >= 0
    assert report["timing"]["ticks_per_s"] == pytest.approx(
        report["ticks"] / report["timing"]["run_s"]
    )
    for trade in trades:
        assert trade["symbol"] in ("NIFTY", "BANKNIFTY")
        assert trade["side"] in ("long", "short")
        assert trade["qty"] == 2
        assert trade["entry_ts"] <= trade["exit_ts"]
        side = 1 if trade["side"] == "long" else -1
        expected = side * (trade["exit_price"] - trade["entry_price"]) * trade["qty"]
        assert trade["pnl"] == pytest.approx(expected)
        assert trade["exit_reason"] in ("target", "stop")
    assert "realized P&L" in result.stdout


def test_backtest_refuses_a_file_without_header(tmp_path):
    ticks = tmp_path / "t.csv"
    ticks.write_text("1,100\n2,101\n")
    config = write_json(tmp_path / "c.json", {})
    result = run_cli("backtest", "--config", str(config), "--ticks", str(ticks))
    assert result.returncode == 2
    assert "header" in result.stderr


def test_run_writes_the_default_config_and_stops_cleanly_on_sigterm(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = tmp_path / "var" / "journal.jsonl"
    try:
        wait_until(lambda: any(line["action"] == "start" for line in read_lines(journal)), 300)
        assert (tmp_path / "config" / "engine.json").exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
    lines = read_lines(journal)
    assert lines[-1]["type"] == "control" and lines[-1]["action"] == "stop"


def read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = []
    for raw in path.read_bytes().splitlines():
        try:
            lines.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            continue  # a line being written right now
    return lines


def test_backtest_shows_progress_on_a_terminal_for_files_over_10m_ticks(tmp_path):
    config = write_json(tmp_path / "c.json", {"session": {"enabled": False}})
    big, small = tmp_path / "big.npy", tmp_path / "small.npy"
    assert (
        run_cli(
            "ticks", "--config", str(config), "--out", str(big), "--count", "10100000"
        ).returncode
        == 0
    )
    assert (
        run_cli(
            "ticks", "--config", str(config), "--out", str(small), "--count", "200000"
        ).returncode
        == 0
    )

    def stderr_on_a_terminal(ticks: Path) -> str:
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "run.py"),
                "backtest",
                "--config",
                str(config),
                "--ticks",
                str(ticks),
            ],
            stdout=subprocess.DEVNULL,
            stderr=follower,
        )
        os.close(follower)
        seen = bytearray()
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
        os.close(leader)
        assert process.wait(timeout=300) == 0
        return seen.decode()

    assert "100.0%" in stderr_on_a_terminal(big)
    assert "%" not in stderr_on_a_terminal(small)
