"""Feed faults against a real ``run.py`` on a ws feed (issue 10): the server closing mid-frame, a
stalled (slowloris) server, a reconnect storm. None applies part of a frame, none stops the loop,
each halts entries while it lasts, and trading resumes without a repeated order."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.conftest import wait_until
from tests.fault_harness import NIFTY, FeedServer, Killable


@pytest.fixture
def feed():
    with FeedServer() as server:
        yield server


def frame(*prices: float) -> bytes:
    return orjson.dumps([{"s": "NIFTY", "p": p, "q": 1, "t": time.time_ns()} for p in prices])


def engine(tmp_path, feed: FeedServer, stale_after_s: float = 5) -> Killable:
    live = Killable(
        tmp_path,
        instruments=[NIFTY],
        feed={"name": "ws", "url": feed.url, "stale_after_s": stale_after_s},
    )
    wait_until(lambda: feed.clients == 1 and live.status()["feed"]["state"] == "connected", 10)
    return live


def orders(live: Killable) -> list[dict]:
    return [line for line in live.lines() if line["type"] == "order"]


def ticks_seen(live: Killable, n: int) -> bool:
    return live.status()["ticks"] == n


def test_a_frame_cut_by_the_server_closing_applies_nothing_and_the_feed_comes_back(
    tmp_path, feed
) -> None:
    live = engine(tmp_path, feed)
    try:
        feed.send(frame(22000.0, 22000.0, 22000.0))
        wait_until(lambda: ticks_seen(live, 3), 5)
        crossing = frame(*[22000.0] * 50, 22001.0)  # would enter long on its last tick
        feed.send_cut(crossing, keep=len(crossing) // 2)
        wait_until(lambda: live.status()["feed"]["reconnects"] >= 1, 10)
        wait_until(lambda: feed.clients == 1 and live.status()["feed"]["state"] == "connected", 10)
        assert live.status()["ticks"] == 3 and orders(live) == []
        states = [line["state"] for line in live.lines() if line["action"] == "feed"]
        assert states[-2:] == ["disconnected", "connected"]

        feed.send(crossing)  # whole, it trades: the cut copy was refused, not ignored by luck
        wait_until(lambda: len(orders(live)) == 1, 5)
        assert live.http.get("/api/positions").json()[0]["qty"] == 1
    finally:
        assert live.stop() == 0


def test_a_stalled_server_halts_entries_without_blocking_the_loop(tmp_path, feed) -> None:
    live = engine(tmp_path, feed, stale_after_s=1)
    try:
        feed.send(frame(22000.0, 22000.0, 22000.0))
        wait_until(lambda: ticks_seen(live, 3), 5)
        feed.trickle(frame(22000.0, 22001.0), interval_s=0.2)  # one byte every 200 ms
        wait_until(lambda: live.status()["halt"] == "feed", 5)
        status = live.status()
        assert status["feed"]["state"] == "stale" and status["ticks"] == 3
        for _ in range(5):  # the loop still answers at once while the frame trickles
            began = time.monotonic()
            assert live.post("/api/control/pause").status_code == 200
            assert live.post("/api/control/resume").status_code == 200
            assert time.monotonic() - began < 1.0
        assert orders(live) == []

        feed.stop()
        feed.drop_all()  # the server gives up on the frame: a new connection, fresh ticks
        wait_until(lambda: live.status()["feed"]["reconnects"] >= 1, 10)
        wait_until(lambda: feed.clients == 1, 10)
        feed.send(frame(22000.0, 22000.0, 22001.0))
        wait_until(lambda: len(orders(live)) == 1, 5)
        assert live.status()["halt"] is None
    finally:
        assert live.stop() == 0


def test_a_server_that_never_answers_the_handshake_is_retried(tmp_path, feed) -> None:
    feed.mode = "hang"
    live = Killable(tmp_path, instruments=[NIFTY], feed={"name": "ws", "url": feed.url})
    try:
        wait_until(lambda: feed.accepted >= 1, 10)
        status = live.status()
        assert status["feed"]["state"] != "connected" and status["halt"] == "feed"
        feed.mode = "serve"  # picows gives up on the hung handshake after 5 s and tries again
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 15)
        assert feed.accepted >= 2 and feed.handshakes == 1
    finally:
        assert live.stop() == 0


def test_a_reconnect_storm_backs_off_then_trades_on_without_repeats(tmp_path, feed) -> None:
    live = engine(tmp_path, feed)
    try:
        feed.send(frame(22000.0, 22000.0, 22000.0, 22001.0))
        wait_until(lambda: len(orders(live)) == 1, 5)
        feed.mode = "drop"  # every connection is closed right after its handshake
        began, handshakes = time.monotonic(), feed.handshakes
        feed.drop_all()
        wait_until(lambda: feed.handshakes >= handshakes + 5, 20)
        # back-off of 0.1 s doubling, jittered down to half: five retries take >= 0.75 s
        assert time.monotonic() - began >= 0.7
        status = live.status()
        assert status["halt"] == "feed" and status["feed"]["reconnects"] >= 5
        assert len(orders(live)) == 1

        feed.mode = "serve"
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 15)
        feed.send(frame(21995.0))  # through the stop, 100 ticks under the entry
        wait_until(lambda: [line for line in orders(live) if line["action"] == "exit"], 5)
        assert [line.get("reason") for line in orders(live)][:2] == [None, "stop"]
        assert live.status()["halt"] is None
        tags = [line["tag"] for line in orders(live)]
        assert len(set(tags)) == len(tags)
        entries = [line["tick_t"] for line in orders(live) if line["action"] == "entry"]
        assert len(set(entries)) == len(entries)
    finally:
        assert live.stop() == 0
