"""Soak: the live engine for minutes at 50k ticks/s with 20 ``/ws`` clients and the API polled.

One ``run.py`` on the ``ws`` feed (``bench.live.LiveRig``) takes ten-tick frames from
``bench/feeder.py`` at 50k ticks/s for :data:`SOAK_S` seconds (``OTRADE_SOAK_S``; 600 measured,
a few seconds under ``--benchmark-disable``), trading the zig-zag (:data:`LEG`) with the
journal's fsync and the flight recorder on, while 20 WebSocket clients read ``/ws`` and the
harness polls ``/api/status`` ten times a second. Every poll samples the engine's RSS and its
frame latency p99 (over its last frames). Reported: RSS over the run after the first minute
(flat = max - min within 5 MB), the p99 of the first and the last minute (no drift), and the
recording checked against the ticks it holds: whole records only, one row per tick the kernels
saw.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from websockets.sync.client import connect

from bench.live import TOKEN, LiveRig, processed
from engine.record import TICKS
from engine.replay_session import read_records, recording_files

#: ticks per second and per frame of the soak
RATE, FRAME_TICKS = 50_000, 10
#: zig-zag leg in ticks: two crossings per 1,000 ticks, ~200 orders and fills a second, each
#: block of them fsynced as a trader's journal would be
LEG = 500
#: WebSocket clients reading ``/ws`` throughout
CLIENTS = 20
#: seconds of the measured soak, and of the smoke run
SOAK_S = float(os.environ.get("OTRADE_SOAK_S", "600"))
SMOKE_S = 3.0
#: seconds at the start left out of the RSS and p99 figures (allocations settle)
SETTLE_S = 60.0


class Readers:
    """``CLIENTS`` threads, each reading the engine's ``/ws`` until told to stop."""

    def __init__(self, port: int) -> None:
        self.messages = [0] * CLIENTS
        self._stop = threading.Event()
        url = f"ws://127.0.0.1:{port}/ws?token={TOKEN}"
        self._threads = [
            threading.Thread(target=self._read, args=(url, k), daemon=True) for k in range(CLIENTS)
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, url: str, k: int) -> None:
        with connect(url, max_size=None) as socket:
            while not self._stop.is_set():
                try:
                    socket.recv(timeout=0.5)
                except TimeoutError:
                    continue
                self.messages[k] += 1

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)


def _window(samples: list[tuple[float, int, float | None]], start: float, end: float) -> list:
    return [s for s in samples if start <= s[0] < end]


@pytest.mark.benchmark(group="soak")
def test_soak(benchmark: BenchmarkFixture, tmp_path, bench_disabled: bool) -> None:
    duration = SMOKE_S if bench_disabled else SOAK_S
    settle = 0.0 if bench_disabled else min(SETTLE_S, duration / 4)
    count = int(RATE * duration) // FRAME_TICKS * FRAME_TICKS
    with LiveRig(tmp_path, web={"push_hz": 10}, journal={"fsync": True}) as rig:
        engine = rig.engine
        readers = Readers(engine.web_port)
        samples: list[tuple[float, int, float | None]] = []
        began = time.monotonic()

        def probe() -> None:
            status = engine.http.status()
            p99 = status["latency_us"]["p99"]
            samples.append((time.monotonic() - began, engine.rss_kib(), p99))

        def soak():
            return rig.run(count, RATE, FRAME_TICKS, leg=LEG, poll_s=0.1, record=False, probe=probe)

        benchmark.pedantic(soak, rounds=1, iterations=1)
        readers.close()
        final = engine.status()
    assert processed(final) >= count
    assert min(readers.messages) > 0  # every client was served throughout
    steady = _window(samples, settle, float("inf"))
    rss = [s[1] for s in steady]
    first = [s[2] for s in _window(samples, settle, settle + 60.0) if s[2] is not None]
    last = [s[2] for s in _window(samples, samples[-1][0] - 60.0, float("inf")) if s[2] is not None]
    rows = batches = whole_bytes = 0
    files = recording_files(tmp_path / "var" / "record")
    for path in files:
        whole_bytes += 8
        for kind, count_, _, _, payload in read_records(path):
            whole_bytes += 32 + payload.nbytes
            if kind == TICKS:
                rows += count_
                batches += 1
    size = sum(path.stat().st_size for path in files)
    assert size == whole_bytes  # whole records only: nothing torn, nothing extra
    assert rows == processed(final)  # one row per tick the kernels saw
    benchmark.extra_info.update(
        ticks=count,
        seconds=duration,
        rss_kib_min=min(rss),
        rss_kib_max=max(rss),
        rss_growth_kib=rss[-1] - rss[0],
        p99_first_minute_us=max(first) if first else None,
        p99_last_minute_us=max(last) if last else None,
        recording_bytes=size,
        recording_bytes_per_tick=size / rows,
        ws_messages_min=min(readers.messages),
    )
