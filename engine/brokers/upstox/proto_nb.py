"""Numba decoder of Upstox's v3 market-data ``FeedResponse`` protobuf: frame bytes in, ticks out.

The feed sends one binary protobuf ``FeedResponse`` per frame (``MarketDataFeedV3.proto`` of the
official SDK, ``upstox_client/feeder/proto/MarketDataFeedV3_pb2.py``)::

    FeedResponse { Type type = 1; map<string, Feed> feeds = 2; int64 currentTs = 3;
                   MarketInfo marketInfo = 4; }
    Feed { oneof FeedUnion { LTPC ltpc = 1; FullFeed fullFeed = 2;
                             FirstLevelWithGreeks firstLevelWithGreeks = 3; }
           RequestMode requestMode = 4; }
    LTPC { double ltp = 1; int64 ltt = 2; int64 ltq = 3; double cp = 4;
           google.protobuf.DoubleValue iep = 5; }

A map entry is a nested ``{string key = 1; Feed value = 2;}`` message. The LTPC of an entry is
``feed.ltpc``, or for the other modes ``feed.fullFeed.marketFF.ltpc``,
``feed.fullFeed.indexFF.ltpc`` or ``feed.firstLevelWithGreeks.ltpc``; an entry without one
gives no tick.

:func:`decode_feed_response` walks the wire format with an explicit stack, driven by the schema
table :data:`~engine.brokers.upstox.proto_schema.SCHEMA` (checked against the SDK's descriptors
by the tests), and accepts exactly what the SDK's ``ParseFromString`` accepts: every nested
message of the schema is parsed, its strings must be valid UTF-8, unknown fields (and known
fields with another wire type) are skipped, unknown groups are matched, and the protobuf merge
rules are followed (the last value of a scalar wins, a repeated message merges, setting another
``oneof`` member clears the previous one). Ticks go straight into the batch columns; nothing
per tick is a Python object.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.brokers.upstox.proto_schema import (
    ENTRY,
    FEED,
    FEED_RESPONSE,
    FULL_FEED,
    GROUP,
    KIND_MESSAGE,
    KIND_STRING,
    LTPC,
    MAX_DEPTH,
    MAX_FIELD,
    SCHEMA,
    TYPE_NAMES,
    WIRE_OF_KIND,
)
from engine.feeds.csv_nb import _lookup_symbol, _valid_utf8, fnv1a
from kernels.jit import float_bits

__all__ = [
    "DECODE_FULL",
    "DECODE_OK",
    "PROTO_REJECTS",
    "SCHEMA",
    "TYPE_NAMES",
    "decode_feed_response",
    "reject_reason",
]

#: the frame was decoded; ``n`` rows were written
DECODE_OK = 0
#: the frame is well formed but carries more ticks than the batch holds; ``n`` is how many
DECODE_FULL = 1
#: reasons a frame is refused as malformed, for status codes ``2 + position``
PROTO_REJECTS: tuple[str, ...] = (
    "truncated",  # a field or a length-delimited value runs past its message
    "bad_varint",  # a varint longer than 10 bytes (5 for tags and lengths) or out of range
    "bad_tag",  # field number 0
    "bad_wire_type",  # wire type 6 or 7
    "bad_group",  # an end-group tag without its start, or a group left open
    "bad_utf8",  # a string field that is not valid UTF-8
    "too_deep",  # nesting beyond MAX_DEPTH
)
#: the malformed-frame status codes, in PROTO_REJECTS order
_TRUNCATED, _BAD_VARINT, _BAD_TAG, _BAD_WIRE_TYPE, _BAD_GROUP, _BAD_UTF8, _TOO_DEEP = range(2, 9)


def reject_reason(status: int) -> str:
    """Return the reason name of a malformed-frame status of :func:`decode_feed_response`."""
    return PROTO_REJECTS[status - 2]


@njit(cache=True, inline="always")
def _varint(buf, i, end, max_bytes):
    # returns (value, next position); next position -1: truncated, -2: too long
    value = np.int64(0)
    shift = 0
    for _ in range(max_bytes):
        if i >= end:
            return value, -1
        byte = buf[i]
        i += 1
        value |= np.int64(byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
    return value, -2


@njit(cache=True, inline="always")
def _fixed64(buf, i):
    bits = np.int64(0)
    for k in range(8):
        bits |= np.int64(buf[i + k]) << (8 * k)
    return bits


@njit(cache=True)
def decode_feed_response(
    buf, end, sym_bytes, sym_lens, sym_slots, rows, idx, price, size, ts, ltt, cp, stamp_ns
):
    """Decode the ``FeedResponse`` in ``buf[0:end]`` into tick rows, one per LTPC-carrying feed.

    Parameters
    ----------
    buf : numpy.ndarray
        uint8 frame bytes.
    end : int
        Frame length.
    sym_bytes, sym_lens, sym_slots : numpy.ndarray
        Instrument-key table from :func:`engine.feeds.csv_nb.build_symbol_table`.
    rows : numpy.ndarray
        int64 engine row of each table entry.
    idx, price, size, ts : numpy.ndarray
        Batch columns: the key's row (-1 for a key not in the table), ``ltp``, ``ltq`` and
        ``stamp_ns``.
    ltt : numpy.ndarray
        int64 column receiving ``ltt`` (ms since the epoch), as long as the batch.
    cp : numpy.ndarray
        float64 column receiving ``cp`` (previous close), as long as the batch.
    stamp_ns : int
        Arrival time of the frame, ns since the epoch, written to every row's ``ts``.

    Returns
    -------
    n : int
        Rows the frame carries (written when the status is ``DECODE_OK``).
    status : int
        ``DECODE_OK``, ``DECODE_FULL`` (``n`` exceeds the columns; nothing valid to deliver), or
        a malformed-frame code (see :func:`reject_reason`).
    """
    capacity = idx.shape[0]
    types = np.empty(MAX_DEPTH + 1, np.int64)
    ends = np.empty(MAX_DEPTH + 1, np.int64)
    groups = np.zeros(MAX_DEPTH + 1, np.int64)
    depth = 0
    types[0] = FEED_RESPONSE
    ends[0] = end
    n = 0
    # the map entry being decoded: key bytes, which oneof members are set, its LTPC so far
    key_s = 0
    key_e = 0
    member = 0
    sub_member = 0
    has_ltpc = False
    entry_unknown = False
    ltp = 0.0
    last_time = np.int64(0)
    last_qty = np.int64(0)
    close = 0.0
    pos = 0
    while True:
        kind_of_frame = types[depth]
        frame_end = ends[depth]
        if pos == frame_end:
            if kind_of_frame == GROUP:
                return n, _BAD_GROUP
            if depth == 0:
                break
            if kind_of_frame == ENTRY and has_ltpc and not entry_unknown:
                if n < capacity:
                    k = _lookup_symbol(
                        buf, key_s, key_e, fnv1a(buf, key_s, key_e), sym_bytes, sym_lens, sym_slots
                    )
                    idx[n] = rows[k] if k >= 0 else -1
                    price[n] = ltp
                    size[n] = np.float64(last_qty)
                    ts[n] = stamp_ns
                    ltt[n] = last_time
                    cp[n] = close
                n += 1
            depth -= 1
            continue
        tag, pos = _varint(buf, pos, frame_end, 5)
        if pos < 0:
            return n, _TRUNCATED if pos == -1 else _BAD_VARINT
        if tag > 0xFFFFFFFF:
            return n, _BAD_VARINT
        field = tag >> 3
        wire = tag & 7
        if wire == 4:
            if kind_of_frame == GROUP and groups[depth] == field:
                depth -= 1
                continue
            return n, _BAD_GROUP
        if field == 0 and kind_of_frame != GROUP:
            return n, _BAD_TAG
        kind = SCHEMA[kind_of_frame, field] if field <= MAX_FIELD else 0
        if kind != 0 and WIRE_OF_KIND[kind & 7] != wire:
            kind = 0  # a known field with another wire type is kept as an unknown one
        if kind == 0 and kind_of_frame == ENTRY:
            entry_unknown = True
        if wire == 0:
            value, pos = _varint(buf, pos, frame_end, 10)
            if pos < 0:
                return n, _TRUNCATED if pos == -1 else _BAD_VARINT
            if kind_of_frame == LTPC and kind != 0:
                if field == 2:
                    last_time = value
                elif field == 3:
                    last_qty = value
        elif wire == 1:
            if pos + 8 > frame_end:
                return n, _TRUNCATED
            if kind_of_frame == LTPC and kind != 0:
                if field == 1:
                    ltp = float_bits(_fixed64(buf, pos))
                elif field == 4:
                    close = float_bits(_fixed64(buf, pos))
            pos += 8
        elif wire == 5:
            if pos + 4 > frame_end:
                return n, _TRUNCATED
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos, frame_end, 5)
            if pos < 0:
                return n, _TRUNCATED if pos == -1 else _BAD_VARINT
            if length > frame_end - pos:
                return n, _TRUNCATED
            child_end = pos + length
            if kind & 7 == KIND_STRING:
                if not _valid_utf8(buf, pos, child_end):
                    return n, _BAD_UTF8
                if kind_of_frame == ENTRY:
                    key_s = pos
                    key_e = child_end
                pos = child_end
            elif kind & 7 == KIND_MESSAGE:
                child = kind >> 3
                if depth == MAX_DEPTH:
                    return n, _TOO_DEEP
                if child == ENTRY:
                    key_s = pos
                    key_e = pos
                    member = 0
                    sub_member = 0
                    has_ltpc = False
                    entry_unknown = False
                    ltp, last_time, last_qty, close = 0.0, np.int64(0), np.int64(0), 0.0
                elif kind_of_frame == FEED and field <= 3 and field != member:
                    # another member of Feed's oneof replaces the one set before
                    member = field
                    sub_member = 0
                    has_ltpc = False
                    ltp, last_time, last_qty, close = 0.0, np.int64(0), np.int64(0), 0.0
                elif kind_of_frame == FULL_FEED and field != sub_member:
                    sub_member = field
                    has_ltpc = False
                    ltp, last_time, last_qty, close = 0.0, np.int64(0), np.int64(0), 0.0
                if child == LTPC:
                    has_ltpc = True
                depth += 1
                types[depth] = child
                ends[depth] = child_end
                groups[depth] = 0
            else:
                pos = child_end
        elif wire == 3:
            if depth == MAX_DEPTH:
                return n, _TOO_DEEP
            depth += 1
            types[depth] = GROUP
            ends[depth] = frame_end
            groups[depth] = field
        else:
            return n, _BAD_WIRE_TYPE
    return n, (DECODE_OK if n <= capacity else DECODE_FULL)
