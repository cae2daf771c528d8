"""`python run.py simfeed` as users run it: a real server process, real sockets, picows clients."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from engine.feeds.sim import SimFeed
from engine.feeds.ticks import TickBatch
from tests.conftest import SECOND, wait_until

ROOT = Path(__file__).resolve().parents[1]
#: two configured instruments on different grids; ZZZ (not configured) gets tick 0.05 at 100
INSTRUMENTS = [
    {"symbol": "NIFTY", "tick_size": 0.05, "sim_start_price": 22000.0},
    {"symbol": "BANKNIFTY", "tick_size": 0.25, "sim_start_price": 48000.0},
]
SYMBOLS = ["NIFTY", "BANKNIFTY", "ZZZ"]
TICK_SIZES = {"NIFTY": 0.05, "BANKNIFTY": 0.25, "ZZZ": 0.05}


class Server:
    """A `run.py simfeed --port 0` process; ``url`` comes from the line it prints on start."""

    def __init__(self, config: Path, stderr: Path, *args: str) -> None:
        self.stderr = stderr
        with stderr.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "run.py"), "--config", str(config), "simfeed"]
                + ["--port", "0", *args],
                cwd=config.parent,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def url(self) -> str:
        """Wait for the start line; the first start on a fresh clone compiles the kernels."""
        return wait_until(self._url, 120)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def _url(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(f"simfeed exited: {self.stderr.read_text()}")
        found = (re.search(r"ws://\S+", line) for line in self.lines)
        return next((m.group(0) for m in found if m), None)

    def stop(self) -> int:
        """SIGTERM, then the exit status, which must come promptly."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=5)


class Client(WSListener):
    """A picows client on its own event loop thread, keeping every text frame parsed."""

    def __init__(self) -> None:
        self.frames: list = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.frames.append(orjson.loads(frame.get_payload_as_bytes()))

    @classmethod
    def connect(cls, url: str) -> Client:
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        transport, client = asyncio.run_coroutine_threadsafe(ws_connect(cls, url), loop).result(5)
        client.loop, client.transport = loop, transport
        return client

    def send(self, text: bytes) -> None:
        self.loop.call_soon_threadsafe(self.transport.send, WSMsgType.TEXT, text)

    def ticks(self) -> list[dict]:
        return [t for f in list(self.frames) for t in (f if isinstance(f, list) else [f])]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.transport.disconnect)
        self.loop.call_soon_threadsafe(self.loop.stop)


class Simfeeds:
    """The servers and clients of one test, all stopped at its end."""

    def __init__(self, cwd: Path) -> None:
        self.config = cwd / "simfeed.json"
        self.config.write_bytes(orjson.dumps({"instruments": INSTRUMENTS, "feed": {"seed": 7}}))
        self.servers: list[Server] = []
        self.clients: list[Client] = []

    def start(self, *args: str) -> Server:
        stderr = self.config.with_name(f"simfeed{len(self.servers)}.err")
        self.servers.append(Server(self.config, stderr, *args))
        return self.servers[-1]

    def connect(self, url: str) -> Client:
        self.clients.append(Client.connect(url))
        return self.clients[-1]

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for server in self.servers:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def simfeed(tmp_path):
    feeds = Simfeeds(tmp_path)
    yield feeds
    feeds.close()


def sim_path(n: int, seed: int = 7) -> list[tuple[str, float, float]]:
    """The first ``n`` (symbol, price, size) of SimFeed with the server's instruments."""
    starts = [22000.0, 48000.0, 100.0]
    feed = SimFeed(SYMBOLS, [TICK_SIZES[s] for s in SYMBOLS], starts, seed, 1000.0)
    batch = TickBatch(n)
    feed.fill(batch, n)
    return [(SYMBOLS[i], p, q) for i, p, q in zip(batch.idx, batch.price, batch.size, strict=True)]


def assert_live_times(ticks: list[dict]) -> None:
    """Every t is the wall clock of the last few seconds, strictly increasing per symbol."""
    now = time.time_ns()
    last: dict[str, int] = {}
    for tick in ticks:
        assert now - 10 * SECOND < tick["t"] <= now
        assert tick["t"] > last.get(tick["s"], 0)
        last[tick["s"]] = tick["t"]


def test_single_ticks_and_arrays_stream_the_seeded_path(tmp_path, simfeed):
    # Seed 7 twice (B through the config's feed.seed); A runs until SIGTERM, B stops at --count.
    stamps = tmp_path / "stamps.npy"
    symbols = ("--symbols", "NIFTY,BANKNIFTY,ZZZ")
    single = simfeed.start(*symbols, "--seed", "7", "--rate", "20000", "--stamps", str(stamps))
    arrays = simfeed.start(*symbols, "--frame-ticks", "10", "--count", "95")
    a, b = simfeed.connect(single.url), simfeed.connect(arrays.url)
    a.send(b'{"op": "subscribe", "symbols": ["NIFTY"]}')  # ignored, only counted
    wait_until(lambda: len(a.frames) >= 300 and len(b.ticks()) >= 95)
    started = time.monotonic()
    assert single.stop() == 0 and arrays.stop() == 0
    assert time.monotonic() - started < 3
    wait_until(lambda: a.transport.is_disconnected and b.transport.is_disconnected)

    assert all(isinstance(f, dict) and set(f) == {"s", "p", "q", "t"} for f in a.frames)
    assert all(isinstance(f, list) for f in b.frames)
    assert [len(f) for f in b.frames] == [10] * 9 + [5]  # --count ends the last frame early
    ticks_a, ticks_b = a.ticks(), b.ticks()
    path_a, path_b = ([(t["s"], t["p"], t["q"]) for t in ts] for ts in (ticks_a, ticks_b))
    assert path_a[:50] == path_b[:50]
    # From the very first tick: nothing is generated before a client connects.
    assert path_a[:300] == sim_path(300) and path_b == sim_path(95)
    assert {s for s, _, _ in path_a} == set(SYMBOLS)
    for symbol, price, _ in path_a:
        steps = price / TICK_SIZES[symbol]
        assert abs(steps - round(steps)) < 1e-6, (symbol, price)
    assert_live_times(ticks_a)
    assert_live_times(ticks_b)

    rows = np.load(stamps)  # written at the SIGTERM, one row per tick sent
    received = [t["t"] for t in ticks_a]
    assert rows.dtype == np.int64 and rows.shape[1] == 2
    assert len(rows) >= len(received)  # the last ticks may have been in flight at the stop
    assert rows[: len(received), 0].tolist() == received
    assert np.all(np.diff(rows[:, 0]) > 0) and np.all(np.diff(rows[:, 1]) >= 0)
    assert 0 < time.monotonic_ns() - rows[-1, 1] < 10 * SECOND


def test_replay_streams_the_file_in_order_restamped(tmp_path, simfeed):
    rows = [
        (k + 1, ("NIFTY", "BANKNIFTY", "NOPE")[k % 3], round(100 + 0.37 * k, 2), 1 + k % 4)
        for k in range(40)
    ]
    rows[4] = (5, "BANKNIFTY", 1234.5678, 0.001)
    path = tmp_path / "ticks.csv"
    path.write_text("ts,symbol,price,size\n" + "".join(f"{t},{s},{p},{q}\n" for t, s, p, q in rows))
    server = simfeed.start("--replay", str(path), "--rate", "5000", "--frame-ticks", "4")
    client = simfeed.connect(server.url)
    known = [(s, p, q) for _, s, p, q in rows if s != "NOPE"]  # unknown symbols are skipped
    wait_until(lambda: len(client.ticks()) >= len(known))
    assert server.stop() == 0

    assert all(isinstance(f, list) and len(f) <= 4 for f in client.frames)
    ticks = client.ticks()
    assert [(t["s"], t["p"], t["q"]) for t in ticks] == known
    assert_live_times(ticks)
