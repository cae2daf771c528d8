"""Kite's ticker feed against the fake ticker: subscriptions, ticks, order messages, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from picows import WSMsgType

from engine.brokers.kite.ticker import KiteTicker
from tests.aio import run_async, until
from tests.conftest import free_port
from tests.fakes.kite_ticker import KiteTickerServer, full_packet, ltp_packet, quote_packet

API_KEY = "kiteapp"
ACCESS_TOKEN = "tok-day-1"
RELIANCE = 738561  # NSE, segment 1
USDINR = 1234 << 8 | 3  # CDS: prices in 1e-7
UNKNOWN = 999 << 8 | 1
ROWS = {RELIANCE: 0, USDINR: 1}


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
async def test_a_server_that_drops_every_connection_at_once_is_backed_off() -> None:
    async with live() as (server, feed, seen):
        await until(lambda: server.clients and feed.state == "connected")
        server.send_heartbeat()
        await until(lambda: feed.heartbeats == 1)
        server.drop_on_connect = True
        began, connections = time.monotonic(), server.connections
        server.disconnect_all()
        await until(lambda: server.connections >= connections + 5, timeout=20)
        # back-off of 0.1 s doubling, jittered down to half: five retries take >= 0.75 s
        assert time.monotonic() - began >= 0.7


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
