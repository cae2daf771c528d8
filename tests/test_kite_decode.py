"""Kite's binary ticker frames: the Numba decoders against pykiteconnect, malformed input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kiteconnect import KiteTicker as PyKiteTicker

from engine.brokers.kite import ticker_nb as nb
from tests.fakes.kite_ticker import (
    frame,
    full_packet,
    index_full_packet,
    index_quote_packet,
    ltp_packet,
    quote_packet,
)

ROOT = Path(__file__).resolve().parents[1]
U32 = st.integers(0, 2**32 - 1)
#: every segment pykiteconnect names (CDS 3, BCD 6, NCO 12 have their own divisors) and others
SEGMENTS = st.one_of(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 12]), st.integers(0, 255))
TOKENS = st.builds(lambda high, segment: high << 8 | segment, st.integers(0, 2**24 - 1), SEGMENTS)
#: a pykiteconnect parser without its network setup: _parse_binary only reads class attributes
PYKITE = object.__new__(PyKiteTicker)


def pykite_parse(payload: bytes) -> list[dict]:
    return PyKiteTicker._parse_binary(PYKITE, payload)


def as_array(payload: bytes) -> np.ndarray:
    return np.frombuffer(payload, np.uint8).copy()


# -- packets of every mode --------------------------------------------------------------------

QUOTE_NAMES = ("last_price", "last_traded_quantity", "average_traded_price", "volume_traded")
QUOTE_NAMES += ("total_buy_quantity", "total_sell_quantity", "open", "high", "low", "close")
FULL_NAMES = ("last_trade_time", "oi", "oi_day_high", "oi_day_low", "exchange_timestamp")


def fields(names: tuple[str, ...]) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({name: U32 for name in names})


ltp = st.builds(ltp_packet, TOKENS, U32)
quote = st.builds(lambda token, f: quote_packet(token, **f), TOKENS, fields(QUOTE_NAMES))
full = st.builds(
    lambda token, f, depth: full_packet(token, depth=depth, **f),
    TOKENS,
    fields(QUOTE_NAMES + FULL_NAMES),
    st.lists(st.tuples(U32, U32, st.integers(0, 2**16 - 1)), min_size=10, max_size=10),
)
INDEX_NAMES = ("last_price", "high", "low", "open", "close")
index_fields = st.fixed_dictionaries(
    {**{name: U32 for name in INDEX_NAMES}, "change": st.integers(-(2**31), 2**31 - 1)}
)
index_quote = st.builds(lambda token, f: index_quote_packet(token, **f), TOKENS, index_fields)
index_full = st.builds(
    lambda token, ts, f: index_full_packet(token, ts, **f), TOKENS, U32, index_fields
)
PACKETS = st.lists(st.one_of(ltp, quote, full, index_quote, index_full), min_size=1, max_size=12)


#: pykiteconnect tick keys -> decode_full column
TICK_COLUMNS = {
    "instrument_token": nb.COL_TOKEN,
    "last_price": nb.COL_LTP,
    "last_traded_quantity": nb.COL_LTQ,
    "average_traded_price": nb.COL_AVG,
    "volume_traded": nb.COL_VOLUME,
    "total_buy_quantity": nb.COL_TBQ,
    "total_sell_quantity": nb.COL_TSQ,
    "change": nb.COL_CHANGE,
    "last_trade_time": nb.COL_LTT,
    "oi": nb.COL_OI,
    "oi_day_high": nb.COL_OI_HIGH,
    "oi_day_low": nb.COL_OI_LOW,
    "exchange_timestamp": nb.COL_EXCHANGE_TS,
}
OHLC_COLUMNS = {"open": nb.COL_OPEN, "high": nb.COL_HIGH, "low": nb.COL_LOW, "close": nb.COL_CLOSE}
DEPTH_KEYS = {"quantity": nb.DEPTH_QTY, "price": nb.DEPTH_PRICE, "orders": nb.DEPTH_ORDERS}
#: (pykiteconnect mode, a quote-like packet with volumes) -> decode_full mode code
MODE_CODES = {
    ("ltp", False): nb.PACKET_LTP,
    ("quote", True): nb.PACKET_QUOTE,
    ("full", True): nb.PACKET_FULL,
    ("quote", False): nb.PACKET_INDEX_QUOTE,
    ("full", False): nb.PACKET_INDEX_FULL,
}


def expected_columns(tick: dict) -> dict[int, object]:
    """Return the decode_full columns of a pykiteconnect tick (datetimes left as they are)."""
    columns: dict[int, object] = {
        col: tick[key] for key, col in TICK_COLUMNS.items() if key in tick
    }
    columns.update({col: tick["ohlc"][key] for key, col in OHLC_COLUMNS.items() if "ohlc" in tick})
    columns[nb.COL_MODE] = MODE_CODES[tick["mode"], "volume_traded" in tick]
    if "depth" in tick:
        entries = tick["depth"]["buy"] + tick["depth"]["sell"]
        assert len(entries) == nb.DEPTH_ENTRIES
        for k, entry in enumerate(entries):
            for key, field in DEPTH_KEYS.items():
                columns[nb.depth_column(k, field)] = entry[key]
    return columns


def assert_rows_match(out: np.ndarray, ticks: list[dict]) -> None:
    for row, tick in zip(out, ticks, strict=True):
        expected = expected_columns(tick)
        for col in range(nb.N_COLUMNS):
            if col not in expected:
                assert np.isnan(row[col]), (tick, col)
            elif isinstance(expected[col], datetime):
                assert datetime.fromtimestamp(int(row[col])) == expected[col], (tick, col)
            else:
                # same IEEE operations as pykiteconnect's, so equal to the bit
                assert row[col] == expected[col], (tick, col, row[col])


@settings(max_examples=200, deadline=None)
@given(packets=PACKETS, mapped=st.lists(st.booleans(), min_size=12, max_size=12))
def test_every_mode_decodes_like_pykiteconnect(packets: list[bytes], mapped: list[bool]) -> None:
    payload = frame(packets)
    ticks = pykite_parse(payload)
    assert len(ticks) == len(packets)
    buf = as_array(payload)
    out = np.zeros((len(packets), nb.N_COLUMNS))
    assert nb.decode_full(buf, len(payload), out) == len(packets)
    assert_rows_match(out, ticks)

    rows = {t["instrument_token"]: 100 + k for k, t in enumerate(ticks) if mapped[k]}
    keys, table_rows = nb.token_table(rows)
    idx, price = np.zeros(16, np.int64), np.zeros(16)
    size, ts = np.zeros(16), np.zeros(16, np.int64)
    wall = 1_763_700_000_123_456_789
    n = nb.decode_ticks(buf, len(payload), keys, table_rows, idx, price, size, ts, wall, 0)
    assert n == len(ticks)
    assert idx[:n].tolist() == [rows.get(t["instrument_token"], -1) for t in ticks]
    assert price[:n].tolist() == [t["last_price"] for t in ticks]
    assert size[:n].tolist() == [t.get("last_traded_quantity", 0) for t in ticks]
    assert ts[:n].tolist() == [wall] * n


def test_segment_divisors_follow_pykiteconnect() -> None:
    # NSE 100, CDS 1e7, BCD and NCO 1e4, indices 100
    tokens = [408065, 1234 << 8 | 3, 77 << 8 | 6, 55 << 8 | 12, 256265]
    payload = frame([ltp_packet(token, 831234567) for token in tokens])
    out = np.zeros((5, nb.N_COLUMNS))
    assert nb.decode_full(as_array(payload), len(payload), out) == 5
    expected = [8312345.67, 83.1234567, 83123.4567, 83123.4567, 8312345.67]
    assert out[:, nb.COL_LTP].tolist() == expected
    assert out[:, nb.COL_LTP].tolist() == [t["last_price"] for t in pykite_parse(payload)]


def test_a_frame_larger_than_the_columns_resumes_by_packet() -> None:
    payload = frame([ltp_packet(408065, 10000 + k) for k in range(10)])
    keys, rows = nb.token_table({408065: 3})
    idx, price, size, ts = np.zeros(4, np.int64), np.zeros(4), np.zeros(4), np.zeros(4, np.int64)
    seen, start = [], 0
    while True:
        n = nb.decode_ticks(
            as_array(payload), len(payload), keys, rows, idx, price, size, ts, 1, start
        )
        seen += price[:n].tolist()
        assert idx[:n].tolist() == [3] * n
        if n < 4:
            break
        start += n
    assert seen == [100.0 + k / 100 for k in range(10)]


# -- malformed frames -------------------------------------------------------------------------


def decode_both(payload: bytes, exact: bool = True) -> tuple[int, int]:
    buf = as_array(payload) if exact else as_array(payload + b"\xff" * 256)
    out = np.zeros((max(1, len(payload) // 8), nb.N_COLUMNS))
    keys, rows = nb.token_table({})
    cols = np.zeros(64, np.int64), np.zeros(64), np.zeros(64), np.zeros(64, np.int64)
    ticks = nb.decode_ticks(buf, len(payload), keys, rows, *cols, 0, 0)
    return nb.decode_full(buf, len(payload), out), ticks


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", 0),  # nothing
        (b"\x00", 0),  # Kite's heartbeat
        (b"\x00\x00", 0),  # no packets
        (b"\x00\x01", nb.ERR_TRUNCATED),  # a count with no packet
        (b"\x00\x01\x00", nb.ERR_TRUNCATED),  # half a length
        (b"\x00\x01\x00\x08" + b"\x00" * 7, nb.ERR_TRUNCATED),  # a body one byte short
        (b"\x00\x01\x00\x0a" + b"\x00" * 10, nb.ERR_PACKET_LENGTH),  # no mode is 10 bytes
        (b"\x00\x01\x00\x00", nb.ERR_PACKET_LENGTH),  # an empty packet
        (frame([ltp_packet(1, 2)]) + b"\x00\x09", 1),  # bytes after the last packet are ignored
        (frame([ltp_packet(1, 2), b"\x00" * 43]), nb.ERR_PACKET_LENGTH),
    ],
)
def test_malformed_frames_are_refused_with_a_code(payload: bytes, code: int) -> None:
    assert decode_both(payload) == (code, code)
    # the same frame inside a larger buffer: nothing past n_bytes is read
    assert decode_both(payload, exact=False) == (code, code)


def test_every_cut_of_a_valid_frame_is_refused_as_truncated() -> None:
    payload = frame([full_packet(408065, last_price=1), ltp_packet(5, 6), index_full_packet(265)])
    for cut in range(2, len(payload)):
        assert decode_both(payload[:cut], exact=False) == (nb.ERR_TRUNCATED, nb.ERR_TRUNCATED)


def test_n_bytes_beyond_the_buffer_and_too_small_outputs_are_refused() -> None:
    payload = frame([ltp_packet(1, 2), ltp_packet(3, 4)])
    out = np.zeros((1, nb.N_COLUMNS))
    assert nb.decode_full(as_array(payload), len(payload) + 1, out) == nb.ERR_TRUNCATED
    assert nb.decode_full(as_array(payload), len(payload), out) == nb.ERR_OUT_OF_ROOM
    narrow = np.zeros((2, nb.N_COLUMNS - 1))
    assert nb.decode_full(as_array(payload), len(payload), narrow) == nb.ERR_OUT_OF_ROOM


def corrupt(packets: list[bytes], at: int, byte: int) -> bytes:
    payload = frame(packets)
    return payload[:at] + bytes([byte]) + payload[at + 1 :]


@settings(max_examples=200, deadline=None)
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        st.builds(corrupt, PACKETS, st.integers(0, 80), st.integers(0, 255)),
    )
)
def test_any_bytes_decode_or_are_refused_and_agree_with_pykiteconnect(payload: bytes) -> None:
    full_count, tick_count = decode_both(payload)
    assert full_count == tick_count
    if full_count > 0:
        # an accepted frame is one pykiteconnect reads whole, to the same values
        out = np.zeros((full_count, nb.N_COLUMNS))
        nb.decode_full(as_array(payload), len(payload), out)
        assert_rows_match(out, pykite_parse(payload))
    else:
        assert full_count in (0, nb.ERR_TRUNCATED, nb.ERR_PACKET_LENGTH)


def test_malformed_frames_never_index_out_of_bounds() -> None:
    # compiled code does not check bounds; the same functions run as plain Python (numpy
    # raises IndexError on any read past the array) over cut and corrupted frames
    script = textwrap.dedent(
        """
        import random
        import numpy as np
        from engine.brokers.kite import ticker_nb as nb
        from tests.fakes.kite_ticker import frame, full_packet, index_quote_packet, ltp_packet
        rng = random.Random(5)
        good = frame([full_packet(1, last_price=2), ltp_packet(3, 4), index_quote_packet(9)])
        cases = [good[:cut] for cut in range(len(good))]
        for _ in range(3000):
            raw = bytearray(good[: rng.randint(0, len(good))])
            for _ in range(rng.randint(1, 4)):
                if raw:
                    raw[rng.randrange(len(raw))] = rng.randrange(256)
            cases.append(bytes(raw))
        cases += [bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))) for _ in range(2000)]
        keys, rows = nb.token_table({1: 0})
        cols = np.zeros(8, np.int64), np.zeros(8), np.zeros(8), np.zeros(8, np.int64)
        for payload in cases:
            buf = np.frombuffer(payload, np.uint8).copy()
            out = np.zeros((40, nb.N_COLUMNS))
            nb.decode_full(buf, len(payload), out)
            nb.decode_ticks(buf, len(payload), keys, rows, *cols, 0, 0)
        print(len(cases))
        """
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 5000
