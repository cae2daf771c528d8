"""UpstoxFeed at the fake Upstox: authorize, subscribe, decode, reconnect; the decoder itself
is tested against the SDK in test_upstox_proto.py."""

from __future__ import annotations

import asyncio
import time

import pytest
from picows import WSError, WSListener, WSMsgType, ws_connect
from upstox_client.feeder.proto import MarketDataFeedV3_pb2 as pb

from engine.brokers.upstox.broker import UpstoxBroker
from engine.brokers.upstox.feed import BATCH_TICKS
from tests.aio import run_async, until
from tests.fakes.upstox import TOKEN_ENV, FakeUpstox, upstox_config
from tests.upstox_harness import INFY, RELIANCE


@pytest.fixture
def fake():
    with FakeUpstox({INFY: "INFY", RELIANCE: "RELIANCE"}) as server:
        yield server


@pytest.fixture
def broker_of(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, fake.access_token)
    alerts: list[tuple[str, str]] = []
    brokers = []

    def build() -> tuple[UpstoxBroker, list]:
        broker = UpstoxBroker(upstox_config(fake, tmp_path), lambda *a: alerts.append(a))
        brokers.append(broker)
        return broker, alerts

    return build


class Collector:
    """A deliver callback keeping copies of every batch's rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float, int]] = []
        self.recv: list[int] = []

    def __call__(self, batch, n, recv_ns) -> None:
        self.recv.append(recv_ns)
        for i in range(n):
            row = (int(batch.idx[i]), float(batch.price[i]), float(batch.size[i]))
            self.rows.append((*row, int(batch.ts[i])))


async def streaming(broker, collector, states, index=None):
    await broker.start()
    feed = broker.market_feed(index or {"INFY": 0, "RELIANCE": 1}, collector, states.append)
    task = asyncio.create_task(feed.run())
    return feed, task


async def stopped(broker, feed, task) -> None:
    feed.stop()
    await task
    await broker.close()


@run_async
async def test_feed_authorizes_subscribes_in_binary_and_delivers_ticks(fake, broker_of):
    broker, alerts = broker_of()
    fake.set_ltp(INFY, 1500.0)  # known before the subscription: comes in the initial feed
    collector, states = Collector(), []
    feed, task = await streaming(broker, collector, states)
    await until(lambda: fake.subscriptions and collector.rows)
    (sub,) = fake.subscriptions
    assert sub["frame"] == "BINARY" and sub["method"] == "sub"
    assert sub["data"] == {"mode": "ltpc", "instrumentKeys": [INFY, RELIANCE]}
    assert isinstance(sub["guid"], str) and sub["guid"]
    before = time.time_ns()
    fake.push_ticks(RELIANCE, [2450.5, 2451.0], qty=3)
    await until(lambda: len(collector.rows) == 3)
    assert collector.rows[0][:3] == (0, 1500.0, 0.0)
    assert [row[:3] for row in collector.rows[1:]] == [(1, 2450.5, 3.0), (1, 2451.0, 3.0)]
    assert all(before <= row[3] <= time.time_ns() for row in collector.rows[1:])
    assert states == ["connected"] and feed.state == "connected"
    assert feed.rejected_frames() == {} and feed.authorizations == 1 and not alerts
    await stopped(broker, feed, task)
    assert feed.state == "disconnected"


@run_async
async def test_feed_drops_malformed_frames_by_reason_and_keeps_streaming(fake, broker_of):
    broker, _ = broker_of()
    collector, states = Collector(), []
    feed, task = await streaming(broker, collector, states, {"INFY": 4})
    await until(lambda: fake.subscriptions)
    fake.send_raw(b"\x12\x05\x0a\x01a")
    fake.send_raw(b'{"type": "live_feed"}', WSMsgType.TEXT)
    fake.push_ticks(INFY, [1501.5])
    await until(lambda: collector.rows)
    assert feed.rejected_frames() == {"truncated": 1, "text": 1}
    assert [row[:2] for row in collector.rows] == [(4, 1501.5)]
    await stopped(broker, feed, task)


@run_async
async def test_feed_grows_its_batch_for_a_frame_with_many_ticks(fake, broker_of):
    broker, _ = broker_of()
    collector, states = Collector(), []
    feed, task = await streaming(broker, collector, states)
    await until(lambda: fake.subscriptions)
    message = pb.FeedResponse(type=pb.live_feed)
    for k in range(BATCH_TICKS + 500):
        message.feeds[f"NSE_FO|{k}"].ltpc.ltp = float(k)
    message.feeds[INFY].ltpc.ltp = 1499.0
    fake.send_raw(message.SerializeToString())
    await until(lambda: collector.rows)
    assert len(collector.rows) == BATCH_TICKS + 501 and len(collector.recv) == 1
    assert [row[:2] for row in collector.rows if row[0] >= 0] == [(0, 1499.0)]
    assert feed.batch.capacity >= BATCH_TICKS + 501
    await stopped(broker, feed, task)


@run_async
async def test_feed_reconnects_with_a_fresh_authorization(fake, broker_of):
    broker, _ = broker_of()
    collector, states = Collector(), []
    feed, task = await streaming(broker, collector, states)
    await until(lambda: fake.subscriptions)
    fake.drop_feed()
    await until(lambda: len(fake.subscriptions) == 2 and feed.state == "connected")
    assert fake.authorizations == 2 and fake.feed_connections == 2 and fake.feed_refusals == 0
    assert states == ["connected", "disconnected", "connected"]
    fake.push_ticks(INFY, [1502.0])
    await until(lambda: collector.rows)
    await stopped(broker, feed, task)


@run_async
async def test_authorized_url_is_single_use(fake, broker_of):
    broker, _ = broker_of()
    await broker.start()
    url = await broker._authorize()
    transport, _ = await ws_connect(WSListener, url)
    with pytest.raises(WSError):
        await ws_connect(WSListener, url)
    assert fake.feed_refusals == 1
    transport.disconnect()
    await broker.close()


@run_async
async def test_expired_token_at_authorize_alerts_once_and_retries_until_renewed(
    fake, broker_of, monkeypatch
):
    broker, alerts = broker_of()
    await broker.start()
    fake.expire_token()
    collector, states = Collector(), []
    feed = broker.market_feed({"INFY": 0}, collector, states.append)
    task = asyncio.create_task(feed.run())
    await until(lambda: feed.reconnects >= 3)
    assert [code for code, _ in alerts] == ["token_expired"]
    assert fake.feed_connections == 0 and feed.state != "connected"
    fake.set_token("fresh-token-2")
    monkeypatch.setenv(TOKEN_ENV, "fresh-token-2")
    assert await broker.renew()
    await until(lambda: feed.state == "connected", timeout=10)
    assert [code for code, _ in alerts] == ["token_expired", "token_renewed"]
    await stopped(broker, feed, task)
