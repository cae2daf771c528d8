"""Numba decoders of Kite Connect's binary ticker frames: frame bytes in, arrays out.

A binary frame shorter than 2 bytes is a heartbeat. Otherwise it is big-endian: a u16 packet
count, then per packet a u16 length and that many bytes of body. The body's length says its
mode: LTP 8, quote 44, full 184, index quote 28, index full 32 bytes. Every field is a u32
(depth ``orders`` a u16); prices are integers scaled by a divisor chosen by the instrument's
segment, ``token & 0xFF``: CDS (3) 1e7, BCD (6) and NCO (12) 1e4, every other segment 100 —
exactly what pykiteconnect's ``KiteTicker._parse_binary`` does (BROKERS.md omits NCO).
pykiteconnect divides ``last_price``, ``average_traded_price``, ``open``/``high``/``low``/
``close`` and depth prices; quantities, volumes, open interest and times stay integers.

:func:`decode_ticks` is the engine's hot path (price, size and instrument row per packet into a
:class:`~engine.feeds.ticks.TickBatch`); :func:`decode_full` keeps every field of every mode in
a 2-D array whose columns are named by the ``COL_*`` constants. Both check the whole frame with
:func:`frame_packets` first and refuse a malformed one with a negative code, never reading past
``n_bytes``. Bytes after the last packet are ignored, as pykiteconnect ignores them.

Comparisons spell out ``x == a or x == b`` because numba compiles ``x in (a, b)`` to a slower
loop over the tuple (noqa SIM109, as in ``engine.feeds.csv_nb``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: body length of an LTP-mode packet: token, last price
LTP_LEN = 8
#: body length of a quote-mode packet: LTP plus quantities, average price and OHLC
QUOTE_LEN = 44
#: body length of a full-mode packet: quote plus times, open interest and 10 depth entries
FULL_LEN = 184
#: body length of an index quote packet: token, last price, high, low, open, close, change
INDEX_QUOTE_LEN = 28
#: body length of an index full packet: index quote plus the exchange timestamp
INDEX_FULL_LEN = 32

#: the frame is cut short: a packet count or length points beyond ``n_bytes``
ERR_TRUNCATED = -1
#: a packet's length is none of the five Kite packet lengths (kite/ticker.py indexes its
#: reject reasons by these two codes)
ERR_PACKET_LENGTH = -2
#: ``decode_full``'s output array has fewer rows than the frame has packets, or too few columns
ERR_OUT_OF_ROOM = -3

#: ``COL_MODE`` value of an LTP packet
PACKET_LTP = 1
#: ``COL_MODE`` value of a quote packet
PACKET_QUOTE = 2
#: ``COL_MODE`` value of a full packet
PACKET_FULL = 3
#: ``COL_MODE`` value of an index quote packet
PACKET_INDEX_QUOTE = 4
#: ``COL_MODE`` value of an index full packet
PACKET_INDEX_FULL = 5

#: segment of currency derivatives (NSE CDS): prices in units of 1e-7
SEGMENT_CDS = 3
#: segment of BSE currency derivatives: prices in units of 1e-4
SEGMENT_BCD = 6
#: segment of NSE commodity derivatives: prices in units of 1e-4 (pykiteconnect's ``nco``)
SEGMENT_NCO = 12
#: segment of indices (not tradable)
SEGMENT_INDICES = 9

# columns of decode_full's output; a field the packet's mode does not carry is NaN
#: packet mode, one of the ``PACKET_*`` codes
COL_MODE = 0
#: instrument token
COL_TOKEN = 1
#: last traded price
COL_LTP = 2
#: last traded quantity
COL_LTQ = 3
#: average traded price
COL_AVG = 4
#: volume traded today
COL_VOLUME = 5
#: total buy quantity
COL_TBQ = 6
#: total sell quantity
COL_TSQ = 7
#: open price
COL_OPEN = 8
#: high price
COL_HIGH = 9
#: low price
COL_LOW = 10
#: close price (previous day's)
COL_CLOSE = 11
#: percent change of the last price over close, 0 when close is 0 (computed as pykiteconnect)
COL_CHANGE = 12
#: last trade time, seconds since the epoch
COL_LTT = 13
#: open interest
COL_OI = 14
#: open interest, day high
COL_OI_HIGH = 15
#: open interest, day low
COL_OI_LOW = 16
#: exchange timestamp, seconds since the epoch
COL_EXCHANGE_TS = 17
#: first depth column; entry k (0-4 buy, 5-9 sell) field f is at COL_DEPTH + DEPTH_FIELDS*k + f
COL_DEPTH = 18
#: depth entries of a full packet: 5 buy levels, then 5 sell levels
DEPTH_ENTRIES = 10
#: columns per depth entry
DEPTH_FIELDS = 3
#: depth field offset of the quantity
DEPTH_QTY = 0
#: depth field offset of the price
DEPTH_PRICE = 1
#: depth field offset of the number of orders
DEPTH_ORDERS = 2
#: columns of decode_full's output
N_COLUMNS = COL_DEPTH + DEPTH_ENTRIES * DEPTH_FIELDS

#: byte offset of the depth block in a full packet, and the bytes per depth entry
_DEPTH_AT, _DEPTH_STEP = 64, 12


def depth_column(entry: int, field: int) -> int:
    """Return the ``decode_full`` column of depth ``entry`` (0-9) and ``field`` (``DEPTH_*``)."""
    return COL_DEPTH + DEPTH_FIELDS * entry + field


def token_table(tokens: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``decode_ticks``'s lookup arrays for ``tokens`` (instrument token -> engine row).

    Returns
    -------
    tuple of numpy.ndarray
        Sorted int64 tokens and the int64 engine row of each.
    """
    keys = np.array(sorted(tokens), np.int64)
    rows = np.array([tokens[int(key)] for key in keys], np.int64)
    return keys, rows


@njit(cache=True, inline="always")
def _u16(buf, i):
    return (np.int64(buf[i]) << 8) | np.int64(buf[i + 1])


@njit(cache=True, inline="always")
def _u32(buf, i):
    return (
        (np.int64(buf[i]) << 24)
        | (np.int64(buf[i + 1]) << 16)
        | (np.int64(buf[i + 2]) << 8)
        | np.int64(buf[i + 3])
    )


@njit(cache=True, inline="always")
def _divisor(token):
    segment = token & 0xFF
    if segment == SEGMENT_CDS:
        return 10000000.0
    if segment == SEGMENT_BCD or segment == SEGMENT_NCO:  # noqa: SIM109
        return 10000.0
    return 100.0


@njit(cache=True, inline="always")
def _known_length(length):
    return (
        length == LTP_LEN  # noqa: SIM109
        or length == QUOTE_LEN
        or length == FULL_LEN
        or length == INDEX_QUOTE_LEN
        or length == INDEX_FULL_LEN
    )


@njit(cache=True)
def frame_packets(frame: np.ndarray, n_bytes: int) -> int:
    """Check a frame's structure and return its packet count.

    Parameters
    ----------
    frame : numpy.ndarray
        uint8 buffer holding the frame in ``frame[:n_bytes]``.
    n_bytes : int
        Length of the frame.

    Returns
    -------
    int
        Packets in the frame (0 for a heartbeat), or ``ERR_TRUNCATED`` / ``ERR_PACKET_LENGTH``.
    """
    if n_bytes > frame.shape[0]:
        return ERR_TRUNCATED
    if n_bytes < 2:
        return 0
    count = _u16(frame, 0)
    pos = 2
    for _ in range(count):
        if pos + 2 > n_bytes:
            return ERR_TRUNCATED
        length = _u16(frame, pos)
        pos += 2 + length
        if pos > n_bytes:
            return ERR_TRUNCATED
        if not _known_length(length):
            return ERR_PACKET_LENGTH
    return count


@njit(cache=True)
def decode_ticks(
    frame: np.ndarray,
    n_bytes: int,
    token_keys: np.ndarray,
    token_rows: np.ndarray,
    idx_out: np.ndarray,
    price_out: np.ndarray,
    size_out: np.ndarray,
    ts_out: np.ndarray,
    recv_wall_ns: int,
    start: int,
) -> int:
    """Decode a frame's packets into tick columns, one tick per packet.

    Parameters
    ----------
    frame : numpy.ndarray
        uint8 buffer holding the frame in ``frame[:n_bytes]``.
    n_bytes : int
        Length of the frame.
    token_keys, token_rows : numpy.ndarray
        Sorted int64 instrument tokens and the engine row of each (see :func:`token_table`).
    idx_out, price_out, size_out, ts_out : numpy.ndarray
        Tick columns, filled from row 0 up to their length: engine row (-1 for a token not in
        ``token_keys``), last price, last traded quantity (0.0 for LTP and index packets) and
        ``recv_wall_ns`` (Kite's LTP and quote packets carry no time, so every tick is stamped
        with the frame's arrival, which also keeps time monotonic).
    recv_wall_ns : int
        Wall clock at the frame's arrival, ns since the epoch.
    start : int
        First packet to decode: 0 for a new frame; when a call fills the columns, call again
        with ``start`` advanced by the ticks it returned.

    Returns
    -------
    int
        Ticks written, or ``ERR_TRUNCATED`` / ``ERR_PACKET_LENGTH`` for a malformed frame.
    """
    count = frame_packets(frame, n_bytes)
    if count <= 0:
        return count
    capacity = idx_out.shape[0]
    n_keys = token_keys.shape[0]
    n = 0
    pos = 2
    for k in range(count):
        length = _u16(frame, pos)
        body = pos + 2
        pos = body + length
        if k < start:
            continue
        if n == capacity:
            break
        token = _u32(frame, body)
        price_out[n] = _u32(frame, body + 4) / _divisor(token)
        if length == QUOTE_LEN or length == FULL_LEN:  # noqa: SIM109
            size_out[n] = _u32(frame, body + 8)
        else:
            size_out[n] = 0.0
        slot = np.searchsorted(token_keys, token)
        idx_out[n] = token_rows[slot] if slot < n_keys and token_keys[slot] == token else -1
        ts_out[n] = recv_wall_ns
        n += 1
    return n


@njit(cache=True, inline="always")
def _ohlc_change(out, row, ltp, close):
    # pykiteconnect's own arithmetic, so the floats agree to the bit
    out[row, COL_CHANGE] = (ltp - close) * 100 / close if close != 0 else 0.0


@njit(cache=True)
def decode_full(frame: np.ndarray, n_bytes: int, out: np.ndarray) -> int:
    """Decode every field of every packet of a frame, one row per packet.

    Parameters
    ----------
    frame : numpy.ndarray
        uint8 buffer holding the frame in ``frame[:n_bytes]``.
    n_bytes : int
        Length of the frame.
    out : numpy.ndarray
        float64 array of at least the frame's packets (see :func:`frame_packets`) by
        ``N_COLUMNS``; rows ``[0, n)`` are overwritten, NaN where the mode has no such field.

    Returns
    -------
    int
        Packets decoded, or ``ERR_TRUNCATED`` / ``ERR_PACKET_LENGTH`` for a malformed frame,
        ``ERR_OUT_OF_ROOM`` when ``out`` is too small.
    """
    count = frame_packets(frame, n_bytes)
    if count <= 0:
        return count
    if count > out.shape[0] or out.shape[1] < N_COLUMNS:
        return ERR_OUT_OF_ROOM
    pos = 2
    for row in range(count):
        length = _u16(frame, pos)
        b = pos + 2
        pos = b + length
        out[row, :] = np.nan
        token = _u32(frame, b)
        divisor = _divisor(token)
        ltp = _u32(frame, b + 4) / divisor
        out[row, COL_TOKEN] = token
        out[row, COL_LTP] = ltp
        if length == LTP_LEN:
            out[row, COL_MODE] = PACKET_LTP
        elif length == INDEX_QUOTE_LEN or length == INDEX_FULL_LEN:  # noqa: SIM109
            # index packets order the prices high, low, open, close
            full = length == INDEX_FULL_LEN
            out[row, COL_MODE] = PACKET_INDEX_FULL if full else PACKET_INDEX_QUOTE
            out[row, COL_HIGH] = _u32(frame, b + 8) / divisor
            out[row, COL_LOW] = _u32(frame, b + 12) / divisor
            out[row, COL_OPEN] = _u32(frame, b + 16) / divisor
            close = _u32(frame, b + 20) / divisor
            out[row, COL_CLOSE] = close
            _ohlc_change(out, row, ltp, close)
            if full:
                out[row, COL_EXCHANGE_TS] = _u32(frame, b + 28)
        else:
            out[row, COL_MODE] = PACKET_QUOTE if length == QUOTE_LEN else PACKET_FULL
            out[row, COL_LTQ] = _u32(frame, b + 8)
            out[row, COL_AVG] = _u32(frame, b + 12) / divisor
            out[row, COL_VOLUME] = _u32(frame, b + 16)
            out[row, COL_TBQ] = _u32(frame, b + 20)
            out[row, COL_TSQ] = _u32(frame, b + 24)
            out[row, COL_OPEN] = _u32(frame, b + 28) / divisor
            out[row, COL_HIGH] = _u32(frame, b + 32) / divisor
            out[row, COL_LOW] = _u32(frame, b + 36) / divisor
            close = _u32(frame, b + 40) / divisor
            out[row, COL_CLOSE] = close
            _ohlc_change(out, row, ltp, close)
            if length == FULL_LEN:
                out[row, COL_LTT] = _u32(frame, b + 44)
                out[row, COL_OI] = _u32(frame, b + 48)
                out[row, COL_OI_HIGH] = _u32(frame, b + 52)
                out[row, COL_OI_LOW] = _u32(frame, b + 56)
                out[row, COL_EXCHANGE_TS] = _u32(frame, b + 60)
                for entry in range(DEPTH_ENTRIES):
                    at = b + _DEPTH_AT + _DEPTH_STEP * entry
                    col = COL_DEPTH + DEPTH_FIELDS * entry
                    out[row, col + DEPTH_QTY] = _u32(frame, at)
                    out[row, col + DEPTH_PRICE] = _u32(frame, at + 4) / divisor
                    out[row, col + DEPTH_ORDERS] = _u16(frame, at + 8)
    return count
