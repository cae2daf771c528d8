"""Benchmarks: each kernel, and the fused ``on_tick``, called from Python one call at a time.

Every number here includes Numba's dispatch from Python (type-checking the arguments, unboxing
the arrays), which the batch loop ``run_ticks`` never pays per tick; ``update_ema``, the smallest
kernel, measures that floor. The kernels run on a *prepared* state: a one-instrument engine
warmed on real ticks until its ATR and RSI are warm and a bracketed position has survived a tick
since its entry, so the bracket check, the mark to market and the risk gate take their full
paths rather than the early returns of a flat book.

Calls repeat with the same arguments. That keeps the work of each call alike, with two effects
worth knowing when reading the numbers: ``apply_fill`` adds to the position on every call and,
once the 64k-row event ring is full, its event write takes the ring-full branch; ``on_tick``
sees a constant price, so it follows the common no-signal, no-exit path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from engine.config import EngineConfig
from engine.core import Engine
from kernels import KERNELS, layout, on_tick, update_ema

if TYPE_CHECKING:
    from bench.conftest import Ticks

#: ticks run before stepping to an open position; 1 s bars make ATR and RSI warm well before
WARMUP_TICKS = 50_000
#: the instrument row every kernel works on
INST = 0
#: fixed calibration for every call here: 20,000 rounds of 10 back-to-back calls. Ten calls
#: spread the timer's own cost; short rounds keep the p99 about the calls, not about the
#: scheduler (a round that loses the CPU to another process is one round in 20,000, where a
#: longer round would be hit more often); a round's time is the mean of its calls
MICRO = {"rounds": 20_000, "iterations": 10, "warmup_rounds": 100}


@dataclass(frozen=True)
class Prepared:
    """A warmed state and the arguments of the tick it stopped on."""

    book: np.ndarray
    events: np.ndarray
    i: int
    price: float
    size: float
    ts: int
    side: int
    qty: float
    ltp_ticks: float


@pytest.fixture(scope="session")
def warm_state(ticks_1inst: Ticks, engine_config: Callable[..., EngineConfig]) -> Prepared:
    """Return a snapshot of a warmed one-instrument state holding a surviving position."""
    engine = Engine(engine_config(("NIFTY",), bar_seconds=1))
    t = ticks_1inst
    engine.process(t.idx, t.price, t.size, t.ts, WARMUP_TICKS)
    state = engine.state
    book, events = state.book, state.events
    k = WARMUP_TICKS
    while not (
        book[INST, layout.I_SIDE] != layout.FLAT
        and book[INST, layout.I_STOP_KIND] != layout.R_NONE
        and book[INST, layout.I_ENTERED_AT] != book[INST, layout.I_TICKS]
    ):
        if k == t.n:
            raise RuntimeError("no position survived a tick after its entry in the stream")
        on_tick(book, events, int(t.idx[k]), float(t.price[k]), float(t.size[k]), int(t.ts[k]))
        k += 1
    engine.drain()
    warm = np.isfinite(book[INST, layout.I_ATR]) and np.isfinite(book[INST, layout.I_RSI])
    assert warm, "ATR and RSI should be warm"
    return Prepared(
        book=book.copy(),
        events=events.copy(),
        i=INST,
        price=float(t.price[k - 1]),
        size=float(t.size[k - 1]),
        ts=int(t.ts[k - 1]),
        side=int(book[INST, layout.I_SIDE]),
        qty=float(book[INST, layout.I_QTY]),
        ltp_ticks=float(book[INST, layout.I_LTP_TICKS]),
    )


@pytest.fixture
def prepared(warm_state: Prepared) -> Prepared:
    """Return a private copy of the warmed state, so no benchmark sees another's calls."""
    w = warm_state
    return Prepared(
        w.book.copy(), w.events.copy(), w.i, w.price, w.size, w.ts, w.side, w.qty, w.ltp_ticks
    )


def kernel_args(p: Prepared) -> dict[str, tuple]:
    """Return each kernel's arguments on the prepared state, by kernel name."""
    b, i = p.book, p.i
    return {
        "apply_tick": (b, i, p.price, p.size, p.ts),
        "update_bar": (b, i, p.price, p.size, p.ts),
        "update_ema": (b, i, p.price),
        "update_atr": (b, i),
        "update_rsi": (b, i),
        "detect_crossover": (b, i),
        "risk_gate": (b, i, p.qty, p.ts),
        "size_order": (b, i),
        "bracket_levels": (b, i, p.side, p.ltp_ticks),
        "check_bracket": (b, i),
        "apply_fill": (b, p.events, i, p.side, p.qty, p.ltp_ticks, p.ts, layout.R_NONE),
        "mark_to_market": (b, i),
    }


@pytest.mark.benchmark(group="kernel")
@pytest.mark.parametrize("kernel", KERNELS, ids=[k.__name__ for k in KERNELS])
def test_kernel(
    benchmark: BenchmarkFixture, prepared: Prepared, kernel: Callable[..., object]
) -> None:
    name = kernel.__name__
    args = kernel_args(prepared)[name]
    kernel(*args)  # load the compiled code outside the timing
    benchmark.extra_info.update(kind="kernel", kernel=name, ticks=1, instruments=1)
    benchmark.pedantic(kernel, args=args, **MICRO)


@pytest.mark.benchmark(group="on_tick")
def test_on_tick(benchmark: BenchmarkFixture, prepared: Prepared) -> None:
    p = prepared
    args = (p.book, p.events, p.i, p.price, p.size, p.ts)
    on_tick(*args)
    benchmark.extra_info.update(kind="on_tick", ticks=1, instruments=1)
    benchmark.pedantic(on_tick, args=args, **MICRO)
    assert on_tick(*args) == 0


@pytest.mark.benchmark(group="on_tick")
def test_update_ema_dispatch_floor(benchmark: BenchmarkFixture, prepared: Prepared) -> None:
    p = prepared
    update_ema(p.book, p.i, p.price)
    benchmark.extra_info.update(kind="dispatch_floor", ticks=1, instruments=1)
    benchmark.pedantic(update_ema, args=(p.book, p.i, p.price), **MICRO)
