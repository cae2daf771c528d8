"""Fuzz the broker feeds' frame handlers: Kite's binary ticker and Upstox's protobuf feed.

The decoders themselves are checked field by field against the brokers' SDKs in
``tests/test_kite_decode.py`` and ``tests/test_upstox_proto.py``; here whole frames, valid and
damaged, go through the feed objects' picows callbacks. Invariants, for any frame bytes:

* the callback never raises;
* a frame delivers its ticks or is counted once by reason (a heartbeat is neither);
* what a frame decodes to does not depend on the bytes after it in the reused buffer.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from picows import WSMsgType
from upstox_client.feeder.proto import MarketDataFeedV3_pb2 as pb

from engine.brokers.kite import ticker_nb
from engine.brokers.kite.ticker import KiteTicker
from engine.brokers.upstox.feed import UpstoxFeed
from engine.brokers.upstox.proto_nb import DECODE_OK, decode_feed_response
from engine.feeds.csv_nb import build_symbol_table
from engine.feeds.ticks import TickBatch
from tests.fakes.kite_ticker import frame, full_packet, ltp_packet, quote_packet
from tests.fuzz.harness import fuzz_settings, saved_ids, saved_inputs, saves_failures

KITE_TOKENS = {256265: 0, 738561: 1, 3: 2}
UPSTOX_KEYS = {"NIFTY": "NSE_INDEX|Nifty 50", "INFY": "NSE_EQ|INE009A01021"}


class Frame:
    """The part of picows' WSFrame the feeds read."""

    def __init__(self, payload: bytes, kind: WSMsgType = WSMsgType.BINARY) -> None:
        self.payload, self.msg_type, self.fin = payload, kind, True
        self.payload_size = len(payload)

    def get_payload_as_memoryview(self) -> memoryview:
        return memoryview(self.payload)

    def get_payload_as_bytes(self) -> bytes:
        return self.payload


class Sink:
    def __init__(self) -> None:
        self.rows, self.calls, self.alerts, self.orders = 0, 0, [], []

    def deliver(self, batch: TickBatch, n: int, recv_ns: int) -> None:
        assert 0 < n <= batch.capacity
        self.rows, self.calls = self.rows + n, self.calls + 1

    def alert(self, code: str, message: str) -> None:
        self.alerts.append(code)


def kite_feed() -> tuple[KiteTicker, Sink]:
    sink = Sink()
    feed = KiteTicker(
        "ws://127.0.0.1:9/",
        "key",
        lambda: "token",
        KITE_TOKENS,
        sink.deliver,
        lambda state: None,
        sink.orders.append,
        sink.alert,
    )
    return feed, sink


def upstox_feed() -> tuple[UpstoxFeed, Sink]:
    sink = Sink()

    async def authorize() -> str:
        return "ws://127.0.0.1:9/"

    index = {symbol: row for row, symbol in enumerate(UPSTOX_KEYS)}
    feed = UpstoxFeed(authorize, UPSTOX_KEYS, index, sink.deliver, lambda s: None, sink.alert)
    return feed, sink


def padded(data: bytes, fill: int) -> np.ndarray:
    buf = np.full(len(data) + 64, fill, np.uint8)
    buf[: len(data)] = np.frombuffer(data, np.uint8)
    return buf


@saves_failures("kite")
def check_kite(data: bytes) -> None:
    """Assert the invariants for one Kite binary frame (and the same bytes as a text frame)."""
    feed, sink = kite_feed()
    feed._frame(None, Frame(data))
    counted = sum(feed.rejected.values())
    packets = ticker_nb.frame_packets(padded(data, 0), len(data))
    if len(data) < 2:
        assert (feed.heartbeats, sink.rows, counted) == (1, 0, 0)
    elif packets < 0:
        assert (sink.rows, counted) == (0, 1)
    else:
        assert (sink.rows, counted) == (packets, 0), "every packet is one tick"
    assert not sink.alerts
    decoded = []
    for fill in (0, 0xFF):
        batch = TickBatch(max(packets, 1))
        cols = (batch.idx, batch.price, batch.size, batch.ts)
        n = ticker_nb.decode_ticks(
            padded(data, fill), len(data), feed.token_keys, feed.token_rows, *cols, 0, 0
        )
        out = np.full((max(packets, 1), ticker_nb.N_COLUMNS), -1.0)
        full = ticker_nb.decode_full(padded(data, fill), len(data), out)
        decoded.append((n, [c[: max(n, 0)].tobytes() for c in cols], full, out.tobytes()))
    assert decoded[0] == decoded[1], "bytes past the frame were read"
    feed._frame(None, Frame(data, WSMsgType.TEXT))
    assert all(type(order) is dict for order in sink.orders)


@saves_failures("upstox")
def check_upstox(data: bytes) -> None:
    """Assert the invariants for one Upstox binary frame."""
    feed, sink = upstox_feed()
    feed._frame(None, Frame(data))
    counted = sum(feed.rejected.values())
    assert (sink.rows > 0) + counted <= 1 and not sink.alerts
    decoded = []
    for fill in (0, 0xFF):
        table = build_symbol_table(list(UPSTOX_KEYS.values()))
        rows = np.arange(len(UPSTOX_KEYS), dtype=np.int64)
        batch = TickBatch(4)
        cols = (batch.idx, batch.price, batch.size, batch.ts, np.zeros(4, np.int64), np.zeros(4))
        n, status = decode_feed_response(padded(data, fill), len(data), *table, rows, *cols, 0)
        decoded.append((n, status, [c[: min(n, 4)].tobytes() for c in cols]))
    assert decoded[0] == decoded[1], "bytes past the frame were read"
    n, status, _ = decoded[0]
    assert (status == DECODE_OK or status == 1) == (counted == 0)
    assert sink.rows == (n if counted == 0 else 0), "a decoded frame delivers all its ticks"


# -- frames ------------------------------------------------------------------------------------

U32 = st.integers(0, 2**32 - 1)
TOKENS = st.sampled_from([*KITE_TOKENS, 12, 2**32 - 1]) | U32
PACKETS = st.one_of(
    st.builds(ltp_packet, TOKENS, U32),
    st.builds(
        lambda t, p, q: quote_packet(t, last_price=p, last_traded_quantity=q), TOKENS, U32, U32
    ),
    st.builds(lambda t, p: full_packet(t, last_price=p), TOKENS, U32),
    st.binary(min_size=0, max_size=40),
)
KITE_FRAMES = st.lists(PACKETS, max_size=5).map(frame)


@st.composite
def upstox_frames(draw) -> bytes:
    response = pb.FeedResponse(type=draw(st.integers(0, 2)), currentTs=draw(st.integers(0, 2**40)))
    for key in draw(st.lists(st.sampled_from([*UPSTOX_KEYS.values(), "MCX|1", ""]), max_size=4)):
        ltpc = response.feeds[key].ltpc
        ltpc.ltp = draw(st.floats())
        ltpc.ltq = draw(st.integers(-(2**63), 2**63 - 1))
        ltpc.ltt = draw(st.integers(0, 2**62))
    return response.SerializeToString()


@st.composite
def damaged(draw, frames: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(frames))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["cut", "flip", "insert", "delete"]))
        if kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif at < len(data):
            if kind == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            else:
                del data[at]
    return bytes(data)


@fuzz_settings(2)
@given(KITE_FRAMES | damaged(KITE_FRAMES) | st.binary(max_size=64))
def test_kite_frames_are_delivered_or_counted(data: bytes) -> None:
    check_kite(data)


@fuzz_settings(2)
@given(upstox_frames() | damaged(upstox_frames()) | st.binary(max_size=64))
def test_upstox_frames_are_delivered_or_counted(data: bytes) -> None:
    check_upstox(data)


@pytest.mark.parametrize("path", saved_inputs("kite"), ids=saved_ids(saved_inputs("kite")))
def test_saved_kite_frames_replay(path) -> None:
    check_kite(path.read_bytes())


@pytest.mark.parametrize("path", saved_inputs("upstox"), ids=saved_ids(saved_inputs("upstox")))
def test_saved_upstox_frames_replay(path) -> None:
    check_upstox(path.read_bytes())


def test_saved_broker_frames_exist() -> None:
    assert saved_inputs("kite") and saved_inputs("upstox")
