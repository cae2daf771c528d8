"""Benchmarks: the engine's web surface while ticks flow, and its memory over a long run.

All three run against the real ``python run.py`` process on the ``ws`` feed, fed by
``bench/feeder.py`` (see :mod:`bench.live`); the engine gets a CPU of its own when there are
two, the feeder and the clients below share the other.

- ``test_status_requests``: ``GET /api/status`` requests per second from a raw keep-alive
  HTTP/1.1 client (:class:`StatusClient`: N connections, one request in flight on each, the
  response framed by its ``Content-Length``) while ticks arrive at 100k/s, in single-tick and
  in 100-tick frames. httpx tops out near 1k requests/s here, so it would measure itself.
- ``test_ws_clients_latency``: the same tick run twice, without and with 20 ``/ws`` clients
  (picows, reading and discarding) taking the 10 Hz snapshots and the order events; the
  tick-to-order latency from the journal (sender stamp -> ``submit_ns``) is compared at p99.
- ``test_rss_flat``: the engine's RSS (``/proc/PID/status``) sampled every second over a run
  at 50k ticks/s: ``OTRADE_BENCH_RSS_S`` seconds (default 600) when measuring, 2 s in smoke.

Under ``--benchmark-disable`` each runs briefly and checks only that requests were answered,
messages arrived, orders joined and memory was read, never a rate or a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from pytest_benchmark.fixture import BenchmarkFixture

from bench.live import (
    TOKEN,
    EngineProcess,
    LiveRig,
    RunResult,
    StatusConnection,
    join_orders,
    placements,
    processed,
    summarize_us,
    wait_for,
)

#: ticks per second while ``/api/status`` is hammered
STATUS_TICK_RATE = 100_000.0
#: keep-alive connections of the status client
STATUS_CONNECTIONS = 4
#: seconds the status client runs (smoke: SMOKE_STATUS_S)
STATUS_S = 5.0
#: seconds the status client runs in smoke mode
SMOKE_STATUS_S = 0.3
#: seconds of ticks sent beyond the status client's (it starts once they flow); smoke: a fifth
STATUS_MARGIN_S = 1.5
#: zig-zag leg of the web runs: an entry and an exit every 100 ticks
WEB_LEG = 100
#: target: ``/api/status`` requests per second
STATUS_TARGET = 5_000.0
#: ``/ws`` clients of the loaded run
WS_CLIENTS = 20
#: snapshot pushes per second (the engine's ``web.push_hz``)
PUSH_HZ = 10.0
#: ticks per second of both ``/ws`` runs
WS_TICK_RATE = 10_000.0
#: zig-zag leg of the ``/ws`` runs: an entry and an exit every 20 ticks
WS_LEG = 20
#: seconds each ``/ws`` run sends
WS_RUN_S = 5.0
#: ticks of each ``/ws`` run in smoke mode
SMOKE_WS_TICKS = 2_000
#: target: p99 with the clients at most this times p99 without
WS_TARGET_RATIO = 1.2
#: ticks per second of the RSS run
RSS_TICK_RATE = 50_000.0
#: seconds of the RSS run when measuring, unless ``OTRADE_BENCH_RSS_S`` says otherwise
RSS_S = 600.0
#: seconds of the RSS run in smoke mode
SMOKE_RSS_S = 1.0
#: seconds between RSS samples (smoke: a tenth of it)
RSS_EVERY_S = 1.0
#: share of the RSS run at its start left out of the flatness figures (warm-up)
RSS_WARMUP_SHARE = 0.1
#: target: RSS flat within this many MiB
RSS_TARGET_MIB = 5.0
#: the status request, keep-alive being HTTP/1.1's default
STATUS_REQUEST = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _where() -> tuple[str, int, int]:
    where = placements()
    placement = "cross-core" if "cross-core" in where else "same-core"
    return (placement, *where[placement])


@pytest.fixture(scope="module")
def web_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRig]:
    """Return one live engine (push at PUSH_HZ) for the request and ``/ws`` runs."""
    _, engine_cpu, _ = _where()
    workdir = tmp_path_factory.mktemp("live_web")
    with LiveRig(workdir, engine_cpu, web={"push_hz": PUSH_HZ}) as live:
        yield live


def _pin_thread(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # on Linux, 0 is the calling thread


# -- the raw status client ------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request, its whole response, the next request."""

    def __init__(self, client: StatusClient) -> None:
        self.client = client
        self.buffer = bytearray()
        self.transport: Any = None  # uvloop's transports are no asyncio.Transport subclass
        self.sent_ns = 0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._request()

    def _request(self) -> None:
        self.sent_ns = time.monotonic_ns()
        self.transport.write(STATUS_REQUEST)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        if at < 0:
            raise ValueError(f"no content-length in {head[:200]!r}")
        line_end = head.find(b"\r\n", at)
        length = int(head[at + 15 : line_end if line_end > 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        now = time.monotonic_ns()
        self.client.answered(int(head[9:12]), now - self.sent_ns, self.buffer[end + 4 : total])
        del self.buffer[:total]
        if now < self.client.stop_ns:
            self._request()
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


class StatusClient:
    """Sequential keep-alive ``GET /api/status`` on ``connections`` connections for a while.

    Parameters
    ----------
    port : int
        The engine's web port on 127.0.0.1.
    connections : int
        Connections, each with one request in flight.
    seconds : float
        How long requests are sent.
    """

    def __init__(self, port: int, connections: int, seconds: float) -> None:
        self.port = port
        self.connections = connections
        self.seconds = seconds
        self.stop_ns = 0
        self.latency_ns: list[int] = []
        self.codes: dict[int, int] = {}
        self.first: bytes | None = None
        self.last: bytes | None = None
        self.started_ns = self.ended_ns = 0

    def answered(self, code: int, latency_ns: int, body: bytearray) -> None:
        """Count one response."""
        self.codes[code] = self.codes.get(code, 0) + 1
        self.latency_ns.append(latency_ns)
        if self.first is None:
            self.first = bytes(body)
        self.last = body

    async def run(self) -> None:
        """Open the connections, request until ``seconds`` pass, wait for the last answers."""
        loop = asyncio.get_running_loop()
        self.started_ns = time.monotonic_ns()
        self.stop_ns = self.started_ns + int(self.seconds * 1e9)
        made = [
            await loop.create_connection(lambda: _Connection(self), "127.0.0.1", self.port)
            for _ in range(self.connections)
        ]
        closed = asyncio.gather(*(protocol.closed for _, protocol in made))
        await asyncio.wait_for(closed, self.seconds + 60.0)
        self.ended_ns = time.monotonic_ns()
        if self.last is not None:
            self.last = bytes(self.last)

    def result(self) -> dict:
        """Return requests/s, request latency and the engine's tick rate meanwhile."""
        spent = (self.ended_ns - self.started_ns) / 1e9
        answered = sum(self.codes.values())
        out = {
            "requests": answered,
            "requests_per_s": round(answered / spent, 1) if spent > 0 else None,
            "codes": {str(code): n for code, n in self.codes.items()},
            "request_us": summarize_us(np.array(self.latency_ns, np.int64)),
            "seconds": round(spent, 3),
        }
        if self.first is not None and self.last is not None:
            first, last = orjson.loads(self.first), orjson.loads(self.last)
            uptime = last["uptime_s"] - first["uptime_s"]
            ticks = last["ticks"] - first["ticks"]
            out["engine_ticks_per_s"] = round(ticks / uptime, 1) if uptime > 0 else None
        return out


def run_status_client(
    engine: EngineProcess, base: int, connections: int, seconds: float, cpu: int | None
) -> dict:
    """Wait until the engine has processed a tick past ``base``, then hammer ``/api/status``."""
    _pin_thread(cpu)
    connection = StatusConnection(engine.web_port)
    try:
        wait_for(lambda: processed(connection.status()) > base, 60.0, "ticks flowing")
    finally:
        connection.close()
    client = StatusClient(engine.web_port, connections, seconds)
    uvloop.run(client.run())
    return client.result()


@pytest.mark.benchmark(group="live-web")
@pytest.mark.parametrize("frames", [1, 100], ids=["x1", "x100"])
def test_status_requests(
    benchmark: BenchmarkFixture, web_rig: LiveRig, bench_disabled: bool, frames: int
) -> None:
    placement, engine_cpu, feeder_cpu = _where()
    seconds = SMOKE_STATUS_S if bench_disabled else STATUS_S
    margin = STATUS_MARGIN_S / 5 if bench_disabled else STATUS_MARGIN_S
    count = int(STATUS_TICK_RATE * (seconds + margin)) // frames * frames
    engine = web_rig.engine
    assert engine is not None

    def measure() -> tuple[dict, dict]:
        base = engine.processed()
        found: dict = {}

        def hammer() -> None:
            try:
                found["client"] = run_status_client(
                    engine, base, STATUS_CONNECTIONS, seconds, feeder_cpu
                )
            except BaseException as error:  # re-raised in the test's thread
                found["error"] = error

        thread = threading.Thread(target=hammer, daemon=True)
        thread.start()
        try:
            result = web_rig.run(
                count, STATUS_TICK_RATE, frames, engine_cpu, feeder_cpu, leg=WEB_LEG
            )
        finally:
            thread.join(timeout=seconds + 120.0)
        if "error" in found:
            raise found["error"]
        return found["client"], {"orders": len(result.orders), "send_rate": result.send_rate}

    client, run = benchmark.pedantic(measure, rounds=1, iterations=1)
    rate = client["requests_per_s"]
    benchmark.extra_info.update(
        kind="web_status",
        frames=f"x{frames}",
        frame_ticks=frames,
        tick_rate=STATUS_TICK_RATE,
        placement=placement,
        connections=STATUS_CONNECTIONS,
        leg=WEB_LEG,
        count=count,
        **client,
        tick_send_rate=round(run["send_rate"], 1),
        targets={
            "requests_per_s": {
                "goal": f"≥ {STATUS_TARGET:,.0f} req/s",
                "measured": rate,
                "unit": "req/s",
                "met": rate is not None and rate >= STATUS_TARGET,
            }
        },
    )
    assert client["requests"] > 0 and set(client["codes"]) == {"200"}
    assert rate is not None and rate > 0


# -- /ws clients ----------------------------------------------------------------------------------


class _Reader(WSListener):
    def __init__(self, clients: WsClients) -> None:
        self.clients = clients

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()
            return
        self.clients.messages += 1
        self.clients.bytes += frame.payload_size


class WsClients:
    """``count`` picows clients of ``/ws`` on a thread of their own, reading and discarding.

    Parameters
    ----------
    port : int
        The engine's web port.
    count : int
        Clients.
    cpu : int, optional
        CPU of the clients' thread.
    """

    def __init__(self, port: int, count: int, cpu: int | None = None) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws?token={TOKEN}"
        self.count = count
        self.cpu = cpu
        self.messages = 0
        self.bytes = 0
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> WsClients:
        self.thread.start()
        if not self.ready.wait(timeout=30.0) or self.error is not None:
            self.close()
            raise RuntimeError(f"/ws clients did not connect: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _main(self) -> None:
        _pin_thread(self.cpu)
        loop = self.loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(self._session())
        except BaseException as error:  # reported by __enter__ or close
            self.error = error
        finally:
            self.ready.set()
            loop.close()

    async def _session(self) -> None:
        self.stop = asyncio.Event()
        transports = []
        try:
            for _ in range(self.count):
                transport, _ = await ws_connect(lambda: _Reader(self), self.url)
                transports.append(transport)
            self.ready.set()
            await self.stop.wait()
        finally:
            for transport in transports:
                transport.send_close()
                transport.disconnect()
            with contextlib.suppress(TimeoutError):
                waits = [transport.wait_disconnected() for transport in transports]
                await asyncio.wait_for(asyncio.gather(*waits), 5.0)

    def close(self) -> None:
        """Disconnect every client and end the thread."""
        if self.loop is not None and self.stop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30.0)
        if self.error is not None:
            raise self.error


def _latency(result: RunResult) -> dict:
    joined = join_orders(result, skip_ticks=result.count // 20)
    return {
        "orders": len(result.orders),
        "send_submit_us": summarize_us(joined["send_submit"]),
        "recv_submit_us": summarize_us(joined["recv_submit"]),
        "engine_frame_latency_us": result.status["latency_us"],
        "send_rate": round(result.send_rate, 1),
    }


@pytest.mark.benchmark(group="live-web")
def test_ws_clients_latency(
    benchmark: BenchmarkFixture, web_rig: LiveRig, bench_disabled: bool
) -> None:
    placement, engine_cpu, feeder_cpu = _where()
    count = SMOKE_WS_TICKS if bench_disabled else int(WS_TICK_RATE * WS_RUN_S)
    engine = web_rig.engine
    assert engine is not None

    def clients_now() -> int:
        return engine.status()["clients"]

    def measure() -> dict:
        run = {"count": count, "rate": WS_TICK_RATE, "frame_ticks": 1, "leg": WS_LEG}
        pinned = {"engine_cpu": engine_cpu, "feeder_cpu": feeder_cpu}
        wait_for(lambda: clients_now() == 0, 30.0, "no /ws client")
        alone = _latency(web_rig.run(**run, **pinned))
        with WsClients(engine.web_port, WS_CLIENTS, feeder_cpu) as clients:
            wait_for(lambda: clients_now() == WS_CLIENTS, 30.0, f"{WS_CLIENTS} /ws clients")
            started = clients.messages
            loaded = _latency(web_rig.run(**run, **pinned))
            loaded["messages"] = clients.messages - started
            loaded["messages_total"] = clients.messages
            loaded["message_bytes"] = clients.bytes
            loaded["dropped_messages"] = engine.status()["dropped_messages"]
        return {"none": alone, "clients": loaded}

    out = benchmark.pedantic(measure, rounds=1, iterations=1)
    alone, loaded = out["none"]["send_submit_us"], out["clients"]["send_submit_us"]
    ratio = (
        round(loaded["p99"] / alone["p99"], 3)
        if loaded["p99"] is not None and alone["p99"]
        else None
    )
    benchmark.extra_info.update(
        kind="web_ws",
        placement=placement,
        clients=WS_CLIENTS,
        push_hz=PUSH_HZ,
        tick_rate=WS_TICK_RATE,
        leg=WS_LEG,
        count=count,
        none=out["none"],
        loaded=out["clients"],
        p99_ratio=ratio,
        targets={
            "p99_ratio": {
                "goal": f"≤ {WS_TARGET_RATIO:.2f}x",
                "measured": ratio,
                "unit": "x",
                "met": ratio is not None and ratio <= WS_TARGET_RATIO,
            }
        },
    )
    assert alone["n"] > 0 and loaded["n"] > 0
    assert out["clients"]["messages_total"] >= WS_CLIENTS  # every client had its first snapshot


# -- memory ---------------------------------------------------------------------------------------


def rss_seconds(disabled: bool) -> float:
    """Return the RSS run's length: ``OTRADE_BENCH_RSS_S`` (default 600 s), 1 s in smoke mode."""
    if disabled:
        return SMOKE_RSS_S
    return float(os.environ.get("OTRADE_BENCH_RSS_S", RSS_S))


def rss_summary(probes: list[tuple[int, int]], seconds: float) -> dict:
    """Return first/last/max RSS (MiB), the growth after warm-up and the fitted slope.

    Parameters
    ----------
    probes : list of (int, int)
        ``(monotonic ns, RSS KiB)`` samples.
    seconds : float
        Nominal run length; the first RSS_WARMUP_SHARE of it is warm-up.
    """
    when = np.array([p[0] for p in probes], np.int64)
    kib = np.array([p[1] for p in probes], np.float64)
    mib = kib / 1024.0
    elapsed = (when - when[0]) / 1e9
    steady = elapsed >= RSS_WARMUP_SHARE * seconds
    if steady.sum() < 2:
        steady = np.ones_like(steady, bool)
    slope = float(np.polyfit(elapsed[steady], mib[steady], 1)[0]) if steady.sum() >= 2 else 0.0
    span = float(elapsed[steady][-1] - elapsed[steady][0])
    return {
        "samples": int(mib.size),
        "first_mib": round(float(mib[0]), 2),
        "last_mib": round(float(mib[-1]), 2),
        "max_mib": round(float(mib.max()), 2),
        "min_mib": round(float(mib.min()), 2),
        "steady_first_mib": round(float(mib[steady][0]), 2),
        "steady_growth_mib": round(float(mib[steady][-1] - mib[steady][0]), 2),
        "steady_range_mib": round(float(mib[steady].max() - mib[steady].min()), 2),
        "slope_mib_per_min": round(slope * 60.0, 4),
        "fitted_growth_mib": round(slope * span, 2),
        "span_s": round(span, 1),
    }


@pytest.mark.benchmark(group="live-web")
def test_rss_flat(
    benchmark: BenchmarkFixture,
    tmp_path_factory: pytest.TempPathFactory,
    bench_disabled: bool,
) -> None:
    placement, engine_cpu, feeder_cpu = _where()
    seconds = rss_seconds(bench_disabled)
    every = RSS_EVERY_S / 10 if bench_disabled else RSS_EVERY_S
    count = int(RSS_TICK_RATE * seconds)
    workdir = tmp_path_factory.mktemp("live_rss")

    def measure() -> tuple[dict, int, int, dict]:
        with LiveRig(workdir, engine_cpu) as rig:
            engine = rig.engine
            assert engine is not None
            before = engine.rss_kib()
            result = rig.run(
                count,
                RSS_TICK_RATE,
                1,
                engine_cpu,
                feeder_cpu,
                leg=WEB_LEG,
                poll_s=every,
                timeout=3 * seconds + 120.0,
                record=False,
                probe=engine.rss_kib,
            )
            after = engine.rss_kib()
            seen = result.samples[:, 1]
            spent = (result.samples[-1, 0] - result.samples[0, 0]) / 1e9
            rate = float(seen[-1] - seen[0]) / spent if spent > 0 else None
            return (
                rss_summary(result.probes, seconds),
                before,
                after,
                {"orders": len(result.orders), "engine_rate": rate and round(rate, 1)},
            )

    summary, before, after, run = benchmark.pedantic(measure, rounds=1, iterations=1)
    flat = max(summary["steady_range_mib"], abs(summary["fitted_growth_mib"]))
    benchmark.extra_info.update(
        kind="web_rss",
        placement=placement,
        tick_rate=RSS_TICK_RATE,
        leg=WEB_LEG,
        seconds=seconds,
        count=count,
        rss_before_mib=round(before / 1024, 2),
        rss_after_mib=round(after / 1024, 2),
        **summary,
        **run,
        targets={
            "flat": {
                "goal": f"within {RSS_TARGET_MIB:g} MiB",
                "measured": round(flat, 2),
                "unit": "MiB",
                "met": flat <= RSS_TARGET_MIB,
            }
        },
    )
    assert summary["samples"] >= 2 and summary["first_mib"] > 0
    assert run["orders"] > 0
