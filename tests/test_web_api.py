"""The control surface of a real ``run.py`` process: REST, auth, kill, PATCH and ``/ws``."""

from __future__ import annotations

import os
import stat
import time

import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import wait_until
from tests.live import LiveEngine

#: a fast zig-zag sim feed: with fast=1/slow=2 EMAs nearly every reversal is a crossover
FAST_TRADING = {
    "instruments": [{"symbol": "NIFTY", "tick_size": 0.05, "sim_start_price": 22000.0}],
    "feed": {"name": "sim", "ticks_per_second": 2000, "sim_step_ticks": 3},
    "bracket": {"target_ticks": 4, "stop_ticks": 4},
}


@pytest.fixture
def live(tmp_path):
    engine = LiveEngine(tmp_path, **FAST_TRADING)
    yield engine
    engine.stop()


def order_lines(live: LiveEngine) -> list[dict]:
    return [line for line in live.lines() if line["type"] == "order"]


def test_reads_are_open_and_every_write_needs_the_token(live: LiveEngine) -> None:
    status = live.status()
    assert status["feed"]["state"] == "running" and status["halt"] is None
    for path in ("instruments", "positions", "orders", "trades", "performance", "config"):
        assert live.http.get(f"/api/{path}").status_code == 200
    missing = live.http.post("/api/control/pause")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = live.http.post("/api/control/pause", headers=live.auth("not-the-token"))
    assert wrong.status_code == 403
    assert live.http.patch("/api/strategy", json={"strategy": {"fast": 2}}).status_code == 401
    assert live.status()["paused"] is False  # nothing refused was applied
    assert live.status()["refused_requests"] == {"401": 2, "403": 1}
    body = live.http.get("/api/config").text
    assert "test-token" not in body and "test-token" not in live.out.read_text()


def test_pause_resume_and_flatten(live: LiveEngine) -> None:
    assert live.post("/api/control/pause").json()["halt"] == "paused"
    assert live.status()["paused"] is True
    assert live.post("/api/control/resume").json()["paused"] is False
    assert live.post("/api/control/flatten", json={"symbol": "NOPE"}).status_code == 404
    assert live.post("/api/control/explode").status_code == 404
    assert live.post("/api/control/pause", json={"symbol": "NIFTY"}).status_code == 422
    assert live.post("/api/control/flatten", json={"symbol": "NIFTY"}).status_code == 200
    actions = [line["action"] for line in live.lines() if line["type"] == "control"]
    assert actions[-3:] == ["pause", "resume", "flatten"]


def test_kill_stops_every_order_until_resume(live: LiveEngine) -> None:
    wait_until(lambda: len(order_lines(live)) >= 2, timeout=20)
    killed = live.post("/api/control/kill").json()
    assert killed["halt"] == "halted"
    ticks = killed["ticks"]
    assert live.http.get("/api/positions").json() == []
    # a crossover every few ticks: thousands of ticks later, every signal was refused
    wait_until(lambda: live.status()["ticks"] > ticks + 3000, timeout=20)
    assert live.status()["refused_entries"].get("halted", 0) > 0
    lines = live.lines()
    kill_at = max(k for k, line in enumerate(lines) if line.get("action") == "kill")
    after = [line for line in lines[kill_at + 1 :] if line["type"] == "order"]
    assert [line["action"] for line in after] in ([], ["exit"])  # only the kill's flatten
    live.post("/api/control/resume")
    wait_until(lambda: order_lines(live)[-1]["action"] == "entry", timeout=20)


def test_patch_strategy_validates_applies_and_journals(live: LiveEngine) -> None:
    bad = live.http.patch("/api/strategy", json={"strategy": {"fast": 0}}, headers=live.auth())
    assert bad.status_code == 422
    assert bad.json()["detail"] == "strategy.fast: must be >= 1, got 0"
    for body, field in (
        ({"strategy": {"fast": 40, "slow": 30}}, "strategy"),
        ({"bracket": {"stop_ticks": "3"}}, "bracket.stop_ticks"),
        ({"risk": {"max_position": 1}}, "risk"),
        ({"strategy": {"quick": 3}}, "strategy.quick"),
        # beyond 64 bits: orjson cannot even write these back, the models refuse them by name
        ({"strategy": {"fast": 123456789012345678901234567890}}, "strategy.fast"),
        ({"bracket": {"target_ticks": -(2**70)}}, "bracket.target_ticks"),
    ):
        response = live.http.patch("/api/strategy", json=body, headers=live.auth())
        assert response.status_code == 422 and response.json()["detail"].startswith(field)
    good = live.http.patch("/api/strategy", json={"strategy": {"quantity": 3}}, headers=live.auth())
    assert good.status_code == 200 and good.json()["strategy"]["quantity"] == 3
    assert live.http.get("/api/config").json()["strategy"]["quantity"] == 3
    wait_until(
        lambda: (
            [line["qty"] for line in order_lines(live) if line["action"] == "entry"][-1:] == [3]
        ),
        timeout=20,
    )
    changes = [line for line in live.lines() if line.get("action") == "strategy"]
    assert [line["changes"] for line in changes] == [{"strategy": {"quantity": 3}}]


def test_the_websocket_pushes_snapshots_and_events(live: LiveEngine) -> None:
    url = f"ws://127.0.0.1:{live.port}/ws"
    for token, code in ((None, 4401), ("wrong", 4403)):
        with connect(url + (f"?token={token}" if token else "")) as socket:
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=5)
            assert closed.value.rcvd.code == code
    with connect(url, additional_headers=live.auth()) as socket:
        first = orjson.loads(socket.recv(timeout=5))
        assert first["type"] == "snapshot" and {"orders", "trades"} <= set(first)
        kinds: set[str] = set()
        snapshots = 0
        deadline = time.monotonic() + 20
        while not {"entry", "exit"} <= kinds or snapshots < 3:
            assert time.monotonic() < deadline, kinds
            message = orjson.loads(socket.recv(timeout=5))
            if message["type"] == "events":
                kinds.update(event["type"] for event in message["events"])
            else:
                snapshots += 1
                assert message["instruments"][0]["symbol"] == "NIFTY"
        assert live.status()["clients"] == 1


def test_a_generated_token_is_written_0600_beside_the_journal(tmp_path) -> None:
    live = LiveEngine(tmp_path, token=None)
    try:
        path = tmp_path / "token"
        token = path.read_text().strip()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert live.post("/api/control/pause").status_code == 403  # the default test token
        assert live.http.post("/api/control/pause", headers=live.auth(token)).status_code == 200
    finally:
        live.stop()


def test_sigterm_stops_within_a_second_with_the_journal_flushed(tmp_path) -> None:
    live = LiveEngine(tmp_path, **FAST_TRADING)
    with connect(f"ws://127.0.0.1:{live.port}/ws", additional_headers=live.auth()):
        started = time.monotonic()
        assert live.stop() == 0
        assert time.monotonic() - started < 1.0
    assert live.lines()[-1]["action"] == "stop"


def test_a_busy_port_stops_the_start_naming_the_field(tmp_path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    live = LiveEngine(first)
    try:
        # the exit status is 2 and the one-line message names the field
        with pytest.raises(AssertionError, match="config error: web.port: cannot listen"):
            LiveEngine(second, web={"port": live.port})
    finally:
        live.stop()
