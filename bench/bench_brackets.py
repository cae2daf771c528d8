"""Benchmark: a live bracket at each broker's fake: entry fill -> both legs, leg fill -> cancel.

For each fake (Kite, Upstox, ProjectX) the engine, the real adapter and the router run in this
process on uvloop, wired by :class:`engine.live.Runtime` itself as ``run.py`` wires them: its
event sink (``event_record``, the journal, ``router.on_records``), ``adapter.start()``,
``reconcile(router)``, a task on ``router.follow()`` and the broker's market feed (which carries
Kite's order messages). The web server is off. The fake runs in a thread of this process.

A round feeds the engine ``Engine.process`` ticks that cross the EMAs (strategy fast 1, slow 2)
and sets the same price at the fake, so the market entry fills there; once both legs rest,
after a random pause, the price moves through the target, which the fake fills. Rounds
alternate long and short (each target's price is the next round's crossing the other way).
Two figures per round, both between stamps taken on the fake's side with ``time.monotonic_ns()``
(one clock for the process):

- entry -> legs: the fake filling the entry -> the fake receiving the later of the two leg
  placements (stop and target);
- fill -> cancel: the fake filling the target -> the fake receiving the cancel of the stop.

The fakes that take these stamps are in ``bench/bracket_fakes.py``.

What bounds them differs by broker: Kite pushes order updates on the ticker; Upstox has no
order stream here and the adapter polls the order book (every 0.5 s while an order is open,
at once after a placement); ProjectX pushes them on the user hub, with a 1 s poll as a backup.
The legs rest a random 0..:data:`HOLD_S` s before the target fills, so a polled fill meets
every phase of the poll instead of one fixed offset. Rounds start only when the adapter's
client-side rate limits have room for a whole round (Kite and Upstox 10 orders/s and 400 or
500 a minute, ProjectX 200 requests a minute), so no figure waits on a limiter.

The first :data:`WARMUP` rounds are not counted, and the kernels are compiled (or loaded from
numba's cache) before the runtime starts, so no compile lands in a figure. Under
``--benchmark-disable`` a few rounds run with short pauses and only the joins are checked.
"""

from __future__ import annotations

import asyncio
import gc
import io
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import uvloop

from bench.bracket_fakes import START, Probe, Sent, TimedKite, TimedProjectX, TimedUpstox
from engine.brokers.kite.orders import POLL_INTERVAL_S as KITE_POLL_S
from engine.brokers.projectx.poll import POLL_INTERVAL_S as PROJECTX_POLL_S
from engine.brokers.upstox.orders import POLL_INTERVAL_S as UPSTOX_POLL_S
from engine.config import EngineConfig, parse_config
from engine.core import Engine
from engine.live import Runtime
from kernels import layout

#: measured rounds per broker, and in a smoke run
ROUNDS, SMOKE_ROUNDS = 100, 2
#: rounds run before the measured ones (warm connections, first calls), and in a smoke run
WARMUP, SMOKE_WARMUP = 4, 1
#: the legs rest a random 0..HOLD_S seconds before the target fills (SMOKE_HOLD_S when smoke)
HOLD_S, SMOKE_HOLD_S = 1.0, 0.05
#: longest wait for any one step of a round, seconds
WAIT_S = 5.0
#: seconds between the keep-alive pings a real server sends on idle streams (SignalR: 15 s)
KEEPALIVE_S = 10.0
#: seconds between checks while waiting
CHECK_S = 0.002
#: requests a round may send, kept free in a rate-limit window before a round starts: its order
#: requests (entry, two legs, a cancel), and every request (polls too) for a limit counting all
ROUND_ORDERS, ROUND_REQUESTS = 4, 16
#: every round enters here; its target is TARGET_AWAY beyond, its stop STOP_AWAY behind
ENTRY, TARGET_AWAY, STOP_AWAY = 101.0, 1.0, 0.5


@dataclass(frozen=True)
class BrokerCase:
    """One broker fake and what the report says about how its adapter hears of fills."""

    fake: Callable[[], Any]
    updates: str
    poll_s: float


CASES = {
    "kite": BrokerCase(TimedKite, "ticker order messages", KITE_POLL_S),
    "upstox": BrokerCase(TimedUpstox, "order-book poll", UPSTOX_POLL_S),
    "projectx": BrokerCase(TimedProjectX, "user hub", PROJECTX_POLL_S),
}


def _config(tmp: Path, sections: dict) -> EngineConfig:
    tick = sections["instruments"][0]["tick_size"]
    return parse_config(
        orjson.dumps(
            {
                **sections,
                "strategy": {"fast": 1, "slow": 2, "quantity": 1},
                "bracket": {
                    "target_ticks": round(TARGET_AWAY / tick),
                    "stop_ticks": round(STOP_AWAY / tick),
                },
                "risk": {"max_position": 10**6, "max_orders_per_second": 10**6},
                "session": {"enabled": False},
                "feed": {"name": "broker", "stale_after_s": 3600},
                "journal": {"path": str(tmp / "journal.jsonl")},
                "web": {"enabled": False},
            }
        )
    )


# -- driving the engine ---------------------------------------------------------------------------


class _Ticks:
    """One-tick batches of instrument 0 into an engine, ``Engine.process`` as a feed calls it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.idx = np.zeros(1, np.int64)
        self.price = np.zeros(1, np.float64)
        self.size = np.ones(1, np.float64)
        self.ts = np.zeros(1, np.int64)

    def send(self, price: float) -> None:
        self.price[0] = price
        self.ts[0] = max(int(self.ts[0]) + 1, time.time_ns())
        self.engine.process(self.idx, self.price, self.size, self.ts, 1, time.monotonic_ns())


def _warm_kernels(cfg: EngineConfig) -> None:
    """Compile or load every kernel a round calls, on an engine of the same config."""
    engine = Engine(cfg)
    ticks = _Ticks(engine)
    for price in (START, START, START, ENTRY):
        ticks.send(price)
    ts = int(ticks.ts[0])
    engine.broker_fill(0, layout.LONG, 1, ENTRY, layout.R_NONE, ts)
    engine.broker_fill(0, layout.SHORT, 1, ENTRY + TARGET_AWAY, layout.R_TARGET, ts)


async def _until(check: Callable[[], Any], what: str, running: asyncio.Task) -> Any:
    """Return ``check()`` once it is truthy; fail after WAIT_S or if the runtime stopped."""
    deadline = time.monotonic() + WAIT_S
    while True:
        value = check()
        if value:
            return value
        if running.done():
            running.result()
            raise AssertionError(f"the runtime stopped before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        await asyncio.sleep(CHECK_S)


def _recent(probe: Probe, window_s: float, orders_only: bool) -> int:
    since = time.monotonic_ns() - int(window_s * 1e9)
    count = 0
    for ns, is_order in reversed(probe.stamps):
        if ns < since:
            break
        count += is_order or not orders_only
    return count


async def _room(probe: Probe) -> None:
    """Wait until every client-side limit of the adapter has room for one whole round."""
    while any(
        _recent(probe, window, orders) > limit - (ROUND_ORDERS if orders else ROUND_REQUESTS)
        for limit, window, orders in probe.limits
    ):
        await asyncio.sleep(0.05)


async def _keepalive(probe: Probe) -> None:
    while True:
        await asyncio.sleep(KEEPALIVE_S)
        await asyncio.to_thread(probe.keepalive)


def _placed(probe: Probe, start: int, kind: str) -> Sent | None:
    return next((s for s in probe.sent[start:] if s.op == "place" and s.kind == kind), None)


async def _round(
    runtime: Runtime, probe: Probe, ticks: _Ticks, side: int, hold_s: float, running: asyncio.Task
) -> tuple[int, int]:
    """Trade one bracket (``side`` +1 long, -1 short); return its two latencies in ns."""
    start = len(probe.sent)
    target_price = ENTRY + side * TARGET_AWAY
    state, router = runtime.engine.state, runtime.router
    await _until(lambda: state.halt_reason() is None, "entries open", running)
    await asyncio.to_thread(probe.move, ENTRY)
    ticks.send(ENTRY)  # crosses the EMAs: the entry intent

    entry = await _until(lambda: _placed(probe, start, "market"), "the entry's placement", running)
    assert entry.side == side, f"the entry went {entry.side}, the round wanted {side}"
    fill_ns = await _until(
        lambda: probe.fills.get(probe.ids.get(entry.tag or "", "")), "the entry's fill", running
    )

    def legs() -> tuple[Sent, Sent] | None:
        target, stop = _placed(probe, start, "limit"), _placed(probe, start, "stop")
        return (target, stop) if target and stop else None

    target, stop = await _until(legs, "both legs' placements", running)
    assert target.side == stop.side == -side, "the legs close the position"
    entry_legs = max(target.ns, stop.ns) - fill_ns
    assert entry_legs > 0, "the legs reached the fake after the entry filled"

    tags = runtime.adapter.tags
    await _until(lambda: target.tag in tags and stop.tag in tags, "the legs' ids", running)
    target_id, stop_id = probe.ids[target.tag or ""], probe.ids[stop.tag or ""]
    await asyncio.sleep(hold_s)
    ticks.send(target_price)
    await asyncio.to_thread(probe.move, target_price)
    target_fill = await _until(lambda: probe.fills.get(target_id), "the target's fill", running)

    def cancel() -> Sent | None:
        return next(
            (s for s in probe.sent[start:] if s.op == "cancel" and s.order_id == stop_id), None
        )

    fill_cancel = (await _until(cancel, "the stop's cancel", running)).ns - target_fill
    assert fill_cancel > 0, "the stop's cancel reached the fake after the target filled"

    await _until(
        lambda: (
            not state.positions() and state.book[0, layout.I_PENDING] == 0 and not router.working()
        ),
        "the engine flat with nothing working",
        running,
    )
    assert await asyncio.to_thread(probe.open_orders) == 0, "nothing rests at the fake"
    return entry_legs, fill_cancel


async def _session(
    probe: Probe, cfg: EngineConfig, rounds: int, warmup: int, hold_s: float
) -> tuple[list[int], list[int]]:
    """Run ``warmup + rounds`` rounds through a Runtime; return the measured rounds' latencies."""
    _warm_kernels(cfg)
    runtime = Runtime(cfg, io.StringIO())
    running = asyncio.create_task(runtime.run())
    keepalive = asyncio.create_task(_keepalive(probe))
    rng = random.Random(9)
    entry_legs: list[int] = []
    fill_cancel: list[int] = []
    try:
        await _until(
            lambda: runtime.feed is not None and runtime.feed_state() == "connected",
            "the broker's feed connected",
            running,
        )
        assert runtime.engine.state.halt_reason() is None, "entries are open"
        ticks = _Ticks(runtime.engine)
        await asyncio.to_thread(probe.move, START)
        for _ in range(3):
            ticks.send(START)
        for k in range(warmup + rounds):
            await _room(probe)
            side = layout.LONG if k % 2 == 0 else layout.SHORT
            sample = await _round(runtime, probe, ticks, side, rng.uniform(0, hold_s), running)
            if k >= warmup:
                entry_legs.append(sample[0])
                fill_cancel.append(sample[1])
    finally:
        keepalive.cancel()
        runtime.stop()
        await running
        gc.unfreeze()  # the runtime froze everything it had built
    return entry_legs, fill_cancel


def _run(probe: Probe, cfg: EngineConfig, rounds: int, warmup: int, hold_s: float):
    """Run :func:`_session` on uvloop, keeping the process's SIGINT and SIGTERM handlers.

    The runtime installs its own (as ``run.py`` does) and uvloop leaves them behind when the
    loop closes, which would swallow a later Ctrl-C in the same pytest process.
    """
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return uvloop.run(_session(probe, cfg, rounds, warmup, hold_s))
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)


def _ms(ns: list[int], q: float) -> float:
    return float(np.percentile(np.array(ns, np.float64), q) / 1e6)


@pytest.mark.benchmark(group="brackets")
@pytest.mark.parametrize("broker", list(CASES))
def test_bracket_latency(benchmark, broker, tmp_path, monkeypatch, bench_disabled: bool) -> None:
    case = CASES[broker]
    rounds = SMOKE_ROUNDS if bench_disabled else ROUNDS
    warmup = SMOKE_WARMUP if bench_disabled else WARMUP
    hold_s = SMOKE_HOLD_S if bench_disabled else HOLD_S
    runs: list[tuple[list[int], list[int]]] = []
    with case.fake() as fake:
        sections, env = fake.sections(tmp_path)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        cfg = _config(tmp_path, sections)
        benchmark.pedantic(
            lambda: runs.append(_run(fake, cfg, rounds, warmup, hold_s)),
            rounds=1,
            iterations=1,
        )
    entry_legs, fill_cancel = runs[-1]
    assert len(entry_legs) == len(fill_cancel) == rounds
    benchmark.extra_info.update(
        kind="brackets",
        broker=broker,
        rounds=rounds,
        updates=case.updates,
        poll_s=case.poll_s,
        hold_s=hold_s,
        entry_legs_p50_ms=_ms(entry_legs, 50),
        entry_legs_p99_ms=_ms(entry_legs, 99),
        entry_legs_max_ms=_ms(entry_legs, 100),
        fill_cancel_p50_ms=_ms(fill_cancel, 50),
        fill_cancel_p99_ms=_ms(fill_cancel, 99),
        fill_cancel_max_ms=_ms(fill_cancel, 100),
    )
