"""The ``ws`` feed against a real picows server on 127.0.0.1, in the runtime's own loop."""

from __future__ import annotations

import asyncio
import random
import time

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

from engine.feeds.csv_nb import build_symbol_table
from engine.feeds.frames import FRAME_REJECTS, decode_frame, fill_batch
from engine.feeds.json_nb import DONE, FALLBACK, MORE, parse_json_ticks
from engine.feeds.ticks import TickBatch
from engine.live import Runtime
from kernels import layout
from tests.aio import run_async, until
from tests.conftest import make_config

T0 = 1_795_000_000_000_000_000


class TickServer:
    """A picows server that records what clients send and sends what a test tells it."""

    def __init__(self) -> None:
        self.clients: list[WSTransport] = []
        self.received: list[bytes] = []
        self.server = None
        self.port = 0

    async def start(self, port: int = 0) -> TickServer:
        server = self

        class Listener(WSListener):
            def on_ws_connected(self, transport: WSTransport) -> None:
                server.clients.append(transport)

            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                if frame.msg_type == WSMsgType.TEXT:
                    server.received.append(frame.get_payload_as_bytes())

            def on_ws_disconnected(self, transport: WSTransport) -> None:
                server.clients.remove(transport)

        self.server = await ws_create_server(lambda request: Listener(), "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def send(self, payload: bytes, kind: WSMsgType = WSMsgType.TEXT, fin: bool = True) -> None:
        for client in self.clients:
            client.send(kind, payload, fin=fin)

    def ticks(self, *ticks: dict) -> None:
        self.send(orjson.dumps(list(ticks) if len(ticks) > 1 else ticks[0]))

    async def close(self) -> None:
        for client in list(self.clients):
            client.disconnect()
        self.server.close()
        await self.server.wait_closed()


def tick(price: float, offset: int, symbol: str = "NIFTY", size: float = 1.0) -> dict:
    return {"s": symbol, "p": price, "q": size, "t": T0 + offset}


def ws_runtime(port: int, tmp_path, **feed) -> Runtime:
    cfg = make_config(
        instruments=[{"symbol": "NIFTY", "tick_size": 0.05}],
        session={"enabled": False},
        strategy={"fast": 2, "slow": 3},
        feed={"name": "ws", "url": f"ws://127.0.0.1:{port}/", **feed},
        journal={"path": str(tmp_path / "journal.jsonl")},
        web={"enabled": False},
    )
    return Runtime(cfg, out=open("/dev/null", "w"))  # noqa: SIM115 - closed with the process


async def started(runtime: Runtime, server: TickServer) -> asyncio.Task:
    task = asyncio.create_task(runtime.run())
    await until(lambda: server.clients and runtime.feed.state == "connected")
    return task


async def stopped(runtime: Runtime, task: asyncio.Task) -> None:
    runtime.stop()
    await task


# -- the parser ---------------------------------------------------------------------------------


def parse_fast(payload: bytes, batch: TickBatch, symbols=("NIFTY", "BANKNIFTY")):
    buf = np.frombuffer(payload, np.uint8).copy()
    table = build_symbol_table(list(symbols))
    columns = (batch.idx, batch.price, batch.size, batch.ts)
    return parse_json_ticks(buf, 0, len(payload), *table, *columns)


def parse_slow(payload: bytes, batch: TickBatch, symbols=("NIFTY", "BANKNIFTY")):
    rejected = dict.fromkeys(FRAME_REJECTS, 0)
    ticks = decode_frame(payload, rejected)
    index = {symbol: i for i, symbol in enumerate(symbols)}
    return fill_batch(ticks, 0, index, batch, rejected)[0] if ticks is not None else 0


def spell(value: dict, rng: random.Random) -> bytes:
    # the same document with random key order and blanks, as different feeds write it
    items = list(value.items())
    rng.shuffle(items)
    blank = lambda: rng.choice(["", " ", "\n", "\t ", "  "])  # noqa: E731
    parts = [f'{blank()}"{key}"{blank()}:{blank()}{orjson.dumps(v).decode()}' for key, v in items]
    return ("{" + ",".join(parts) + blank() + "}").encode()


def test_the_fast_parser_reads_what_orjson_reads_exactly() -> None:
    rng = random.Random(7)
    for _ in range(300):
        ticks = []
        for _ in range(rng.randint(1, 40)):
            value = {
                "s": rng.choice(["NIFTY", "BANKNIFTY", "UNKNOWN"]),
                "p": rng.choice([round(rng.randint(1, 10**6) * 0.05, 2), rng.randint(1, 99999)]),
                "t": T0 + rng.randint(0, 10**12),
            }
            if rng.random() < 0.7:
                value["q"] = rng.choice([rng.randint(0, 500), round(rng.random() * 100, 3)])
            ticks.append(spell(value, rng))
        payload = ticks[0] if len(ticks) == 1 else b"[" + b" ,".join(ticks) + b"]"
        fast, slow = TickBatch(64), TickBatch(64)
        n, position, status = parse_fast(payload, fast)
        assert (status, position) == (DONE, len(payload))
        assert n == parse_slow(payload, slow)
        for column in ("idx", "price", "size", "ts"):
            assert getattr(fast, column)[:n].tolist() == getattr(slow, column)[:n].tolist()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"s": "NIFTY", "p": 1, "t": 5, "x": 1}',  # another key
        b'{"s": "NI\\u0046TY", "p": 1, "t": 5}',  # an escape
        b'{"s": "NIFTY", "p": 1e400, "t": 5}',  # beyond the exact fast path
        b'{"s": "NIFTY", "p": 1, "t": 5.5}',  # a float timestamp
        b'{"s": "NIFTY", "p": "1", "t": 5}',  # a string price
        b'{"s": "NIFTY", "p": 1}',  # no timestamp
        b'{"s": "NIFTY", "p": 1, "t": 5}}',  # trailing garbage
        b'[{"s": "NIFTY", "p": 1, "t": 5},]',
        b'{"s": "NIFTY", "p": -nan, "t": 5}',
        b"5",
        b"",
    ],
)
def test_the_fast_parser_hands_anything_unusual_to_orjson(payload: bytes) -> None:
    assert parse_fast(payload, TickBatch(8))[2] == FALLBACK


@pytest.mark.parametrize(
    "number",
    [b"022003.45", b"00", b"-01", b"22003.", b"1.e5", b".5", b"-", b"1e", b"1e+", b"--1", b"+1"],
)
@pytest.mark.parametrize("key", ["p", "q", "t"])
def test_numbers_that_are_not_json_are_refused_as_orjson_refuses_them(key, number) -> None:
    fields = {"s": b'"NIFTY"', "p": b"1", "q": b"1", "t": b"5", key: number}
    payload = b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in fields.items()) + b"}"
    assert parse_fast(payload, TickBatch(8))[2] == FALLBACK
    rejected = dict.fromkeys(FRAME_REJECTS, 0)
    assert decode_frame(payload, rejected) is None
    assert rejected["bad_json"] == 1


_JSONISH = st.text(alphabet="0123456789.-+eE", min_size=1, max_size=12)


@settings(max_examples=2000, deadline=None)
@given(price=_JSONISH, stamp=_JSONISH)
def test_the_fast_parser_takes_a_number_exactly_when_orjson_does(price, stamp) -> None:
    payload = b'{"s":"NIFTY","p":%s,"t":%s}' % (price.encode(), stamp.encode())
    fast = TickBatch(8)
    n, _, status = parse_fast(payload, fast)
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        assert status == FALLBACK
        return
    if status == DONE:  # the fast path may still decline a valid document (1e400, 1.5 for t)
        assert n == 1 and type(doc["t"]) is int
        assert (fast.price[0], fast.ts[0]) == (float(doc["p"]), doc["t"])


def test_a_frame_larger_than_the_batch_resumes_where_it_stopped() -> None:
    payload = orjson.dumps([tick(100.0 + k, k) for k in range(10)])
    batch = TickBatch(4)
    buf = np.frombuffer(payload, np.uint8).copy()
    table = build_symbol_table(["NIFTY"])
    columns = (batch.idx, batch.price, batch.size, batch.ts)
    seen, position, status = [], 0, MORE
    while status == MORE:
        n, position, status = parse_json_ticks(buf, position, len(payload), *table, *columns)
        seen += batch.price[:n].tolist()
    assert status == DONE and seen == [100.0 + k for k in range(10)]


# -- the feed in the runtime -------------------------------------------------------------------


@run_async
async def test_ticks_flow_and_malformed_frames_are_dropped_and_counted(tmp_path) -> None:
    server = await TickServer().start()
    runtime = ws_runtime(server.port, tmp_path, max_frame_bytes=1024)
    task = await started(runtime, server)
    state = runtime.engine.state
    server.ticks(tick(100.0, 1))
    server.ticks(tick(100.5, 2), tick(101.0, 3, size=2.0))
    await until(lambda: state.book[0, layout.I_TICKS] == 3)
    server.send(b"{not json")
    server.send(b"[1, 2]")
    server.send(b'{"s": "NIFTY", "p": true, "t": 4}')
    server.send(b"\x00\x01", WSMsgType.BINARY)
    server.send(b"[" + b" " * 2000 + b"]")
    server.send(b'[{"s": "NIFTY", "p": 1', fin=False)
    server.send(b', "t": 9}]', WSMsgType.CONTINUATION)
    server.ticks(tick(99.0, 10, symbol="NOPE"))
    server.ticks(tick(-1.0, 11))
    server.ticks(tick(102.0, 12))
    await until(lambda: state.book[0, layout.I_TICKS] == 4)
    assert runtime.feed.rejected_frames() == {
        "bad_json": 1,
        "not_a_tick": 2,
        "bad_field": 1,
        "binary": 1,
        "oversized": 1,
        "fragmented": 1,
    }
    assert state.rejected_ticks() == {"unknown_symbol": 1, "non_positive": 1}
    assert state.book[0, layout.I_LTP] == 102.0  # the engine ran on
    await stopped(runtime, task)
    await server.close()


@run_async
async def test_subscribe_is_sent_on_every_connect_and_reconnects_resume_the_stream(
    tmp_path,
) -> None:
    server = await TickServer().start()
    subscribe = {"op": "subscribe", "symbols": ["NIFTY"]}
    runtime = ws_runtime(server.port, tmp_path, subscribe=subscribe)
    task = await started(runtime, server)
    state = runtime.engine.state
    await until(lambda: len(server.received) == 1)
    server.ticks(tick(100.0, 1))
    await until(lambda: state.book[0, layout.I_TICKS] == 1)
    assert state.halt_reason() is None
    port = server.port
    await server.close()  # the feed's server goes away
    await until(lambda: runtime.feed.state == "disconnected")
    assert state.halt_reason() == "feed"  # entries pause while the feed is down
    server = await TickServer().start(port)
    await until(lambda: server.clients and runtime.feed.state == "connected")
    await until(lambda: len(server.received) == 1)
    assert [orjson.loads(message) for message in server.received] == [subscribe]
    assert runtime.feed.reconnects >= 1
    server.ticks(tick(100.0, 0), tick(101.0, 2))  # an older tick is refused as stale
    await until(lambda: state.book[0, layout.I_TICKS] == 2)
    assert state.rejected_ticks() == {"stale_timestamp": 1}
    assert state.halt_reason() is None
    await stopped(runtime, task)
    await server.close()
    states = [
        line["state"]
        for line in map(orjson.loads, (tmp_path / "journal.jsonl").read_bytes().splitlines())
        if line.get("action") == "feed"
    ]
    assert states[:3] == ["connected", "disconnected", "connected"]


@run_async
async def test_a_stale_feed_pauses_entries_until_ticks_return(tmp_path) -> None:
    server = await TickServer().start()
    runtime = ws_runtime(server.port, tmp_path, stale_after_s=0.2)
    task = await started(runtime, server)
    state = runtime.engine.state
    server.ticks(tick(100.0, 1))
    await until(lambda: runtime.feed.state == "stale", timeout=3)
    assert state.halt_reason() == "feed" and not state.paused()
    server.ticks(tick(100.0, 2), tick(100.0, 3), tick(99.0, 4))
    await until(lambda: state.book[0, layout.I_TICKS] == 4)
    assert runtime.feed.state == "connected" and state.halt_reason() is None
    await stopped(runtime, task)
    await server.close()


@run_async
async def test_a_connection_the_client_itself_drops_is_reconnected(tmp_path) -> None:
    server = await TickServer().start()
    runtime = ws_runtime(server.port, tmp_path, max_frame_bytes=1024)
    task = await started(runtime, server)
    state = runtime.engine.state
    server.ticks(tick(100.0, 1))
    await until(lambda: state.book[0, layout.I_TICKS] == 1)
    first = server.clients[0]
    server.send(b"[" + b" " * 8000 + b"]")  # past 4x the limit: picows drops it, client-side
    await until(lambda: server.clients and server.clients[0] is not first, timeout=10)
    await until(lambda: runtime.feed.state == "connected")
    assert runtime.feed.reconnects >= 1 and not task.done()
    server.ticks(tick(100.5, 2))
    await until(lambda: state.book[0, layout.I_TICKS] == 2)
    await stopped(runtime, task)
    await server.close()


@run_async
async def test_a_frame_that_is_not_json_applies_none_of_its_ticks(tmp_path) -> None:
    server = await TickServer().start()
    runtime = ws_runtime(server.port, tmp_path)
    task = await started(runtime, server)
    state = runtime.engine.state
    many = orjson.dumps([tick(100.0 + (k % 7) * 0.05, k) for k in range(10_000)])
    server.send(many[: len(many) - 40])  # cut short
    with_nan = [orjson.dumps(tick(100.0, k)) for k in range(10_000)]
    with_nan[6000] = b'{"s":"NIFTY","p":NaN,"q":1,"t":%d}' % (T0 + 6000)
    server.send(b"[" + b",".join(with_nan) + b"]")
    server.send(orjson.dumps([tick(100.0, 20_000 + k) for k in range(10_000)]))
    await until(lambda: runtime.feed.frames == 3 and state.book[0, layout.I_TICKS] > 0)
    assert runtime.feed.rejected_frames() == {"bad_json": 2}
    assert state.book[0, layout.I_TICKS] == 10_000  # the valid frame, whole, and nothing else
    await stopped(runtime, task)
    await server.close()


@run_async
async def test_a_tick_dated_ahead_of_the_clock_is_refused_and_the_day_goes_on(tmp_path) -> None:
    server = await TickServer().start()
    runtime = ws_runtime(server.port, tmp_path, max_clock_skew_s=5.0)
    task = await started(runtime, server)
    state = runtime.engine.state
    now = time.time_ns()
    day = 86_400_000_000_000
    server.ticks({"s": "NIFTY", "p": 100.0, "t": now})
    await until(lambda: state.book[0, layout.I_TICKS] == 1)
    day_start = state.ints[state.ints[state.acct, layout.A_SESSION_ROW], layout.S_DAY_START]
    server.ticks({"s": "NIFTY", "p": 100.0, "t": now + day})
    server.ticks({"s": "NIFTY", "p": 100.0, "t": 2**63 - 1})
    server.ticks({"s": "UNKNOWN", "p": 100.0, "t": now + day})
    server.ticks({"s": "NIFTY", "p": 100.05, "t": now + 1})
    await until(lambda: state.book[0, layout.I_TICKS] == 2)
    assert state.rejected_ticks() == {"future_timestamp": 2, "unknown_symbol": 1}
    assert state.ints[0, layout.I_LAST_TS] == now + 1
    # the refused ticks did not move the trading day (which would reset its P&L)
    assert state.ints[state.ints[state.acct, layout.A_SESSION_ROW], layout.S_DAY_START] == day_start
    assert runtime.feed.state == "connected" and runtime.feed.reconnects == 0
    await stopped(runtime, task)
    await server.close()
