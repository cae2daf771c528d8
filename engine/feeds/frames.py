"""Parse the generic JSON tick protocol into a tick batch.

A frame is one tick object ``{"s": symbol, "p": price, "q": size, "t": ns}`` or an array of
them; ``q`` is optional. Ticks that cannot be represented (missing keys, wrong types) are
dropped and counted; everything representable goes to the kernels, which refuse and count bad
prices, unknown symbols and stale timestamps with the other feeds' ticks.
"""

from __future__ import annotations

import orjson

from engine.feeds.ticks import TickBatch

#: reasons a frame, or a tick inside one, is dropped before the kernels
FRAME_REJECTS = ("bad_json", "not_a_tick", "bad_field", "binary", "oversized", "fragmented")

_NUMBER = (float, int)


def decode_frame(payload: bytes | memoryview, rejected: dict[str, int]) -> list | None:
    """Return the frame's tick objects as a list, or None (counted) when it holds none."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        rejected["bad_json"] += 1
        return None
    if type(doc) is dict:
        return [doc]
    if type(doc) is list:
        return doc
    rejected["not_a_tick"] += 1
    return None


def fill_batch(
    ticks: list,
    start: int,
    index: dict[str, int],
    batch: TickBatch,
    rejected: dict[str, int],
) -> tuple[int, int]:
    """Copy ``ticks[start:]`` into ``batch`` until it is full.

    Parameters
    ----------
    ticks : list
        Decoded tick objects of one frame.
    start : int
        First tick to copy.
    index : dict of str to int
        Instrument row by symbol; unknown symbols get -1.
    batch : TickBatch
        Filled from row 0.
    rejected : dict of str to int
        Counters by reason, incremented for dropped ticks.

    Returns
    -------
    tuple of int
        Rows filled, and the index of the first tick not copied (``len(ticks)`` when done).
    """
    idx, price, size, ts = batch.idx, batch.price, batch.size, batch.ts
    capacity, end = batch.capacity, len(ticks)
    n = 0
    position = start
    while position < end and n < capacity:
        tick = ticks[position]
        position += 1
        if type(tick) is not dict:
            rejected["not_a_tick"] += 1
            continue
        symbol, p, q, t = tick.get("s"), tick.get("p"), tick.get("q", 0.0), tick.get("t")
        # bool is an int subclass, so exact type checks keep true/false out of prices
        if (
            type(symbol) is not str
            or type(p) not in _NUMBER
            or type(q) not in _NUMBER
            or type(t) is not int
            or not -(2**63) <= t < 2**63
        ):
            rejected["bad_field"] += 1
            continue
        idx[n] = index.get(symbol, -1)
        price[n] = p
        size[n] = q
        ts[n] = t
        n += 1
    return n, position
