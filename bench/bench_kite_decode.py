"""Benchmarks: Kite binary ticker decode per tick, OTrade's Numba decoder against pykiteconnect.

One frame of :data:`PACKETS` packets (LTP mode, then quote mode) over as many instruments is
decoded from its bytes, the way each client receives it: OTrade copies the frame into its reused
buffer and runs :func:`~engine.brokers.kite.ticker_nb.decode_ticks` into tick columns (what
:class:`~engine.brokers.kite.ticker.KiteTicker` does per frame); pykiteconnect runs
``KiteTicker._parse_binary``, which builds a dict per tick. Both run in the same session on the
same frame, pykiteconnect first (parametrize order), so the OTrade case records the ratio of
the two medians in ``extra_info`` next to the issue's target (LTP decode at least 20x
pykiteconnect's per tick); run alone, it records its own figure without a ratio.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from kiteconnect import KiteTicker as PyKiteTicker
from pytest_benchmark.fixture import BenchmarkFixture

from engine.brokers.kite.ticker_nb import decode_ticks, token_table
from engine.feeds.ticks import TickBatch
from tests.fakes.kite_ticker import frame, ltp_packet, quote_packet

#: packets per benchmark frame, one per instrument
PACKETS = 100
#: NSE equity tokens (segment 1) of the benchmark instruments
TOKENS = [(1000 + k) << 8 | 1 for k in range(PACKETS)]
#: rounds and calls per round by decoder (pykiteconnect's frame takes ~100x longer)
TIMING = {
    "otrade": {"rounds": 2000, "iterations": 20, "warmup_rounds": 50},
    "pykiteconnect": {"rounds": 200, "iterations": 5, "warmup_rounds": 5},
}
#: the issue's target: OTrade's LTP decode per tick at least this many times pykiteconnect's
TARGET_SPEEDUP = 20.0
#: 2025-11-21 04:40 UTC in ns, the wall stamp of every tick
WALL_NS = 1_763_700_000_000_000_000
#: median ns per tick of each decoder by mode, filled as the cases run
MEASURED: dict[tuple[str, str], float] = {}

#: the frames: mode -> bytes
FRAMES = {
    "ltp": frame([ltp_packet(t, 2_215_025 + 5 * k) for k, t in enumerate(TOKENS)]),
    "quote": frame(
        [
            quote_packet(t, last_price=2_215_025 + 5 * k, last_traded_quantity=75, close=2_200_000)
            for k, t in enumerate(TOKENS)
        ]
    ),
}


def otrade_decoder() -> tuple[Callable[[bytes], int], TickBatch]:
    """Return OTrade's per-frame decode (copy into the reused buffer, decode) and its batch."""
    keys, rows = token_table({token: row for row, token in enumerate(TOKENS)})
    batch = TickBatch(4096)
    buffer = np.zeros(1 << 16, np.uint8)
    view = memoryview(buffer)
    columns = (batch.idx, batch.price, batch.size, batch.ts)

    def decode(payload: bytes) -> int:
        size = len(payload)
        view[:size] = payload
        return decode_ticks(buffer, size, keys, rows, *columns, WALL_NS, 0)

    return decode, batch


def pykite_decoder() -> Callable[[bytes], list]:
    """Return pykiteconnect's parser bound to an instance made without its network setup."""
    ticker = object.__new__(PyKiteTicker)
    return ticker._parse_binary


def ns_per_tick(benchmark: BenchmarkFixture) -> float | None:
    """Return the median ns per tick of a finished case, None when benchmarks are disabled."""
    if benchmark.stats is None:
        return None
    return benchmark.stats.stats.median * 1e9 / PACKETS


@pytest.mark.parametrize("mode", list(FRAMES))
@pytest.mark.parametrize("decoder", ["pykiteconnect", "otrade"])
def test_kite_decode(benchmark: BenchmarkFixture, decoder: str, mode: str) -> None:
    benchmark.group = f"kite-decode-{mode}"
    payload = FRAMES[mode]
    expected = [p / 100 for p in range(2_215_025, 2_215_025 + 5 * PACKETS, 5)]
    if decoder == "otrade":
        decode, batch = otrade_decoder()
        assert decode(payload) == PACKETS  # load the compiled code outside the timing
        assert batch.price[:PACKETS].tolist() == expected
        assert batch.idx[:PACKETS].tolist() == list(range(PACKETS))
    else:
        parse = pykite_decoder()
        assert [tick["last_price"] for tick in parse(payload)] == expected
        decode = parse
    benchmark.pedantic(decode, args=(payload,), **TIMING[decoder])
    per_tick = ns_per_tick(benchmark)
    benchmark.extra_info.update(
        kind="kite_decode", decoder=decoder, mode=mode, ticks=PACKETS, frame_bytes=len(payload)
    )
    if per_tick is None:
        return
    MEASURED[decoder, mode] = per_tick
    benchmark.extra_info["ns_per_tick"] = round(per_tick, 2)
    reference = MEASURED.get(("pykiteconnect", mode))
    if decoder == "otrade" and reference is not None:
        speedup = reference / per_tick
        benchmark.extra_info["speedup_vs_pykiteconnect"] = round(speedup, 1)
        if mode == "ltp":
            benchmark.extra_info["target"] = {
                "goal": f"≥ {TARGET_SPEEDUP:g}x pykiteconnect per tick",
                "measured": round(speedup, 1),
                "unit": "x",
                "met": bool(speedup >= TARGET_SPEEDUP),
            }
