"""The live path end to end: ``run.py simfeed`` -> ``run.py`` over a real WebSocket."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter

from tests.conftest import free_port, wait_until
from tests.live import ROOT, LiveEngine


def start_simfeed(tmp_path, port: int) -> subprocess.Popen:
    out = open(tmp_path / f"simfeed-{port}.txt", "ab")  # noqa: SIM115 - lives with the process
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "--config",
            str(tmp_path / "engine.json"),
            "simfeed",
            "--port",
            str(port),
            "--rate",
            "3000",
        ],
        cwd=tmp_path,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    wait_until(lambda: b"streaming" in (tmp_path / f"simfeed-{port}.txt").read_bytes(), 120)
    return process


def journal_positions(lines: list[dict]) -> dict[str, int]:
    """Signed units held per symbol after replaying the journal's fills."""
    held: Counter[str] = Counter()
    for line in lines:
        if line["type"] == "fill":
            held[line["symbol"]] += line["qty"] if line["side"] == "buy" else -line["qty"]
    return {symbol: qty for symbol, qty in held.items() if qty}


def test_the_feed_server_dies_and_returns_without_duplicate_orders(tmp_path) -> None:
    port = free_port()
    live = LiveEngine(
        tmp_path,
        instruments=[
            {"symbol": "NIFTY", "tick_size": 0.05, "sim_start_price": 22000.0},
            {"symbol": "BANKNIFTY", "tick_size": 0.05, "sim_start_price": 48000.0},
        ],
        bracket={"target_ticks": 6, "stop_ticks": 6},
        feed={"name": "ws", "url": f"ws://127.0.0.1:{port}/", "stale_after_s": 5},
    )
    feed = start_simfeed(tmp_path, port)
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        wait_until(lambda: sum(line["type"] == "order" for line in live.lines()) >= 4, 30)
        feed.kill()  # mid-stream, no close frame
        feed.wait()
        wait_until(lambda: live.status()["feed"]["state"] == "disconnected", 10)
        status = live.status()
        assert status["halt"] == "feed"
        held = live.http.get("/api/positions").json()
        ticks = status["ticks"]

        feed = start_simfeed(tmp_path, port)
        wait_until(lambda: live.status()["ticks"] > ticks + 3000, 30)
        status = live.status()
        assert status["feed"]["state"] == "connected" and status["halt"] is None
        assert status["feed"]["reconnects"] >= 1
        # nothing moved while the feed was away: the first new tick met the same positions
        lines = live.lines()
        feed_states = [(k, line["state"]) for k, line in enumerate(lines) if "state" in line]
        down = next(k for k, state in feed_states if state == "disconnected")
        up = next(k for k, state in feed_states if k > down and state == "connected")
        assert not [line for line in lines[down:up] if line["type"] in ("order", "fill")]
        assert {p["symbol"]: p["qty"] for p in held} == {
            symbol: abs(qty) for symbol, qty in journal_positions(lines[:down]).items()
        }
        feed.send_signal(signal.SIGTERM)
        feed.wait()
        wait_until(lambda: live.status()["feed"]["state"] == "disconnected", 10)
        lines = live.lines()
        orders = [line for line in lines if line["type"] == "order"]
        assert len({line["tag"] for line in orders}) == len(orders)
        entries = [(line["symbol"], line["tick_t"]) for line in orders if line["action"] == "entry"]
        assert len(set(entries)) == len(entries)
        now = {p["symbol"]: p["qty"] for p in live.http.get("/api/positions").json()}
        assert now == {symbol: abs(qty) for symbol, qty in journal_positions(lines).items()}
    finally:
        if feed.poll() is None:
            feed.kill()
        assert live.stop() == 0
