"""Kite's binary ticker: the Numba decoders against pykiteconnect, and the feed against a fake."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st
from kiteconnect import KiteTicker as PyKiteTicker
from picows import WSMsgType

from engine.brokers.kite import ticker_nb as nb
from engine.brokers.kite.ticker import KiteTicker
from tests.conftest import free_port
from tests.fakes.kite_ticker import (
    KiteTickerServer,
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


# -- the feed against the fake ticker ---------------------------------------------------------

API_KEY = "kiteapp"
ACCESS_TOKEN = "tok-day-1"
RELIANCE = 738561  # NSE, segment 1
USDINR = 1234 << 8 | 3  # CDS: prices in 1e-7
UNKNOWN = 999 << 8 | 1
ROWS = {RELIANCE: 0, USDINR: 1}


def run_async(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        uvloop.run(asyncio.wait_for(test(*args, **kwargs), 30))

    return wrapper


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


class Recorder:
    """The feed's callbacks: copies of every delivered batch, states, orders and alerts."""

    def __init__(self) -> None:
        self.batches: list[dict] = []
        self.states: list[str] = []
        self.orders: list[dict] = []
        self.alerts: list[tuple[str, str]] = []

    def deliver(self, batch, n: int, recv_ns: int) -> None:
        self.batches.append(
            {
                "idx": batch.idx[:n].tolist(),
                "price": batch.price[:n].tolist(),
                "size": batch.size[:n].tolist(),
                "ts": batch.ts[:n].tolist(),
                "recv_ns": recv_ns,
            }
        )

    def feed(self, port: int, token=lambda: ACCESS_TOKEN, **options) -> KiteTicker:
        return KiteTicker(
            f"ws://127.0.0.1:{port}",
            API_KEY,
            token,
            ROWS,
            self.deliver,
            self.states.append,
            self.orders.append,
            lambda code, message: self.alerts.append((code, message)),
            **options,
        )


@contextlib.asynccontextmanager
async def live(server_token: str = ACCESS_TOKEN, **options) -> AsyncIterator[tuple]:
    """Run a fake ticker and a feed on it; yield the server, the feed and its Recorder."""
    server = KiteTickerServer(API_KEY, server_token)
    seen = Recorder()
    feed = seen.feed(await server.start(), **options)
    task = asyncio.create_task(feed.run())
    try:
        yield server, feed, seen
    finally:
        feed.stop()
        await asyncio.wait_for(task, 2)
        await server.stop()


SUBSCRIBE = [
    {"a": "subscribe", "v": sorted(ROWS)},
    {"a": "mode", "v": ["quote", sorted(ROWS)]},
]


@run_async
async def test_subscribes_delivers_ticks_and_resubscribes_after_a_disconnect() -> None:
    async with live() as (server, feed, seen):
        await until(lambda: len(server.messages) == 2)
        assert server.messages == SUBSCRIBE
        assert server.subscriptions == {RELIANCE: "quote", USDINR: "quote"}
        assert feed.state == "connected"

        wall_before = time.time_ns()
        server.send_ticks(
            [
                quote_packet(RELIANCE, last_price=250050, last_traded_quantity=12, close=249000),
                ltp_packet(USDINR, 832512500),
                full_packet(UNKNOWN, last_price=100, last_traded_quantity=3),
            ]
        )
        await until(lambda: seen.batches)
        batch = seen.batches[0]
        assert batch["idx"] == [0, 1, -1]
        assert batch["price"] == [2500.5, 83.25125, 1.0]
        assert batch["size"] == [12.0, 0.0, 3.0]
        assert len(set(batch["ts"])) == 1 and wall_before <= batch["ts"][0] <= time.time_ns()
        assert batch["recv_ns"] <= time.monotonic_ns()

        server.disconnect_all()
        await until(lambda: server.connections == 2 and len(server.messages) == 4)
        assert server.messages[2:] == SUBSCRIBE
        await until(lambda: server.subscriptions == {RELIANCE: "quote", USDINR: "quote"})
        assert seen.states == ["connected", "disconnected", "connected"]
        server.send_ticks([ltp_packet(RELIANCE, 250100)])
        await until(lambda: len(seen.batches) == 2)
        assert seen.batches[1]["idx"] == [0] and seen.batches[1]["price"] == [2501.0]
        assert seen.alerts == []


@run_async
async def test_a_frame_larger_than_the_batch_arrives_whole_in_order() -> None:
    async with live(mode="ltp") as (server, _, seen):
        await until(lambda: len(server.messages) == 2)
        assert server.subscriptions == {RELIANCE: "ltp", USDINR: "ltp"}
        count = 7000  # 70 KB: more ticks than a batch and more bytes than the first frame buffer
        server.send_ticks([ltp_packet(RELIANCE, 100000 + k) for k in range(count)])
        await until(lambda: sum(len(b["idx"]) for b in seen.batches) == count)
        assert len(seen.batches) == 2
        prices = seen.batches[0]["price"] + seen.batches[1]["price"]
        assert prices == [1000.0 + k / 100 for k in range(count)]


@run_async
async def test_text_messages_heartbeats_staleness_and_malformed_frames() -> None:
    async with live(stale_after_s=0.3) as (server, feed, seen):
        await until(lambda: feed.state == "connected" and server.clients)

        order = {
            "order_id": "250101000000001",
            "status": "COMPLETE",
            "tag": "ot1",
            "filled_quantity": 5,
        }
        server.send_text({"type": "message", "data": "hello"})  # ignored
        server.send_text(
            {"type": "order", "data": {}}
        )  # no update in it: ignored, like pykiteconnect
        server.send_text(["not", "an", "object"])
        server.send_text({"type": "error", "data": "Invalid instrument token"})
        server.send_text({"type": "order", "data": order})
        await until(lambda: seen.orders)
        assert seen.orders == [order]
        assert seen.alerts == [("broker_error", "Invalid instrument token")]

        server.send_binary(b"\x00\x01\x00\x08\x00")  # cut short
        server.send_binary(b"\x00\x01\x00\x0a" + b"\x00" * 10)  # no mode is 10 bytes
        for client in server.clients:
            client.send(WSMsgType.TEXT, b"{not json")
        server.send_ticks([ltp_packet(RELIANCE, 100)])
        await until(lambda: seen.batches)
        assert feed.rejected_frames() == {"truncated": 1, "packet_length": 1, "bad_text": 1}
        assert [b["price"] for b in seen.batches] == [[1.0]]

        # no frame for stale_after_s: stale; Kite's heartbeat alone brings it back
        await until(lambda: feed.state == "stale", timeout=3)
        server.send_heartbeat()
        await until(lambda: feed.state == "connected")
        assert feed.heartbeats == 1 and len(seen.batches) == 1
        assert seen.states[-2:] == ["stale", "connected"]


@run_async
async def test_a_refused_token_alerts_once_and_connects_once_it_is_valid() -> None:
    current = {"token": ACCESS_TOKEN}
    async with live("tok-day-2", token=lambda: current["token"]) as (server, feed, seen):
        await until(lambda: server.refused >= 3)
        assert seen.alerts == [("token_expired", "Invalid `api_key` or `access_token`.")]
        assert server.connections == 0 and feed.state == "connecting"

        server.access_token = ACCESS_TOKEN  # the server now accepts the feed's token
        await until(lambda: server.connections == 1 and feed.state == "connected")
        await until(lambda: server.messages == SUBSCRIBE)

        # the token is revoked; the feed alerts again, then picks up the renewed token by itself
        server.access_token = "tok-day-3"
        server.disconnect_all()
        await until(lambda: server.refused >= 5)
        assert [code for code, _ in seen.alerts] == ["token_expired", "token_expired"]
        current["token"] = "tok-day-3"
        await until(lambda: server.connections == 2 and feed.state == "connected")
        assert len(seen.alerts) == 2


@run_async
async def test_a_down_server_alerts_once_and_stop_ends_the_backoff() -> None:
    seen = Recorder()
    feed = seen.feed(free_port())
    task = asyncio.create_task(feed.run())
    await until(lambda: feed.reconnects >= 3)
    assert [code for code, _ in seen.alerts] == ["stream"]
    assert ACCESS_TOKEN not in seen.alerts[0][1]
    started = time.monotonic()
    feed.stop()
    await asyncio.wait_for(task, 2)
    assert time.monotonic() - started < 1.0


@run_async
async def test_failing_callbacks_alert_and_the_stream_goes_on() -> None:
    async with live() as (server, feed, seen):
        failures = {"deliver": 1, "order": 1}

        def deliver(batch, n: int, recv_ns: int) -> None:
            if failures["deliver"]:
                failures["deliver"] -= 1
                raise RuntimeError("engine refused the batch")
            seen.deliver(batch, n, recv_ns)

        def on_order(data: dict) -> None:
            if failures["order"]:
                failures["order"] -= 1
                raise KeyError("order_id")
            seen.orders.append(data)

        # swapped in before the feed's task first runs (no await since it was created)
        feed.deliver, feed.on_order = deliver, on_order
        await until(lambda: feed.state == "connected" and server.clients)
        for k in range(2):
            server.send_ticks([ltp_packet(RELIANCE, 100 + k)])
            server.send_text({"type": "order", "data": {"order_id": str(k)}})
        await until(lambda: seen.batches and seen.orders)
        assert [b["price"] for b in seen.batches] == [[1.01]]
        assert seen.orders == [{"order_id": "1"}]
        assert [code for code, _ in seen.alerts] == ["stream", "stream"]
        assert server.connections == 1 and feed.state == "connected"
