"""Benchmarks: tick-to-order latency and the highest sustained tick rate of the live engine.

Two real processes: ``python run.py`` on the ``ws`` feed (see :mod:`bench.live`) and
``bench/feeder.py`` streaming a zig-zag price path at a fixed rate. The feeder stamps every
frame with ``time.monotonic_ns()`` just before writing it; the engine's journal gives, for
every order, the causing tick's ``t`` and its own ``recv_ns`` and ``submit_ns`` on the same
clock. Joining the two by ``t``:

- **sender stamp -> submit**: the whole path, socket and queueing included;
- **recv -> submit**: inside the engine, from the frame's arrival to the order leaving;
- **sender stamp -> recv**: the socket and whatever kept the engine from reading.

Each case runs with the engine and the feeder on the same CPU and on two different CPUs
(``os.sched_getaffinity``); the first 5 % of every run's ticks are warm-up and not counted.
``test_sustained_rate`` first floods the engine (the feeder writes as fast as the socket takes
it) to measure its processing rate under a backlog, then steps paced rates around that capacity
and keeps the highest one the engine follows without a growing backlog. Whether it follows is
read from the journal, not from ``/api/status`` (which answers late precisely when the engine
is behind): the orders trace which tick the engine had reached when, so a growing backlog is a
tick-to-order latency growing over the run (:func:`bench.live.keeping_up`).

Under ``--benchmark-disable`` every case sends :data:`SMOKE_TICKS_LIVE` ticks and only the
joins and the signs are checked, never a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.live import (
    LiveRig,
    RunResult,
    join_orders,
    keeping_up,
    placements,
    summarize_us,
)

#: latency cases: name -> (ticks per frame, ticks per second, seconds sent)
CASES = {
    "1k": (1, 1_000.0, 10.0),
    "10k": (1, 10_000.0, 5.0),
    "100k": (1, 100_000.0, 3.0),
    "100k-x100": (100, 100_000.0, 3.0),
}
#: most ticks of a run in smoke mode
SMOKE_TICKS_LIVE = 1_000
#: most seconds of a latency run in smoke mode
SMOKE_S = 0.25
#: share of a run's first ticks whose orders are warm-up, not counted
WARMUP_SHARE = 0.05
#: zig-zag leg of the latency runs: an entry and an exit every 10 ticks
LATENCY_LEG = 10
#: zig-zag leg of the throughput runs: an entry and an exit every 100 ticks
THROUGHPUT_LEG = 100
#: rate runs: name -> (ticks per frame, target ticks/s, flood ticks, paced rates to try)
RATE_CASES = {
    "x1": (
        1,
        500_000.0,
        400_000,
        (10e3, 20e3, 30e3, 40e3, 50e3, 60e3, 75e3, 100e3, 150e3, 200e3, 300e3, 500e3, 750e3),
    ),
    "x100": (
        100,
        3_000_000.0,
        2_000_000,
        (100e3, 200e3, 300e3, 400e3, 500e3, 600e3, 750e3, 1e6, 1.5e6, 2e6, 3e6, 4e6, 5e6),
    ),
}
#: seconds each paced rate is sent for
RUNG_S = 3.0
#: paced rates tried, relative to the flood capacity
RUNG_RANGE = (0.5, 1.3)
#: a rate is sustained when the feeder sends at least this share of it (a full socket slows
#: it down) ...
MIN_SEND_SHARE = 0.97
#: ... the tick-to-order latency grows by less than this many seconds per second (a backlog
#: growing at 3 % of the rate) ...
MAX_LATENCY_SLOPE = 0.03
#: ... and the orders of the run's last tenth of ticks took at most this long, median
MAX_END_LATENCY_MS = 20.0
#: latency targets, µs: engine-internal recv -> submit
RECV_SUBMIT_TARGET = {"p50": 5.0, "p99": 20.0}
#: latency targets, µs: sender stamp -> submit with engine and feeder on different CPUs
SEND_SUBMIT_TARGET = {"p50": 50.0, "p99": 150.0}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRig]:
    """Return one live engine for the module's runs, stopped after them."""
    engine_cpu = placements()["same-core"][0]
    with LiveRig(tmp_path_factory.mktemp("live_latency"), engine_cpu) as live:
        yield live


def whole_frames(ticks: float, frame_ticks: int) -> int:
    """Return ``ticks`` rounded down to whole frames, at least one frame."""
    return max(frame_ticks, int(ticks) // frame_ticks * frame_ticks)


def send_profile(result: RunResult) -> dict:
    """Return how the feeder wrote the run: writes and frames per write."""
    _, per_write = np.unique(result.stamps[:, 2], return_counts=True)
    return {
        "writes": int(per_write.size),
        "frames_per_write_mean": round(float(per_write.mean()), 2),
        "frames_per_write_max": int(per_write.max()),
        "send_rate": round(result.send_rate, 1),
    }


def target(goal: str, measured: float | None, limit: float) -> dict:
    """Return one target's record for ``extra_info``: goal, measured value and met."""
    met = None if measured is None else bool(measured <= limit)
    return {"goal": goal, "measured": measured, "unit": "µs", "met": met}


@pytest.mark.benchmark(group="live-latency")
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("placement", ["same-core", "cross-core"])
def test_tick_to_order_latency(
    benchmark: BenchmarkFixture,
    rig: LiveRig,
    bench_disabled: bool,
    placement: str,
    case: str,
) -> None:
    where = placements()
    if placement not in where:
        pytest.skip("one usable CPU: no cross-core placement")
    engine_cpu, feeder_cpu = where[placement]
    frame_ticks, rate, seconds = CASES[case]
    if bench_disabled:
        seconds = min(seconds, SMOKE_TICKS_LIVE / rate, SMOKE_S)
    count = whole_frames(rate * seconds, frame_ticks)
    result = benchmark.pedantic(
        rig.run,
        kwargs={
            "count": count,
            "rate": rate,
            "frame_ticks": frame_ticks,
            "engine_cpu": engine_cpu,
            "feeder_cpu": feeder_cpu,
            "leg": LATENCY_LEG,
        },
        rounds=1,
        iterations=1,
    )
    joined = join_orders(result, skip_ticks=int(count * WARMUP_SHARE))
    send_submit = summarize_us(joined["send_submit"])
    recv_submit = summarize_us(joined["recv_submit"])
    send_recv = summarize_us(joined["send_recv"])
    targets = {
        "recv_submit_p50": target("≤ 5 µs", recv_submit["p50"], RECV_SUBMIT_TARGET["p50"]),
        "recv_submit_p99": target("≤ 20 µs", recv_submit["p99"], RECV_SUBMIT_TARGET["p99"]),
    }
    if placement == "cross-core":
        targets["send_submit_p50"] = target(
            "≤ 50 µs", send_submit["p50"], SEND_SUBMIT_TARGET["p50"]
        )
        targets["send_submit_p99"] = target(
            "≤ 150 µs", send_submit["p99"], SEND_SUBMIT_TARGET["p99"]
        )
    benchmark.extra_info.update(
        kind="live_latency",
        case=case,
        placement=placement,
        engine_cpu=engine_cpu,
        feeder_cpu=feeder_cpu,
        rate=rate,
        frame_ticks=frame_ticks,
        count=count,
        leg=LATENCY_LEG,
        orders=len(result.orders),
        unmatched=joined["unmatched"],
        send_submit_us=send_submit,
        recv_submit_us=recv_submit,
        send_recv_us=send_recv,
        engine_status_latency_us={
            "frame": result.status["latency_us"],
            "order": result.status["order_latency_us"],
        },
        targets=targets,
        **send_profile(result),
    )
    assert result.orders, "the zig-zag made no orders"
    assert joined["unmatched"] == 0, "orders whose tick_t is no tick of the run"
    assert send_submit["n"] > 0 and recv_submit["n"] == send_submit["n"]
    assert min(joined["send_submit"]) > 0 and min(joined["recv_submit"]) >= 0


def sustained(step: dict, rate: float) -> bool:
    """Return True when a paced run at ``rate`` kept no growing backlog (see the constants)."""
    slope, end = step["latency_slope"], step["end_latency_ms"]
    return bool(
        step["send_rate"] >= MIN_SEND_SHARE * rate
        and (slope is None or slope <= MAX_LATENCY_SLOPE)
        and (end is None or end <= MAX_END_LATENCY_MS)
    )


def rungs(ladder: tuple[float, ...], cap: float, goal: float) -> list[float]:
    """Return the paced rates to try first, ascending: the ladder around ``cap``, and ``goal``."""
    low, high = RUNG_RANGE
    chosen = [r for r in ladder if low * cap <= r <= high * cap]
    if goal <= high * cap and goal not in chosen:
        chosen.append(goal)
    if not chosen:
        below = [r for r in ladder if r < low * cap]
        chosen = below[-1:] or list(ladder[:1])
    return sorted(chosen)


def measure_rates(
    rig: LiveRig,
    frame_ticks: int,
    goal: float,
    flood_ticks: int,
    ladder: tuple[float, ...],
    engine_cpu: int,
    feeder_cpu: int,
    smoke: bool,
) -> dict:
    """Flood the engine, then step paced rates; return the flood and every step's record.

    The steps start around the flood's rate and go up the ladder while the engine keeps up,
    down it while the lowest one tried does not; the result's ``max_sustained`` is the highest
    rate kept up with.
    """
    run = {
        "frame_ticks": frame_ticks,
        "engine_cpu": engine_cpu,
        "feeder_cpu": feeder_cpu,
        "leg": THROUGHPUT_LEG,
    }
    flood = rig.run(flood_ticks, 0.0, **run)
    flood_info = {"count": flood_ticks, **keeping_up(flood)}
    cap = flood_info["engine_rate"] or 0.0
    steps: list[dict] = []
    plan = [ladder[0]] if smoke else rungs(ladder, cap, goal)
    best = None
    while plan:
        rate = plan.pop(0)
        count = whole_frames(SMOKE_TICKS_LIVE if smoke else rate * RUNG_S, frame_ticks)
        step = {"rate": rate, "count": count, **keeping_up(rig.run(count, rate, **run))}
        step["sustained"] = sustained(step, rate)
        steps.append(step)
        if smoke:
            break
        if step["sustained"]:
            best = rate if best is None else max(best, rate)
            if not plan:  # every rung tried so far held: keep climbing
                plan = [r for r in ladder if r > rate][:1]
        elif best is None:  # the lowest rung tried already lags: step down
            plan = [r for r in ladder if r < rate][-1:]
        else:
            break
    return {"capacity": cap, "flood": flood_info, "steps": steps, "max_sustained": best}


@pytest.mark.benchmark(group="live-rate")
@pytest.mark.parametrize("frames", list(RATE_CASES))
def test_sustained_rate(
    benchmark: BenchmarkFixture, rig: LiveRig, bench_disabled: bool, frames: str
) -> None:
    where = placements()
    placement = "cross-core" if "cross-core" in where else "same-core"
    engine_cpu, feeder_cpu = where[placement]
    frame_ticks, goal, flood_ticks, ladder = RATE_CASES[frames]
    if bench_disabled:
        flood_ticks = whole_frames(10 * SMOKE_TICKS_LIVE, frame_ticks)
    out = benchmark.pedantic(
        measure_rates,
        args=(rig, frame_ticks, goal, flood_ticks, ladder, engine_cpu, feeder_cpu),
        kwargs={"smoke": bench_disabled},
        rounds=1,
        iterations=1,
    )
    best = out["max_sustained"]
    benchmark.extra_info.update(
        kind="live_rate",
        frames=frames,
        frame_ticks=frame_ticks,
        placement=placement,
        engine_cpu=engine_cpu,
        feeder_cpu=feeder_cpu,
        leg=THROUGHPUT_LEG,
        capacity=round(out["capacity"], 1),
        max_sustained=best,
        flood=out["flood"],
        steps=out["steps"],
        targets={
            "sustained": {
                "goal": f"≥ {goal:,.0f} ticks/s",
                "measured": best,
                "unit": "ticks/s",
                "met": best is not None and best >= goal,
            }
        },
    )
    assert out["capacity"] > 0 and out["flood"]["send_rate"] > 0
    assert out["flood"]["orders"] > 0
    assert out["steps"] and all(step["send_rate"] > 0 for step in out["steps"])
    assert all(step["orders"] > 0 for step in out["steps"])
