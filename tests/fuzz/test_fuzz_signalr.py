"""Fuzz SignalR framing (``engine.brokers.projectx.signalr``) and the market hub's handler.

Invariants, for any byte stream a hub sends:

* records are cut at the 0x1e separators whatever the frame boundaries;
* the connection's frame callback never raises, and the market feed's handler never fails on
  what the records hold (a failure would surface as a ``hub handler`` stream alert);
* every trade of a ``GatewayTrade`` invocation is delivered as a tick or counted as dropped;
  a record that is not a JSON object is counted as malformed.
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from picows import WSMsgType

from engine.brokers.projectx.hubs import ProjectXMarketFeed
from engine.brokers.projectx.signalr import RECORD_SEPARATOR, RecordBuffer
from engine.feeds.ticks import TickBatch
from tests.fuzz.harness import fuzz_settings, saved_ids, saved_inputs, saves_failures
from tests.fuzz.test_fuzz_broker_feeds import Frame

CONTRACTS = {"CON.F.US.EP.M25": 0, "CON.F.US.ENQ.M25": 1}


class Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.disconnects = 0

    def send(self, kind: WSMsgType, payload: bytes) -> None:
        self.sent.append(payload)

    def disconnect(self) -> None:
        self.disconnects += 1

    def send_close(self, code: object = None) -> None:
        pass


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[at : at + size] for at in range(0, len(data), size)] or [b""]


def expected_counts(records: list[bytes]) -> tuple[int, int]:
    # what the hub must make of the records: trades offered by GatewayTrade, and malformed ones
    trades = malformed = 0
    for record in records:
        try:
            message = orjson.loads(record)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            malformed += 1
            continue
        arguments = message.get("arguments")
        if (
            message.get("type") == 1
            and message.get("target") == "GatewayTrade"
            and isinstance(arguments, list)
            and len(arguments) >= 2
        ):
            trades += len(arguments[1]) if isinstance(arguments[1], list) else 1
    return trades, malformed


@saves_failures("signalr")
def check_stream(data: bytes) -> None:
    """Assert the invariants for one stream of bytes after the handshake."""
    records = data.split(RECORD_SEPARATOR)[:-1]
    for size in (1, 7, len(data) or 1):
        buffer = RecordBuffer()
        assert [r for piece in chunks(data, size) for r in buffer.feed(piece)] == records

    alerts, rows = [], []

    def deliver(batch: TickBatch, n: int, recv_ns: int) -> None:
        assert 0 < n <= batch.capacity
        rows.append(n)

    feed = ProjectXMarketFeed(
        lambda: "ws://127.0.0.1:9/",
        lambda: dict(CONTRACTS),
        deliver,
        lambda state: None,
        5.0,
        lambda code, message: alerts.append(message),
        lambda message: None,
        lambda message: None,
    )
    transport = Transport()
    feed.hub._connected(transport)
    feed.hub._transport = transport
    feed.hub._frame(transport, Frame(b"{}" + RECORD_SEPARATOR, WSMsgType.TEXT))
    assert feed.hub.state == "connected"
    for piece in chunks(data, 5):
        feed.hub._frame(transport, Frame(piece, WSMsgType.TEXT))
    assert not [alert for alert in alerts if "hub handler" in alert], alerts
    trades, malformed = expected_counts(records)
    assert (sum(rows) + feed.dropped, feed.hub.malformed) == (trades, malformed)


# -- streams -----------------------------------------------------------------------------------

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
TRADES = st.fixed_dictionaries(
    {},
    optional={
        "price": VALUES | st.floats(0.25, 1e5),
        "volume": VALUES,
        "symbolId": st.text(max_size=4),
    },
)
INVOCATIONS = st.builds(
    lambda target, contract, payload, extra: {
        "type": 1,
        "target": target,
        "arguments": [contract, payload, *extra],
    },
    st.sampled_from(["GatewayTrade", "GatewayQuote", "GatewayLogout", "Other"]),
    st.sampled_from([*CONTRACTS, "CON.X"]) | VALUES,
    st.lists(TRADES | VALUES, max_size=4) | TRADES | VALUES,
    st.lists(VALUES, max_size=1),
)
MESSAGES = st.one_of(
    INVOCATIONS,
    st.fixed_dictionaries(
        {"type": st.sampled_from([1, 3, 6, 7, "1", None])},
        optional={
            "target": VALUES,
            "arguments": VALUES,
            "invocationId": VALUES,
            "error": VALUES,
        },
    ),
    VALUES,
)


@st.composite
def streams(draw) -> bytes:
    records = [json.dumps(message).encode() for message in draw(st.lists(MESSAGES, max_size=6))]
    records += draw(st.lists(st.binary(max_size=8), max_size=2))
    records = draw(st.permutations(records))
    tail = draw(st.sampled_from([b"", b'{"type":1', b"\x1e"]))
    return RECORD_SEPARATOR.join(records) + (RECORD_SEPARATOR if records else b"") + tail


@fuzz_settings(3)
@given(streams())
def test_hub_streams_are_cut_and_handled(data: bytes) -> None:
    check_stream(data)


@fuzz_settings(1)
@given(st.binary(max_size=64))
def test_any_bytes_on_the_hub(data: bytes) -> None:
    check_stream(data)


@pytest.mark.parametrize("path", saved_inputs("signalr"), ids=saved_ids(saved_inputs("signalr")))
def test_saved_streams_replay(path) -> None:
    check_stream(path.read_bytes())


def test_saved_streams_exist() -> None:
    assert saved_inputs("signalr")
