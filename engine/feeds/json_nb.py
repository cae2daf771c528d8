"""Numba fast path for the generic JSON tick protocol: frame bytes in, batch columns out.

It accepts the protocol as feeds send it: a tick object ``{"s": .., "p": .., "q": .., "t": ..}``
(keys in any order, ``q`` optional, blanks anywhere JSON allows) or an array of them, plain
symbol strings and plain numbers. Anything else, valid or not (escapes, other keys, nested
values, ``1e400``, invalid UTF-8, broken JSON), makes it answer ``FALLBACK`` and the frame goes
through orjson (``engine.feeds.frames``), which parses every valid document and names what is
wrong with the rest. Numbers convert exactly, with the CSV parser's Clinger fast path, to the
bits orjson gives (``-0`` is the integer 0, so +0.0; ``-0.0`` is -0.0).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.feeds.csv_nb import (
    _FNV_OFFSET,
    _FNV_PRIME,
    _OK,
    _lookup_symbol,
    _scan_decimal,
    _scan_int,
    _valid_utf8,
)

#: the whole frame was parsed
DONE = 0
#: the batch is full; call again from the returned position
MORE = 1
#: not the plain protocol: parse the frame with orjson instead
FALLBACK = 2

_QUOTE, _COLON, _COMMA, _BACKSLASH = 34, 58, 44, 92
_LBRACE, _RBRACE, _LBRACKET, _RBRACKET = 123, 125, 91, 93
_MINUS, _PLUS, _ZERO, _NINE, _DOT = 45, 43, 48, 57, 46
_S, _P, _Q, _T = 115, 112, 113, 116
_HAS_S, _HAS_P, _HAS_T = 1, 2, 4


@njit(cache=True, inline="always")
def _blanks(buf, i, end):
    while i < end:
        c = buf[i]
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        i += 1
    return i


@njit(cache=True, inline="always")
def _digits(buf, i, end):
    while i < end and _ZERO <= buf[i] <= _NINE:
        i += 1
    return i


@njit(cache=True)
def _json_number_end(buf, i, end):
    # JSON's number grammar, -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?: the end of the
    # number at i (or -1) and whether it is an integer; the scanners below also take 022, 22.
    # and +22, which JSON does not
    if i < end and buf[i] == _MINUS:
        i += 1
    if i >= end or not _ZERO <= buf[i] <= _NINE:
        return -1, False
    i = i + 1 if buf[i] == _ZERO else _digits(buf, i, end)
    integer = True
    if i < end and buf[i] == _DOT:
        integer = False
        fraction = i + 1
        i = _digits(buf, fraction, end)
        if i == fraction:
            return -1, False
    if i < end and (buf[i] | 32) == 101:  # 'e'
        integer = False
        i += 1
        if i < end and (buf[i] == _PLUS or buf[i] == _MINUS):
            i += 1
        exponent = i
        i = _digits(buf, exponent, end)
        if i == exponent:
            return -1, False
    return i, integer


@njit(cache=True)
def parse_json_ticks(buf, start, end, sym_bytes, sym_lens, sym_slots, idx, price, size, ts):
    """Parse ticks from ``buf[start:end]`` into the batch columns until done or full.

    Parameters
    ----------
    buf : numpy.ndarray
        uint8 buffer holding one text frame in ``buf[:end]``.
    start : int
        0 for a new frame; else the position ``MORE`` returned (inside the frame's array).
    end : int
        Length of the frame.
    sym_bytes, sym_lens, sym_slots : numpy.ndarray
        The symbol table of ``engine.feeds.csv_nb.build_symbol_table``.
    idx, price, size, ts : numpy.ndarray
        Batch columns, filled from row 0.

    Returns
    -------
    tuple of int
        Rows filled, the position to resume from, and ``DONE``, ``MORE`` or ``FALLBACK``.
    """
    cap = idx.shape[0]
    n = 0
    i = _blanks(buf, start, end)
    in_array = start > 0
    if start == 0 and i < end and buf[i] == _LBRACKET:
        in_array = True
        i = _blanks(buf, i + 1, end)
        if i < end and buf[i] == _RBRACKET:
            return 0, end, DONE if _blanks(buf, i + 1, end) == end else FALLBACK
    while True:
        if n == cap:
            return n, i, MORE
        if i >= end or buf[i] != _LBRACE:
            return n, i, FALLBACK
        i = _blanks(buf, i + 1, end)
        have = 0
        k = -1
        p = 0.0
        q = 0.0
        t = 0
        while True:
            # a one-letter key, its colon and its value
            if i + 2 >= end or buf[i] != _QUOTE or buf[i + 2] != _QUOTE:
                return n, i, FALLBACK
            key = buf[i + 1]
            i = _blanks(buf, i + 3, end)
            if i >= end or buf[i] != _COLON:
                return n, i, FALLBACK
            i = _blanks(buf, i + 1, end)
            if key == _S:
                if i >= end or buf[i] != _QUOTE:
                    return n, i, FALLBACK
                s = i + 1
                i = s
                h = _FNV_OFFSET
                wide = False
                while i < end and buf[i] != _QUOTE:
                    c = buf[i]
                    if c == _BACKSLASH or c < 32:
                        return n, i, FALLBACK
                    wide = wide or c >= 128
                    h = (h ^ np.uint64(c)) * _FNV_PRIME
                    i += 1
                # orjson refuses a document with invalid UTF-8 anywhere, even in an unknown symbol
                if i >= end or (wide and not _valid_utf8(buf, s, i)):
                    return n, i, FALLBACK
                k = _lookup_symbol(buf, s, i, h, sym_bytes, sym_lens, sym_slots)
                i += 1
                have |= _HAS_S
            elif key == _P or key == _Q:  # noqa: SIM109 - see csv_nb on tuple membership
                number_end, integer = _json_number_end(buf, i, end)
                if number_end < 0:
                    return n, i, FALLBACK
                value, status, i = _scan_decimal(buf, i, end)
                if status != _OK or i != number_end:
                    return n, i, FALLBACK
                if integer and value == 0.0:
                    value = 0.0  # orjson reads -0 as the integer 0, whose float is +0.0
                if key == _P:
                    p = value
                    have |= _HAS_P
                else:
                    q = value
            elif key == _T:
                number_end, integer = _json_number_end(buf, i, end)
                if number_end < 0 or not integer:
                    return n, i, FALLBACK
                t, ok, i = _scan_int(buf, i, end)
                if not ok or i != number_end:
                    return n, i, FALLBACK
                have |= _HAS_T
            else:
                return n, i, FALLBACK
            i = _blanks(buf, i, end)
            if i < end and buf[i] == _COMMA:
                i = _blanks(buf, i + 1, end)
                continue
            if i < end and buf[i] == _RBRACE:
                i += 1
                break
            return n, i, FALLBACK
        if have != _HAS_S | _HAS_P | _HAS_T:
            return n, i, FALLBACK
        idx[n] = k
        price[n] = p
        size[n] = q
        ts[n] = t
        n += 1
        i = _blanks(buf, i, end)
        if not in_array:
            return n, i, DONE if i == end else FALLBACK
        if i < end and buf[i] == _COMMA:
            i = _blanks(buf, i + 1, end)
            continue
        if i < end and buf[i] == _RBRACKET:
            return n, end, DONE if _blanks(buf, i + 1, end) == end else FALLBACK
        return n, i, FALLBACK
