"""Benchmark: a kernel's intent -> the broker request's first byte at a local server, p50/p99.

The engine (live Kite config), its journal, the router and the real :class:`KiteBroker` run in
this process on uvloop; ``bench/order_sink.py`` runs as another process answering every order
with Kite's success envelope and stamping the arrival of each request's first byte with
``time.monotonic_ns()`` (one clock for all processes). Each round feeds one tick that crosses
the EMAs; the drained block's stamp is the intent's birth, joined to the sink's stamp by the
order's tag. So the figure is the whole path: intent record, router, tag, the form, Kite's
token bucket, httpx and the loopback write; the loopback itself is in it, making it an upper
bound of "written to the socket".

Two baselines run in the same way in the same run: a bare ``httpx.AsyncClient.post`` of a
prepared Kite form (what a plain Python client pays), and ``raw_write``, prepared request bytes
written to an open connection (the floor of this machine: loopback and the sink waking up).

Kite's own 10 orders/s bucket is lifted for the measurement (rounds run faster than that); the
limiter's cost per request is still paid. Under ``--benchmark-disable`` a few rounds run and
only the join is checked.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import uvloop

from bench.conftest import ROOT
from engine.brokers.kite.broker import KiteBroker
from engine.brokers.live_base import RestClient, TokenBucket
from engine.brokers.routing import Router
from engine.config import parse_config
from engine.core import Engine
from engine.events import event_record
from engine.journal import Journal
from kernels import layout

#: rounds of a measured run, and of a smoke run
ROUNDS, SMOKE_ROUNDS = 2_000, 20
#: the first rounds warm caches and connections and are not counted
WARMUP = 50
#: seconds between rounds, so each request meets an idle connection
PACE_S = 0.002


@pytest.fixture(scope="module")
def sink_url() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "order_sink.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "listening"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(5)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(tmp: Path, url: str):
    return parse_config(
        orjson.dumps(
            {
                "instruments": [
                    {
                        "symbol": "INFY",
                        "tick_size": 0.05,
                        "kite": {"instrument_token": 408065, "tradingsymbol": "INFY"},
                    }
                ],
                "strategy": {"fast": 1, "slow": 2},
                "risk": {"max_position": 10**6, "max_orders_per_second": 10**6},
                "session": {"enabled": False},
                "broker": {"name": "kite", "base_url": url},
                "feed": {"name": "broker"},
                "journal": {"path": str(tmp / "journal.jsonl")},
            }
        )
    )


async def _otrade_rounds(tmp: Path, url: str, rounds: int) -> dict[str, int]:
    cfg = _config(tmp, url)
    engine = Engine(cfg)
    journal = Journal(cfg, engine.state.symbols)
    broker = KiteBroker(cfg, lambda code, message: None)
    broker.api_key = "benchkey"
    broker._rest = RestClient(url, 5.0, broker._error)
    broker._use_token("benchtoken")
    broker._order_limits = (TokenBucket(10**6, 1.0),)
    router = Router(engine, broker, journal, lambda record: None)
    born: dict[str, int] = {}

    def sink(rows: np.ndarray, recv_ns: int) -> None:
        submit_ns = time.monotonic_ns()
        records = [event_record(row, engine.state.symbols) for row in rows]
        for record in records:
            if record["type"] == "intent":
                born[journal.tag(record["seq"])] = submit_ns
        router.on_records(records)

    engine.sinks.append(sink)
    idx = np.zeros(1, np.int64)
    price = np.zeros(1, np.float64)
    size = np.ones(1, np.float64)
    ts = np.zeros(1, np.int64)
    book = engine.state.book
    for k in range(rounds + 3):
        price[0] = 100.0 + (k % 2)  # every tick after the warm-up crosses
        ts[0] = time.time_ns()
        book[0, layout.I_PENDING] = 0  # the sink never fills: forget the last intent
        engine.process(idx, price, size, ts, 1, time.monotonic_ns())
        while router._tasks:
            await asyncio.sleep(0)
        await asyncio.sleep(PACE_S)
    await broker.close()
    journal.close()
    return born


async def _bare_rounds(url: str, rounds: int) -> dict[str, int]:
    born: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        for k in range(rounds):
            tag = f"bare{k}"
            form = {
                "tradingsymbol": "INFY",
                "exchange": "NSE",
                "transaction_type": "BUY",
                "order_type": "MARKET",
                "quantity": "1",
                "product": "MIS",
                "validity": "DAY",
                "tag": tag,
                "market_protection": "-1",
            }
            born[tag] = time.monotonic_ns()
            await client.post("/orders/regular", data=form)
            await asyncio.sleep(PACE_S)
    return born


async def _raw_rounds(url: str, rounds: int) -> dict[str, int]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    born: dict[str, int] = {}
    for k in range(rounds):
        body = f"tag=raw{k}".encode()
        request = b"POST /orders/regular HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s"
        born[f"raw{k}"] = time.monotonic_ns()
        writer.write(request % (host.encode(), len(body), body))
        await reader.readuntil(b"}}")
        await asyncio.sleep(PACE_S)
    writer.close()
    return born


def _latencies(url: str, born: dict[str, int]) -> np.ndarray:
    arrived = httpx.get(f"{url}/stats").json()
    joined = [arrived[tag] - start for tag, start in born.items() if tag in arrived]
    assert len(joined) == len(born), "every order reached the sink under its tag"
    return np.array(joined[WARMUP:] if len(joined) > 2 * WARMUP else joined, np.float64)


def _record(benchmark, latencies: np.ndarray, case: str) -> None:
    benchmark.extra_info.update(
        kind="order_wire",
        case=case,
        orders=int(latencies.size),
        p50_us=float(np.percentile(latencies, 50) / 1e3),
        p99_us=float(np.percentile(latencies, 99) / 1e3),
        cpus=len(os.sched_getaffinity(0)),
    )


@pytest.mark.benchmark(group="order_wire")
def test_intent_to_wire(benchmark, sink_url, tmp_path, bench_disabled: bool) -> None:
    rounds = SMOKE_ROUNDS if bench_disabled else ROUNDS
    runs: list[dict[str, int]] = []
    benchmark.pedantic(
        lambda: runs.append(uvloop.run(_otrade_rounds(tmp_path, sink_url, rounds))),
        rounds=1,
        iterations=1,
    )
    _record(benchmark, _latencies(sink_url, runs[-1]), "otrade")


@pytest.mark.benchmark(group="order_wire")
def test_bare_httpx_post(benchmark, sink_url, bench_disabled: bool) -> None:
    rounds = SMOKE_ROUNDS if bench_disabled else ROUNDS
    runs: list[dict[str, int]] = []
    benchmark.pedantic(
        lambda: runs.append(uvloop.run(_bare_rounds(sink_url, rounds))), rounds=1, iterations=1
    )
    _record(benchmark, _latencies(sink_url, runs[-1]), "bare_httpx")


@pytest.mark.benchmark(group="order_wire")
def test_raw_write(benchmark, sink_url, bench_disabled: bool) -> None:
    rounds = SMOKE_ROUNDS if bench_disabled else ROUNDS
    runs: list[dict[str, int]] = []
    benchmark.pedantic(
        lambda: runs.append(uvloop.run(_raw_rounds(sink_url, rounds))), rounds=1, iterations=1
    )
    _record(benchmark, _latencies(sink_url, runs[-1]), "raw_write")
