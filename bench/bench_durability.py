"""Benchmarks: what the flight recorder and the journal's fsync cost, each against itself off.

- ``test_single_tick_frame``: the ``ws`` feed's path for a one-tick frame (the fast JSON parse,
  then ``Engine.process`` of one tick), 1,000 frames per round, with and without the recorder.
  The issue's target: the recorder slows it by no more than 10 %.
- ``test_journal_fsync``: one second of a 100k ticks/s feed (100 batches of 1,000 ticks of the
  trading benchmark stream) through ``Engine.process`` with the journal as its sink, fsync per
  drained block on and off, on this machine's disk.

Both pairs run in the same session, so their ratio holds on a shared machine; the numba start-up
is paid before the timing (the first call of each case is not timed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from engine.config import EngineConfig
from engine.core import Engine
from engine.feeds.csv_nb import build_symbol_table
from engine.feeds.json_nb import DONE, parse_json_ticks
from engine.feeds.ticks import TickBatch
from engine.journal import Journal
from engine.record import Recorder

#: one-tick frames per round of the frame benchmark
FRAMES = 1000
#: ticks per batch and batches per round of the fsync benchmark: 1 s at 100k ticks/s
BATCH, BATCHES = 1000, 100


def _frames(ticks, n: int) -> list[np.ndarray]:
    out = []
    for k in range(n):
        frame = {"s": "NIFTY", "p": float(ticks.price[k]), "q": 1, "t": int(ticks.ts[k])}
        out.append(np.frombuffer(orjson.dumps(frame), np.uint8).copy())
    return out


@pytest.mark.benchmark(group="durability")
@pytest.mark.parametrize("recorder", [False, True], ids=["no-recorder", "recorder"])
def test_single_tick_frame(
    benchmark: BenchmarkFixture,
    tmp_path: Path,
    ticks_1inst,
    engine_config: Callable[..., EngineConfig],
    recorder: bool,
) -> None:
    cfg = engine_config(("NIFTY",))
    engine = Engine(cfg)
    if recorder:
        rec_cfg = cfg.model_copy(
            update={"record": cfg.record.model_copy(update={"dir": str(tmp_path)})}
        )
        engine.recorder = Recorder(rec_cfg, engine.state, "bench")
        engine.recorder.open("2025-11-21")
    frames = _frames(ticks_1inst, min(ticks_1inst.n, 50 * FRAMES))
    table = build_symbol_table(["NIFTY"])
    batch = TickBatch(8)
    columns = (batch.idx, batch.price, batch.size, batch.ts)
    position = [0]

    def run() -> int:
        start = position[0]
        for buf in frames[start : start + FRAMES]:
            n, _, status = parse_json_ticks(buf, 0, len(buf), *table, *columns)
            assert status == DONE
            engine.process(batch.idx, batch.price, batch.size, batch.ts, n)
        position[0] = (start + FRAMES) % (len(frames) - FRAMES + 1)
        return FRAMES

    run()  # numba dispatch warm, outside the timing
    benchmark.extra_info["ticks"] = FRAMES
    assert benchmark.pedantic(run, rounds=40, warmup_rounds=2) == FRAMES
    if recorder:
        engine.recorder.close()
        assert engine.recorder.lost == 0 and engine.recorder.written > 0


@pytest.mark.benchmark(group="durability")
@pytest.mark.parametrize("fsync", [False, True], ids=["no-fsync", "fsync"])
def test_journal_fsync(
    benchmark: BenchmarkFixture,
    tmp_path: Path,
    ticks_1inst,
    engine_config: Callable[..., EngineConfig],
    fsync: bool,
) -> None:
    cfg = engine_config(("NIFTY",))
    journal_cfg = cfg.journal.model_copy(update={"path": str(tmp_path / "j.jsonl"), "fsync": fsync})
    cfg = cfg.model_copy(update={"journal": journal_cfg})
    ticks = ticks_1inst.head(min(ticks_1inst.n, BATCH * BATCHES))
    blocks = [0]

    def run() -> int:
        engine = Engine(cfg)
        journal = Journal(cfg, engine.state.symbols)
        engine.sinks.append(journal)
        engine.sinks.append(lambda rows, recv_ns: blocks.__setitem__(0, blocks[0] + 1))
        for a in range(0, ticks.n, BATCH):
            b = a + BATCH
            engine.process(ticks.idx[a:b], ticks.price[a:b], ticks.size[a:b], ticks.ts[a:b], BATCH)
        journal.close()
        return ticks.n

    run()
    blocks[0] = 0
    benchmark.extra_info["ticks"] = ticks.n
    rounds = 10
    assert benchmark.pedantic(run, rounds=rounds) == ticks.n
    benchmark.extra_info["blocks_per_round"] = blocks[0] / rounds
