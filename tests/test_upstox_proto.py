"""The Numba protobuf decoder of the Upstox v3 feed, against the official SDK's own parser."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from upstox_client.feeder.proto import MarketDataFeedV3_pb2 as pb

from engine.brokers.upstox.proto_nb import (
    DECODE_FULL,
    DECODE_OK,
    decode_feed_response,
    reject_reason,
)
from engine.brokers.upstox.proto_schema import (
    KIND_FIXED64,
    KIND_MESSAGE,
    KIND_STRING,
    KIND_VARINT,
    MAX_FIELD,
    SCHEMA,
    TYPE_NAMES,
)
from engine.feeds.csv_nb import build_symbol_table
from engine.feeds.ticks import TickBatch

#: keys configured in the decoder tests (engine rows 7, 3, 5) and keys that are not
CONFIGURED = {"NSE_EQ|INE009A01021": 7, "NSE_FO|43210": 3, "BSE_EQ|INE002A01018": 5}
UNCONFIGURED = ["MCX_FO|12345", "NSE_INDEX|Nifty 50", "", "NSE_EQ|é"]
#: the arrival stamp the decoder writes to every row
STAMP = 1_795_000_000_123_456_789
#: int64 and double values, NaN and infinities included
INT64 = st.integers(-(2**63), 2**63 - 1)
DOUBLES = st.floats(allow_nan=True, allow_infinity=True)
#: generation may be slow on a loaded machine; the examples are fixed (derandomized) anyway
SLOW_OK = [HealthCheck.too_slow]


def decode(payload: bytes, capacity: int = 64, keys: dict[str, int] = CONFIGURED):
    """Decode with proto_nb; return (status, n, rows (idx, ltp bits, ltq, ts, ltt, cp bits))."""
    buf = np.frombuffer(payload, np.uint8).copy()
    table = build_symbol_table(list(keys))
    rows = np.array(list(keys.values()), np.int64)
    batch = TickBatch(capacity)
    ltt, cp = np.zeros(capacity, np.int64), np.zeros(capacity)
    columns = (batch.idx, batch.price, batch.size, batch.ts, ltt, cp)
    n, status = decode_feed_response(buf, len(buf), *table, rows, *columns, STAMP)
    out = []
    for i in range(min(n, capacity)):
        price, size = bits(batch.price[i]), float(batch.size[i])
        out.append((int(batch.idx[i]), price, size, int(batch.ts[i]), int(ltt[i]), bits(cp[i])))
    return status, n, out


def bits(value: float) -> int:
    return int(np.array([value]).view(np.int64)[0])


def sdk_rows(payload: bytes, keys: dict[str, int] = CONFIGURED) -> list[tuple]:
    """The rows the SDK's own parser implies: one per feed carrying an LTPC (raises if bad)."""
    message = pb.FeedResponse()
    message.ParseFromString(payload)
    out = []
    for key, feed in message.feeds.items():
        member = feed.WhichOneof("FeedUnion")
        if member == "ltpc":
            ltpc = feed.ltpc
        elif member == "fullFeed":
            inner = feed.fullFeed.WhichOneof("FullFeedUnion")
            holder = getattr(feed.fullFeed, inner) if inner else None
            ltpc = holder.ltpc if holder is not None and holder.HasField("ltpc") else None
        elif member == "firstLevelWithGreeks" and feed.firstLevelWithGreeks.HasField("ltpc"):
            ltpc = feed.firstLevelWithGreeks.ltpc
        else:
            ltpc = None
        if ltpc is not None:
            row = keys.get(key, -1)
            # the batch's size column is float64, as every feed's
            out.append((row, bits(ltpc.ltp), float(ltpc.ltq), STAMP, ltpc.ltt, bits(ltpc.cp)))
    return sorted(out)


@st.composite
def fill_ltpc(draw, ltpc) -> None:
    for name, values in (("ltp", DOUBLES), ("ltt", INT64), ("ltq", INT64), ("cp", DOUBLES)):
        if draw(st.booleans()):
            setattr(ltpc, name, draw(values))
    ltpc.SetInParent()
    if draw(st.booleans()):
        ltpc.iep.value = draw(DOUBLES)


@st.composite
def feeds(draw) -> pb.Feed:
    """One ``Feed`` of any mode: ltpc, full (market or index), greeks, or without an LTPC."""
    feed = pb.Feed()
    kind = draw(st.sampled_from(["ltpc", "market", "index", "greeks", "bare", "none"]))
    if kind == "ltpc":
        draw(fill_ltpc(feed.ltpc))
    elif kind == "market":
        market = feed.fullFeed.marketFF
        draw(fill_ltpc(market.ltpc))
        market.marketLevel.bidAskQuote.add(bidQ=draw(INT64), bidP=draw(DOUBLES))
        market.marketOHLC.ohlc.add(interval="1d", open=draw(DOUBLES), vol=draw(INT64))
        market.optionGreeks.delta = draw(DOUBLES)
        market.casEligible = draw(st.booleans())
    elif kind == "index":
        draw(fill_ltpc(feed.fullFeed.indexFF.ltpc))
        feed.fullFeed.indexFF.marketOHLC.ohlc.add(interval="I1", close=draw(DOUBLES))
    elif kind == "greeks":
        draw(fill_ltpc(feed.firstLevelWithGreeks.ltpc))
        feed.firstLevelWithGreeks.firstDepth.askP = draw(DOUBLES)
    elif kind == "bare":  # a full feed whose market part carries no ltpc
        feed.fullFeed.marketFF.atp = draw(DOUBLES)
    if draw(st.booleans()):
        feed.requestMode = draw(st.sampled_from([0, 1, 2, 3]))
    return feed


#: distinct map keys of a frame, configured or not
KEYS = st.lists(st.sampled_from([*CONFIGURED, *UNCONFIGURED]), unique=True, max_size=7)


@st.composite
def feed_responses(draw) -> bytes:
    """FeedResponse messages of every shape the feed sends, encoded by the SDK's classes."""
    message = pb.FeedResponse(type=draw(st.sampled_from([0, 1, 2])), currentTs=draw(INT64))
    for key in draw(KEYS):
        message.feeds[key].CopyFrom(draw(feeds()))
    if draw(st.booleans()):
        message.marketInfo.segmentStatus["NSE_EQ"] = pb.NORMAL_OPEN
        message.marketInfo.casMarketStatus["NSE_EQ"].status = "open"
    return message.SerializeToString()


def delimited(field: int, payload: bytes) -> bytes:
    """Encode a length-delimited field by hand (a varint length below 2**14 here)."""
    size = len(payload)
    length = bytes([size]) if size < 0x80 else bytes([size & 0x7F | 0x80, size >> 7])
    return bytes([field << 3 | 2]) + length + payload


@st.composite
def merged_feed_responses(draw) -> bytes:
    """Map entries whose value is sent several times (merged), some naming their key twice."""
    frame = b""
    for key in draw(KEYS):
        entry = b""
        if draw(st.booleans()):  # a first key that a later one replaces
            entry += delimited(1, draw(st.sampled_from(UNCONFIGURED)).encode())
        entry += delimited(1, key.encode())
        for feed in draw(st.lists(feeds(), min_size=1, max_size=3)):
            entry += delimited(2, feed.SerializeToString())
        frame += delimited(2, entry)
    return frame


def test_schema_matches_the_sdk_descriptors():
    by_name = {name: index for index, name in enumerate(TYPE_NAMES) if name[0] != "<"}
    kinds = {1: KIND_FIXED64, 3: KIND_VARINT, 8: KIND_VARINT, 14: KIND_VARINT, 9: KIND_STRING}
    package = pb.DESCRIPTOR.package + "."
    checked = set()
    pending = [pb.FeedResponse.DESCRIPTOR]
    while pending:
        descriptor = pending.pop()
        name = descriptor.full_name.removeprefix(package)
        name = {
            "MarketInfo.CasMarketStatusEntry": "MarketInfo.StatusInfoEntry",
            "MarketInfo.PreOpenSessionStatusEntry": "MarketInfo.StatusInfoEntry",
        }.get(name, name)
        if descriptor.full_name in checked:
            continue
        checked.add(descriptor.full_name)
        row = SCHEMA[by_name[name]]
        expected = np.zeros(MAX_FIELD + 1, np.int64)
        for field in descriptor.fields:
            if field.message_type is not None:
                child = field.message_type.full_name.removeprefix(package)
                child = child.replace("CasMarketStatusEntry", "StatusInfoEntry")
                child = child.replace("PreOpenSessionStatusEntry", "StatusInfoEntry")
                expected[field.number] = KIND_MESSAGE + 8 * by_name[child]
                pending.append(field.message_type)
            else:
                expected[field.number] = kinds[field.type]
        assert row.tolist() == expected.tolist(), name
    assert len(checked) == 19  # every message reachable from FeedResponse (two share a row)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=SLOW_OK)
@given(feed_responses())
def test_decodes_what_the_sdk_parses(payload):
    status, n, rows = decode(payload)
    assert status == DECODE_OK
    assert sorted(rows) == sdk_rows(payload)
    assert n == len(rows)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=SLOW_OK)
@given(merged_feed_responses())
def test_merges_repeated_values_like_the_sdk(payload):
    # a oneof member set later clears the earlier one; scalars of a repeated LTPC: last wins
    status, _, rows = decode(payload)
    assert status == DECODE_OK
    assert sorted(rows) == sdk_rows(payload)


def test_an_entry_with_fields_of_its_own_unknown_is_dropped_as_the_sdk_drops_it():
    # upb, the SDK's protobuf runtime, moves such a map entry to the unknown fields
    feed = pb.Feed()
    feed.ltpc.ltp = 5.0
    entry = delimited(1, b"NSE_FO|43210") + delimited(2, feed.SerializeToString())
    plain, odd = delimited(2, entry), delimited(2, entry + b"\x18\x01")
    assert decode(plain)[2] == sdk_rows(plain) != []
    assert decode(odd)[2] == sdk_rows(odd) == []


def test_other_modes_carry_their_ltpc_and_unknown_keys_get_row_minus_one():
    message = pb.FeedResponse(type=pb.live_feed)
    message.feeds["NSE_FO|43210"].fullFeed.marketFF.ltpc.ltp = 99.5
    message.feeds["NSE_FO|43210"].fullFeed.marketFF.ltpc.ltq = 75
    message.feeds["NSE_EQ|INE009A01021"].firstLevelWithGreeks.ltpc.ltp = 1500.25
    message.feeds["MCX_FO|12345"].ltpc.ltp = 7.0
    message.feeds["BSE_EQ|INE002A01018"].fullFeed.marketFF.atp = 3.0  # no ltpc: no tick
    status, _, rows = decode(message.SerializeToString())
    assert status == DECODE_OK
    assert sorted((row[0], row[1], row[2]) for row in rows) == [
        (-1, bits(7.0), 0.0),
        (3, bits(99.5), 75.0),
        (7, bits(1500.25), 0.0),
    ]


def test_a_frame_larger_than_the_batch_reports_its_size():
    message = pb.FeedResponse(type=pb.live_feed)
    for k in range(10):
        message.feeds[f"NSE_FO|{k}"].ltpc.ltp = float(k)
    status, n, _ = decode(message.SerializeToString(), capacity=4)
    assert (status, n) == (DECODE_FULL, 10)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x12\x05\x0a\x01a", "truncated"),  # the entry is longer than the frame
        (b"\x19\x00\x00", "truncated"),  # a fixed64 cut short
        (b"\x18" + b"\xff" * 10 + b"\x01", "bad_varint"),  # 11 bytes
        (b"\x98\x80\x80\x80\x80\x00\x05", "bad_varint"),  # a 6-byte tag
        (b"\xf8\xff\xff\xff\x1f\x00", "bad_varint"),  # a tag past 32 bits
        (b"\x00\x05", "bad_tag"),
        (b"\x12\x02\x00\x01", "bad_tag"),
        (b"\x0e", "bad_wire_type"),
        (b"\x2c", "bad_group"),
        (b"\x2b\x34", "bad_group"),
        (b"\x2b\x08\x01", "bad_group"),
        (b"\x12\x03\x0a\x01\xff", "bad_utf8"),
        (b"\x12\x05\x0a\x03\xed\xa0\x80", "bad_utf8"),  # a surrogate
        (b"\x12\x04\x0a\x02\xc0\x80", "bad_utf8"),  # overlong
        (b"\x2b" * 101 + b"\x2c" * 101, "too_deep"),
    ],
)
def test_malformed_frames_are_refused_by_reason_like_the_sdk(payload, reason):
    status, _, _ = decode(payload)
    assert status > DECODE_FULL
    assert reject_reason(status) == reason
    with pytest.raises(Exception, match="Error parsing"):
        pb.FeedResponse().ParseFromString(payload)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=SLOW_OK)
@given(feed_responses(), st.data())
def test_damaged_frames_are_refused_exactly_when_the_sdk_refuses_them(payload, data):
    damaged = bytearray(payload)
    how = data.draw(st.sampled_from(["cut", "overwrite", "insert"]))
    at = data.draw(st.integers(0, len(damaged)))
    if how == "cut":
        damaged = damaged[:at]
    elif how == "overwrite" and damaged:
        damaged[min(at, len(damaged) - 1)] = data.draw(st.integers(0, 255))
    else:
        damaged[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    damaged = bytes(damaged)
    status, _, rows = decode(damaged)
    try:
        expected = sdk_rows(damaged)
    except Exception:  # noqa: BLE001 - the SDK raises DecodeError (or its C twin)
        assert status > DECODE_FULL
        return
    assert status == DECODE_OK
    assert sorted(rows) == expected
