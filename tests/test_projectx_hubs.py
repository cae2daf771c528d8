"""The SignalR client and the ProjectX market feed against the fake's picows hubs on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest

from engine.brokers.projectx.hubs import OrderTracker, ProjectXMarketFeed, parse_ts
from engine.brokers.projectx.signalr import HubConnection, HubHandler, RecordBuffer
from engine.brokers.stream import UpdateStream
from tests.aio import run_async, until
from tests.fakes.projectx import FakeProjectX

NQ, MNQ = "CON.F.US.ENQ.H25", "CON.F.US.MNQ.H25"
RS = b"\x1e"


@pytest.fixture
def fake():
    with FakeProjectX() as server:
        yield server


def hub_url(fake: FakeProjectX, hub: str, token: str | None = None) -> str:
    token = token if token is not None else fake.snapshot(lambda f: f._token())
    return f"{fake.ws_url}/{hub}?access_token={token}"


def trade_record(contract_id: str, trades) -> bytes:
    message = {"type": 1, "target": "GatewayTrade", "arguments": [contract_id, trades]}
    return orjson.dumps(message) + RS


class Feed:
    """A market feed on the fake with everything it reports recorded."""

    def __init__(self, fake: FakeProjectX, stale_after_s: float = 5.0, deliver=None) -> None:
        self.batches: list[tuple[list, list, list, list, int]] = []
        self.states: list[str] = []
        self.alerts: list[tuple[str, str]] = []
        url = hub_url(fake, "market")
        self.feed = ProjectXMarketFeed(
            lambda: url,
            lambda: {NQ: 0, MNQ: 1},
            deliver or self.deliver,
            self.states.append,
            stale_after_s,
            lambda code, message: self.alerts.append((code, message)),
            lambda message: None,
            lambda message: None,
        )

    def deliver(self, batch, n: int, recv_ns: int) -> None:
        self.batches.append(
            (
                batch.idx[:n].tolist(),
                batch.price[:n].tolist(),
                batch.size[:n].tolist(),
                batch.ts[:n].tolist(),
                recv_ns,
            )
        )


@contextlib.asynccontextmanager
async def feeding(fake: FakeProjectX, **kwargs):
    recorder = Feed(fake, **kwargs)
    task = asyncio.create_task(recorder.feed.run())
    await until(lambda: recorder.feed.state == "connected" and fake.clients("market") == 1)
    await until(lambda: len(fake.invocations["market"]) == 4)
    try:
        yield recorder
    finally:
        recorder.feed.stop()
        await task


class Recorder(HubHandler):
    """A bare hub owner that records what the hub tells it."""

    def __init__(self) -> None:
        self.opened = 0
        self.events: list[tuple[str, list]] = []
        self.errors: list[str] = []
        self.unauthorized: list[str] = []

    def hub_open(self, hub: HubConnection) -> None:
        self.opened += 1

    def hub_invocation(self, target: str, arguments: list, recv_ns: int) -> None:
        self.events.append((target, arguments))

    def hub_error(self, message: str) -> None:
        self.errors.append(message)

    def hub_unauthorized(self, message: str) -> None:
        self.unauthorized.append(message)


@contextlib.asynccontextmanager
async def hub_running(url: str, **kwargs):
    recorder = Recorder()
    hub = HubConnection("user", lambda: url, recorder, **kwargs)
    task = asyncio.create_task(hub.run())
    try:
        yield hub, recorder
    finally:
        hub.stop()
        await task


# -- records -------------------------------------------------------------------------------------


def test_records_are_cut_at_the_separator_whatever_the_chunks() -> None:
    buffer = RecordBuffer(limit=64)
    assert buffer.feed(b'{"type":6}\x1e{"type":1,"target":"A"}\x1e{"ty') == [
        b'{"type":6}',
        b'{"type":1,"target":"A"}',
    ]
    assert buffer.pending == 4
    assert buffer.feed(memoryview(b'pe":7}')) == []
    assert buffer.feed(b"\x1e") == [b'{"type":7}']
    assert buffer.pending == 0
    with pytest.raises(ValueError, match="longer than 64"):
        buffer.feed(b"x" * 65)
    assert buffer.pending == 0


# -- order updates -------------------------------------------------------------------------------


def gateway_order(status: int, fill: int = 0, price: float | None = None, **fields) -> dict:
    return {
        "id": 55, "accountId": 7001, "contractId": NQ, "creationTimestamp": "2025-03-14T14:30:00Z",
        "updateTimestamp": "2025-03-14T14:30:01.1234567+00:00", "status": status, "type": 1,
        "side": 1, "size": 3, "limitPrice": 100.5, "stopPrice": None, "fillVolume": fill,
        "filledPrice": price, "customTag": "X1", **fields,
    }  # fmt: skip


def drain(stream: UpdateStream) -> list:
    updates = []
    while stream.queued:
        updates.append(stream._queue.get_nowait())
    return updates


def test_reports_stream_each_change_once_and_never_move_an_order_backwards() -> None:
    stream, tags = UpdateStream(100), {}
    tracker = OrderTracker({NQ: "NQ"}, stream, tags)
    trade = {"id": 1, "orderId": 55, "price": 100.5, "size": 1, "voided": False,
             "creationTimestamp": "2025-03-14T14:30:02Z"}  # fmt: skip
    tracker.on_order(gateway_order(1))
    tracker.on_order(gateway_order(1))  # the poll repeats it
    tracker.on_trade(trade)
    tracker.on_trade(trade)  # the same trade again
    tracker.on_order(gateway_order(1, 1, 100.5))  # the order's own report of that fill
    tracker.on_order(gateway_order(1))  # a stale report
    # the trade of the other 2 was missed: the order's cumulative report completes the fill
    tracker.on_order(gateway_order(2, 3, 100.75))
    tracker.on_trade({**trade, "id": 2, "price": 100.875, "size": 2})  # late
    tracker.on_order(gateway_order(3))  # a cancel after the fill changes nothing
    tracker.on_order(gateway_order(1, customTag=None, id=56))  # not ours
    updates = drain(stream)
    assert [(u.seq, u.kind, u.order.status, u.order.filled_qty) for u in updates] == [
        (0, "accepted", "working", 0),
        (1, "filled", "working", 1),
        (2, "filled", "filled", 3),
    ]
    assert (updates[1].order.fill_price, updates[1].order.fill_ts) == (
        100.5,
        parse_ts("2025-03-14T14:30:02Z"),
    )
    assert updates[2].order.fill_price == 100.75
    assert updates[2].order.fill_ts == parse_ts("2025-03-14T14:30:01.123456Z")
    assert (updates[0].order.side, updates[0].order.symbol) == ("sell", "NQ")
    assert tags == {"X1": "55"}


def test_first_sightings_partial_fills_cancels_and_expiries() -> None:
    stream = UpdateStream(100)
    tracker = OrderTracker({NQ: "NQ"}, stream, {})
    tracker.on_order(gateway_order(1, 1, 100.5))  # first seen partly filled
    tracker.on_order(gateway_order(3, 1, 100.5))  # then cancelled
    tracker.on_order(gateway_order(4, id=57, customTag="X2"))  # expired unseen
    # a trade before its order: the fill price and time are the trades'
    tracker.on_trade({"id": 9, "orderId": 58, "price": 99.0, "size": 3, "voided": False})
    tracker.on_order(gateway_order(2, 3, 98.0, id=58, customTag="X3"))
    updates = drain(stream)
    assert [(u.kind, u.reason, u.order.filled_qty, u.order.order_id) for u in updates] == [
        ("accepted", None, 1, "55"),
        ("filled", None, 1, "55"),
        ("cancelled", "Cancelled", 1, "55"),
        ("cancelled", "Expired", 0, "57"),
        ("filled", None, 3, "58"),
    ]
    assert updates[-1].order.fill_price == 99.0


# -- the connection ------------------------------------------------------------------------------


@run_async
async def test_handshake_then_every_contract_is_subscribed(fake) -> None:
    async with feeding(fake) as recorder:
        assert fake.handshakes["market"] == 1
        assert fake.invocations["market"] == [
            ("SubscribeContractQuotes", [NQ]),
            ("SubscribeContractTrades", [NQ]),
            ("SubscribeContractQuotes", [MNQ]),
            ("SubscribeContractTrades", [MNQ]),
        ]
        assert recorder.states == ["connected"]
        assert recorder.alerts == []


@run_async
async def test_gateway_trades_become_ticks_one_batch_per_frame(fake) -> None:
    async with feeding(fake) as recorder:
        before = time.time_ns()
        fake.push_trades(NQ, [19000.25, 19000.5], volume=3)
        await until(lambda: len(recorder.batches) == 2)
        after = time.time_ns()
        # each frame carries a GatewayTrade and a GatewayQuote record: quotes are not ticks
        assert [b[:3] for b in recorder.batches] == [
            ([0], [19000.25], [3.0]),
            ([0], [19000.5], [3.0]),
        ]
        assert all(before <= b[3][0] <= after for b in recorder.batches)
        assert recorder.feed.quotes == 2
        recorder.batches.clear()
        frame = (
            trade_record(NQ, [{"price": 1.25, "volume": 1}, {"price": 1.5, "volume": 2}])
            + trade_record(MNQ, {"price": 2.75, "volume": 4})
            + trade_record("CON.F.US.OTHER.H25", [{"price": 3.0, "volume": 5}])
            + trade_record(NQ, [{"price": "bad", "volume": 1}])
        )
        fake.send_raw("market", frame)
        await until(lambda: recorder.batches)
        assert [b[:3] for b in recorder.batches] == [
            ([0, 0, 1, -1], [1.25, 1.5, 2.75, 3.0], [1.0, 2.0, 4.0, 5.0])
        ]
        assert recorder.feed.dropped == 1


@run_async
async def test_a_record_over_two_frames_or_two_fragments_is_one_record(fake) -> None:
    async with feeding(fake) as recorder:
        record = trade_record(NQ, [{"price": 5.0, "volume": 1}])
        fake.send_raw("market", record[:20])
        fake.send_raw("market", record[20:])
        await until(lambda: len(recorder.batches) == 1)
        fake.send_raw("market", record[:9], fin=False)
        fake.send_raw("market", record[9:], continuation=True)
        await until(lambda: len(recorder.batches) == 2)
        assert [b[1] for b in recorder.batches] == [[5.0], [5.0]]
        assert recorder.feed.hub.malformed == 0


@run_async
async def test_pings_are_answered_and_sent(fake) -> None:
    async with feeding(fake) as recorder:
        fake.ping("market")
        await until(lambda: fake.pings_received["market"] == 1)
        assert recorder.feed.hub.pings == 1
    async with hub_running(hub_url(fake, "user"), ping_interval_s=0.05) as (hub, recorder):
        await until(lambda: fake.pings_received["user"] >= 2)
        assert hub.pings == 0  # these came from the client on its own


@run_async
async def test_a_server_side_disconnect_reconnects_and_resubscribes(fake) -> None:
    async with feeding(fake) as recorder:
        fake.drop("market")
        await until(lambda: fake.handshakes["market"] == 2 and fake.clients("market") == 1)
        await until(lambda: len(fake.invocations["market"]) == 8)
        assert fake.invocations["market"][4:] == fake.invocations["market"][:4]
        assert recorder.states == ["connected", "disconnected", "connected"]
        fake.push_trades(NQ, [7.0])
        await until(lambda: recorder.batches)


@run_async
async def test_a_silent_server_is_dropped_and_reconnected(fake) -> None:
    async with hub_running(hub_url(fake, "user"), server_timeout_s=0.3) as (hub, recorder):
        await until(lambda: recorder.opened >= 2, timeout=5)
        assert hub.connections >= 2


@run_async
async def test_a_refused_upgrade_and_a_failed_invocation_are_reported(fake) -> None:
    async with hub_running(hub_url(fake, "user", token="expired")) as (hub, recorder):
        await until(lambda: recorder.unauthorized)
        assert recorder.opened == 0 and hub.state != "connected"
    async with hub_running(hub_url(fake, "user")) as (hub, recorder):
        await until(lambda: recorder.opened == 1)
        assert hub.send("SubscribeEverything", [])
        await until(lambda: recorder.errors)
        assert "SubscribeEverything" in recorder.errors[0]
        assert "does not exist" in recorder.errors[0]


@run_async
async def test_the_feed_goes_stale_without_trades_and_recovers_with_one(fake) -> None:
    async with feeding(fake, stale_after_s=0.2) as recorder:
        await until(lambda: recorder.feed.state == "stale")
        fake.push_trades(NQ, [9.0])
        await until(lambda: recorder.feed.state == "connected")
        assert recorder.states == ["connected", "stale", "connected"]


@run_async
async def test_a_failing_delivery_is_alerted_and_the_feed_goes_on(fake) -> None:
    calls: list[int] = []

    def deliver(batch, n: int, recv_ns: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            raise RuntimeError("engine refused the batch")

    async with feeding(fake, deliver=deliver) as recorder:
        fake.push_trades(NQ, [1.0, 2.0])
        await until(lambda: len(calls) == 2)
        assert recorder.alerts[0][0] == "stream"
        assert "engine refused the batch" in recorder.alerts[0][1]
        assert fake.clients("market") == 1
