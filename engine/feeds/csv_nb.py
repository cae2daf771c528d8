"""Numba CSV tick parser: raw bytes in, :class:`~engine.feeds.ticks.TickBatch` columns out.

The parser works on one byte buffer that the reader refills block by block, so it must be able
to stop anywhere: at the end of the data (an incomplete last line is left for the next block)
and when the batch is full (the next call resumes at the returned position).

It is a single pass: each used field is converted while it is scanned, and the byte that stops
the conversion must be a delimiter (after optional blanks or a closing quote), otherwise the
field is not a number. Scanning the line first and converting afterwards reads every byte twice
and was measurably slower. For the same reason the hot loops spell out ``x == a or x == b``:
numba compiles ``x in (a, b)`` to a slower loop over the tuple (noqa SIM109).

Numbers are parsed exactly. Integers (``ts``) are exact int64. Decimals take the Clinger fast
path: when the significant digits fit in 2**53 and the decimal exponent is within +-22, one
IEEE multiplication or division of two exactly representable doubles gives the correctly
rounded result. Anything else that is a syntactically valid decimal (more than 15-16 significant
digits, large exponents) is reported back as a "slow" field and converted by Python's
``float()``, which is correctly rounded; such fields are rare in tick data, so this keeps the
kernel small without giving up exactness.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.feeds.ticks import REJECT_MALFORMED_ROW, REJECT_NOT_A_NUMBER

#: Field status: parsed in the kernel.
_OK = 0
#: Field status: a valid decimal the kernel cannot round exactly; Python's float() converts it.
_SLOW = 1
#: Field status: not a number.
_BAD = 2

#: Exact powers of ten 1e0..1e22, the range in which every power of ten is a double exactly.
_POW10 = np.array([float(10**k) for k in range(23)], dtype=np.float64)
#: Largest integer mantissa that converts to a double without rounding.
_MAX_EXACT_MANTISSA = 2**53
#: Mantissas stop growing at this value, so ``mant * 10 + 9`` always fits in an int64.
_MANTISSA_LIMIT = 10**17
#: Exponent digits beyond this value cannot change the result (it is 0 or inf); stop growing.
_EXPONENT_CAP = 100_000
#: Smallest int64 split as ``10 * DIV10 - LAST``, for overflow checks while parsing integers.
_INT64_MIN = -(2**63)
_INT64_MIN_DIV10 = -(2**63 // 10)
_INT64_MIN_LAST = 2**63 % 10

#: Lowercase spellings of the special values accepted as numbers, as uint8 arrays for numba.
_NAN = np.frombuffer(b"nan", dtype=np.uint8).copy()
_INF = np.frombuffer(b"inf", dtype=np.uint8).copy()
_INFINITY = np.frombuffer(b"infinity", dtype=np.uint8).copy()

#: FNV-1a 64-bit offset basis and prime, for hashing symbol bytes into the lookup table.
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)

#: Column slots of the ``cols`` array passed to :func:`parse_csv`.
COL_COUNT, COL_TS, COL_PRICE, COL_SYMBOL, COL_SIZE, COL_DEFAULT_IDX = range(6)
#: Field codes written to the ``slow`` table: which output column a slow decimal belongs to.
SLOW_PRICE, SLOW_SIZE = 0, 1

# Byte values used by the scanner.
_LF, _CR, _COMMA, _QUOTE, _SPACE, _TAB = 10, 13, 44, 34, 32, 9
_PLUS, _MINUS, _DOT, _ZERO = 43, 45, 46, 48


@njit(cache=True)
def _skip_blanks(buf, i, end):
    while i < end and (buf[i] == _SPACE or buf[i] == _TAB or buf[i] == _CR):
        i += 1
    return i


@njit(cache=True)
def _trim(buf, s, e):
    while s < e and (buf[s] == _SPACE or buf[s] == _TAB or buf[s] == _CR):
        s += 1
    while e > s and (buf[e - 1] == _SPACE or buf[e - 1] == _TAB or buf[e - 1] == _CR):
        e -= 1
    # A quoted field keeps its content; the quotes themselves are not part of the value.
    if e - s >= 2 and buf[s] == _QUOTE and buf[e - 1] == _QUOTE:
        s += 1
        e -= 1
    return s, e


@njit(cache=True)
def _skip_field(buf, i, end, inq):
    # A newline ends the line even inside quotes: multi-line fields are not tick data.
    while i < end:
        c = buf[i]
        if c == _LF or (c == _COMMA and not inq):
            break
        if c == _QUOTE:
            inq = not inq
        i += 1
    return i, inq


@njit(cache=True)
def _matches_lower(buf, s, e, word):
    if e - s != word.shape[0]:
        return False
    diff = 0
    for k in range(word.shape[0]):
        # ASCII letters only: OR-ing 0x20 lowercases them and leaves the words' letters intact.
        diff |= (buf[s + k] | 32) ^ word[k]
    return diff == 0


@njit(cache=True)
def _scan_int(buf, i, end):
    neg = False
    if i < end and (buf[i] == _MINUS or buf[i] == _PLUS):
        neg = buf[i] == _MINUS
        i += 1
    # accumulated as a negative number, so that -2**63, one beyond -(2**63 - 1), fits
    v = 0
    nd = 0
    ok = True
    while i < end:
        d = np.int64(buf[i]) - _ZERO
        if d < 0 or d > 9:
            break
        # Compare against constants: a division per digit would dominate the whole parse.
        if v <= _INT64_MIN_DIV10 and (v < _INT64_MIN_DIV10 or d > _INT64_MIN_LAST):
            ok = False
        else:
            v = v * 10 - d
        nd += 1
        i += 1
    if not neg and v == _INT64_MIN:
        ok = False
    return (v if neg else -v), ok and nd > 0, i


@njit(cache=True)
def _scan_decimal(buf, i, end):
    neg = False
    if i < end and (buf[i] == _MINUS or buf[i] == _PLUS):
        neg = buf[i] == _MINUS
        i += 1
    if i < end and ((buf[i] | 32) == 110 or (buf[i] | 32) == 105):  # 'n' or 'i'
        s = i
        while i < end and 97 <= (buf[i] | 32) <= 122:
            i += 1
        if _matches_lower(buf, s, i, _NAN):
            return (-np.nan if neg else np.nan), _OK, i
        if _matches_lower(buf, s, i, _INF) or _matches_lower(buf, s, i, _INFINITY):
            return (-np.inf if neg else np.inf), _OK, i
        return 0.0, _BAD, i
    mant = 0
    exp10 = 0
    nd = 0
    slow = False
    while i < end:
        d = np.int64(buf[i]) - _ZERO
        if d < 0 or d > 9:
            break
        if mant < _MANTISSA_LIMIT:
            mant = mant * 10 + d
        else:
            slow = True
        nd += 1
        i += 1
    if i < end and buf[i] == _DOT:
        i += 1
        while i < end:
            d = np.int64(buf[i]) - _ZERO
            if d < 0 or d > 9:
                break
            if mant < _MANTISSA_LIMIT:
                mant = mant * 10 + d
                exp10 -= 1
            else:
                slow = True
            nd += 1
            i += 1
    if nd == 0:
        return 0.0, _BAD, i
    if i < end and (buf[i] | 32) == 101:  # 'e'
        i += 1
        eneg = False
        if i < end and (buf[i] == _MINUS or buf[i] == _PLUS):
            eneg = buf[i] == _MINUS
            i += 1
        ev = 0
        ed = 0
        while i < end:
            d = np.int64(buf[i]) - _ZERO
            if d < 0 or d > 9:
                break
            if ev < _EXPONENT_CAP:
                ev = ev * 10 + d
            ed += 1
            i += 1
        if ed == 0:
            return 0.0, _BAD, i
        exp10 += -ev if eneg else ev
    if slow:
        return 0.0, _SLOW, i
    if mant == 0:
        return (-0.0 if neg else 0.0), _OK, i
    if mant > _MAX_EXACT_MANTISSA or exp10 < -22 or exp10 > 22:
        return 0.0, _SLOW, i
    v = np.float64(mant)
    if exp10 < 0:
        v = v / _POW10[-exp10]
    elif exp10 > 0:
        v = v * _POW10[exp10]
    return (-v if neg else v), _OK, i


@njit(cache=True)
def fnv1a(buf, s, e):
    """Hash ``buf[s:e]`` (any integer element type) with 64-bit FNV-1a.

    Parameters
    ----------
    buf : numpy.ndarray
        1-D integer array, e.g. uint8 bytes or uint32 UCS-4 code points.
    s, e : int
        Element range to hash.

    Returns
    -------
    numpy.uint64
        The hash; symbol tables use its low bits as the slot.
    """
    h = _FNV_OFFSET
    for i in range(s, e):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return h


@njit(cache=True)
def _scan_symbol(buf, i, end):
    # Hash while scanning so a plain symbol is read once; quotes or blanks take the slow path.
    s = i
    h = _FNV_OFFSET
    plain = True
    while i < end:
        c = buf[i]
        if c == _COMMA or c == _LF:  # noqa: SIM109 - see module note on tuple membership
            break
        if c == _QUOTE:
            plain = False
        h = (h ^ np.uint64(c)) * _FNV_PRIME
        i += 1
    if i > s:
        first = buf[s]
        last = buf[i - 1]
        if first in (_SPACE, _TAB) or last in (_SPACE, _TAB, _CR):
            plain = False
    return h, i, plain


@njit(cache=True)
def _lookup_symbol(buf, s, e, h, sym_bytes, sym_lens, sym_slots):
    n = e - s
    mask = sym_slots.shape[0] - 1
    j = np.int64(h & np.uint64(mask))
    while True:
        k = sym_slots[j]
        if k < 0:
            return -1
        if sym_lens[k] == n:
            same = True
            for c in range(n):
                if sym_bytes[k, c] != buf[s + c]:
                    same = False
                    break
            if same:
                return k
        j = (j + 1) & mask


@njit(cache=True)
def _valid_utf8(buf, s, e):
    # the strict rules protobuf and orjson apply: no overlong forms, no surrogates, nothing past
    # U+10FFFF (the JSON fast path must refuse exactly the strings orjson refuses)
    i = s
    while i < e:
        c = buf[i]
        if c < 0x80:
            i += 1
            continue
        if c < 0xC2 or c > 0xF4:
            return False
        need = 1 if c < 0xE0 else (2 if c < 0xF0 else 3)
        if i + need >= e:
            return False
        first = buf[i + 1]
        if first & 0xC0 != 0x80:
            return False
        if c == 0xE0 and first < 0xA0:
            return False
        if c == 0xED and first > 0x9F:
            return False
        if c == 0xF0 and first < 0x90:
            return False
        if c == 0xF4 and first > 0x8F:
            return False
        for k in range(2, need + 1):
            if buf[i + k] & 0xC0 != 0x80:
                return False
        i += need + 1
    return True


def build_symbol_table(symbols: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build the uint8 symbol table and open-addressing hash slots the parser matches against.

    Parameters
    ----------
    symbols : list[str]
        Configured instrument symbols; the position in the list is the instrument index.

    Returns
    -------
    sym_bytes : numpy.ndarray
        uint8 array ``(len(symbols), max_len)``, each symbol's UTF-8 bytes zero-padded.
    sym_lens : numpy.ndarray
        int64 byte length of each symbol.
    sym_slots : numpy.ndarray
        int64 hash table (power-of-two size, at least half empty) of symbol indices, -1 empty.

    Raises
    ------
    ValueError
        If a symbol is empty or appears twice.
    """
    encoded = [s.encode("utf-8") for s in symbols]
    if any(len(b) == 0 for b in encoded):
        raise ValueError("symbol names must be non-empty")
    if len(set(encoded)) != len(encoded):
        dupes = sorted({s for s in symbols if symbols.count(s) > 1})
        raise ValueError(f"duplicate symbols: {dupes}")
    width = max((len(b) for b in encoded), default=1)
    sym_bytes = np.zeros((len(encoded), width), np.uint8)
    sym_lens = np.zeros(len(encoded), np.int64)
    for k, b in enumerate(encoded):
        sym_bytes[k, : len(b)] = np.frombuffer(b, np.uint8)
        sym_lens[k] = len(b)
    size = 2
    while size < 2 * len(encoded):
        size *= 2
    sym_slots = np.full(size, -1, np.int64)
    for k, b in enumerate(encoded):
        j = int(fnv1a(np.frombuffer(b, np.uint8), 0, len(b))) & (size - 1)
        while sym_slots[j] >= 0:
            j = (j + 1) & (size - 1)
        sym_slots[j] = k
    return sym_bytes, sym_lens, sym_slots


@njit(cache=True)
def parse_csv(
    buf,
    pos,
    end,
    final,
    cols,
    sym_bytes,
    sym_lens,
    sym_slots,
    out_idx,
    out_price,
    out_size,
    out_ts,
    n,
    slow,
    rejects,
):
    """Parse CSV tick rows from ``buf[pos:end]`` into the output columns starting at row ``n``.

    Parameters
    ----------
    buf : numpy.ndarray
        uint8 bytes of the file (header already consumed).
    pos, end : int
        Byte range to parse; ``pos`` must be at the start of a line.
    final : bool
        True when ``end`` is the end of the file, so a last line without a newline is complete.
    cols : numpy.ndarray
        int64 ``[field count, ts, price, symbol, size, default idx]`` (column positions, -1 for
        an absent symbol or size column; default idx is used without a symbol column).
    sym_bytes, sym_lens, sym_slots : numpy.ndarray
        Symbol table from :func:`build_symbol_table`.
    out_idx, out_price, out_size, out_ts : numpy.ndarray
        Batch columns; parsing stops when they are full.
    n : int
        First row to fill.
    slow : numpy.ndarray
        int64 ``(2 * capacity, 4)`` table receiving ``(row, SLOW_PRICE|SLOW_SIZE, start, end)``
        for decimals the caller must convert with ``float(buf[start:end])``; their rows hold
        NaN until then.
    rejects : numpy.ndarray
        int64 counters indexed by ``REJECT_*`` codes, incremented for dropped rows.

    Returns
    -------
    pos : int
        Start of the first unconsumed line (``end`` when everything was consumed).
    n : int
        Rows filled so far.
    nslow : int
        Entries written to ``slow``.
    """
    cap = out_idx.shape[0]
    ncols = cols[COL_COUNT]
    ts_col = cols[COL_TS]
    price_col = cols[COL_PRICE]
    sym_col = cols[COL_SYMBOL]
    size_col = cols[COL_SIZE]
    default_idx = cols[COL_DEFAULT_IDX]
    nslow = 0
    while n < cap and pos < end:
        i = _skip_blanks(buf, pos, end)
        if i >= end:
            if final:
                pos = end
            break
        if buf[i] == _LF:
            pos = i + 1
            continue

        i = pos
        k = 0
        complete = True
        unterminated = False
        empty = False
        bad = False
        ts = 0
        price = 0.0
        size = 0.0
        idx = default_idx
        p_status = _OK
        p_s = 0
        p_e = 0
        z_status = _OK
        z_s = 0
        z_e = 0
        while True:
            if k == ts_col or k == price_col or k == size_col:  # noqa: SIM109
                i = _skip_blanks(buf, i, end)
                quoted = i < end and buf[i] == _QUOTE
                if quoted:
                    i += 1
                vs = i
                if k == ts_col:
                    ts, ok, i = _scan_int(buf, i, end)
                    status = _OK if ok else _BAD
                else:
                    value, status, i = _scan_decimal(buf, i, end)
                    if k == price_col:
                        price = value
                        p_status = status
                        p_s = vs
                        p_e = i
                    else:
                        size = value
                        z_status = status
                        z_s = vs
                        z_e = i
                ve = i
                if quoted and i < end and buf[i] == _QUOTE:
                    quoted = False
                    i += 1
                i = _skip_blanks(buf, i, end)
                if quoted or (i < end and buf[i] != _COMMA and buf[i] != _LF):
                    # Junk after the number (12x), or an unclosed quote: not a number.
                    bad = True
                    i, inq = _skip_field(buf, i, end, quoted)
                    unterminated = unterminated or inq
                elif ve == vs:
                    empty = True
                elif status == _BAD:
                    bad = True
            elif k == sym_col:
                s = i
                h, i, plain = _scan_symbol(buf, i, end)
                if not plain:
                    i, inq = _skip_field(buf, s, end, False)
                    unterminated = unterminated or inq
                    s, e = _trim(buf, s, i)
                    h = fnv1a(buf, s, e)
                else:
                    e = i
                if s == e:
                    empty = True
                else:
                    idx = _lookup_symbol(buf, s, e, h, sym_bytes, sym_lens, sym_slots)
            else:
                i, inq = _skip_field(buf, i, end, False)
                unterminated = unterminated or inq
            k += 1
            if i >= end:
                complete = final
                break
            i += 1
            if buf[i - 1] == _LF:
                break
        if not complete:
            # The rest of this line is in the next block; resume from its start.
            break
        pos = i
        if k != ncols or unterminated or empty:
            rejects[REJECT_MALFORMED_ROW] += 1
            continue
        if bad:
            rejects[REJECT_NOT_A_NUMBER] += 1
            continue
        out_idx[n] = idx
        out_ts[n] = ts
        if p_status == _SLOW:
            price = np.nan
            slow[nslow, 0] = n
            slow[nslow, 1] = SLOW_PRICE
            slow[nslow, 2] = p_s
            slow[nslow, 3] = p_e
            nslow += 1
        if z_status == _SLOW:
            size = np.nan
            slow[nslow, 0] = n
            slow[nslow, 1] = SLOW_SIZE
            slow[nslow, 2] = z_s
            slow[nslow, 3] = z_e
            nslow += 1
        out_price[n] = price
        out_size[n] = size
        n += 1
    return pos, n, nslow
