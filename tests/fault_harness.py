"""Helpers of the fault-injection tests: engines a test may kill at any moment, the invariants
checked after each restart, and a hand-written WebSocket tick server that can break anywhere."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import orjson

from engine.journal import TAG_PREFIX, read_journal
from tests.conftest import wait_until
from tests.fakes.kite import FakeKite
from tests.live import LiveEngine

#: the two instruments of the ws sessions, on a 0.05 tick
NIFTY = {"symbol": "NIFTY", "tick_size": 0.05}
BANKNIFTY = {"symbol": "BANKNIFTY", "tick_size": 0.05}
START_PRICES = {"NIFTY": 22000.0, "BANKNIFTY": 48000.0}
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Killable(LiveEngine):
    """A ``run.py`` process a test may SIGKILL at any moment, even while it starts.

    Parameters
    ----------
    tmp_path : Path
        As :class:`~tests.live.LiveEngine`.
    on_spawn : callable, optional
        Called with the process as soon as it exists (before it answers), so that a broker
        fault can kill it during its start-up.
    **kwargs
        As :class:`~tests.live.LiveEngine`.
    """

    def __init__(self, tmp_path, on_spawn: Callable | None = None, **kwargs) -> None:
        self._on_spawn = on_spawn
        super().__init__(tmp_path, **kwargs)

    def _answers(self) -> bool:
        if self._on_spawn is not None:
            self._on_spawn(self.process)
            self._on_spawn = None
        if self.process.poll() == -9:
            return True  # killed by the test before it answered
        return super()._answers()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self.http.close()


def journal_lines(live: LiveEngine) -> list[dict]:
    """Return the journal's lines as :func:`engine.journal.read_journal` reads them."""
    return list(read_journal(live.journal))


def journal_net(lines: list[dict]) -> dict[str, int]:
    """Return the signed units held per symbol after every fill line of the journal."""
    held: Counter[str] = Counter()
    for line in lines:
        if line["type"] == "fill":
            held[line["symbol"]] += line["qty"] if line["side"] == "buy" else -line["qty"]
    return {symbol: qty for symbol, qty in held.items() if qty}


def engine_net(live: LiveEngine) -> dict[str, int]:
    """Return the signed units per symbol that ``/api/positions`` shows."""
    return {
        p["symbol"]: p["qty"] if p["side"] == "long" else -p["qty"]
        for p in live.http.get("/api/positions").json()
    }


def broker_net(fake: FakeKite) -> dict[str, int]:
    """Return the signed units per tradingsymbol the fake Kite holds."""
    return {row["tradingsymbol"]: row["quantity"] for row in fake.positions() if row["quantity"]}


def kite_orders(fake: FakeKite) -> list[dict]:
    """Return every order in the fake Kite's book (the day's orders)."""
    return fake._call(lambda: [dict(order) for order in fake.book.orders.values()])


def kite_problems(live: LiveEngine, fake: FakeKite) -> list[str]:
    """Return what breaks the crash invariants between OTrade and the fake Kite, [] if nothing.

    Checked: the engine's, the broker's and the journal's positions are one; no tag reached
    the broker twice; every unit the broker filled of an order is booked in the journal once,
    under that order's id; every OTrade order resting at the broker protects a held position,
    and every held position is protected by exactly one resting stop and one target.
    """
    lines, orders = journal_lines(live), kite_orders(fake)
    problems = []
    engine, broker, journal = engine_net(live), broker_net(fake), journal_net(lines)
    if not engine == broker == journal:
        problems.append(f"positions: engine {engine}, broker {broker}, journal {journal}")
    tags = Counter(order["tag"] for order in orders if order["tag"])
    if twice := sorted(tag for tag, n in tags.items() if n > 1):
        problems.append(f"tags placed twice at the broker: {twice}")
    booked: Counter[str] = Counter()
    for line in lines:
        if line["type"] == "fill":
            booked[str(line.get("order_id"))] += line["qty"]
    filled = Counter({o["order_id"]: o["filled_quantity"] for o in orders if o["filled_quantity"]})
    if booked != filled:
        problems.append(f"fills: journal {dict(booked)} != broker {dict(filled)}")
    resting = [
        o
        for o in orders
        if o["status"] in ("OPEN", "TRIGGER PENDING") and (o["tag"] or "").startswith(TAG_PREFIX)
    ]
    for symbol, qty in broker.items():
        legs = sorted(
            o["order_type"]
            for o in resting
            if o["tradingsymbol"] == symbol
            and o["quantity"] == abs(qty)
            and o["transaction_type"] == ("SELL" if qty > 0 else "BUY")
        )
        if legs != ["LIMIT", "SL-M"]:
            problems.append(f"{symbol} {qty:+d} rests with {legs}, not one target and one stop")
    if strays := [o["tag"] for o in resting if o["tradingsymbol"] not in broker]:
        problems.append(f"orders resting for no position: {strays}")
    return problems


def settled(live: LiveEngine, fake: FakeKite, timeout: float = 15) -> None:
    """Wait until :func:`kite_problems` finds nothing; fail naming what it found."""
    try:
        wait_until(lambda: not kite_problems(live, fake), timeout, interval=0.05)
    except AssertionError:
        assert kite_problems(live, fake) == []


# -- a tick server that breaks where a test says ------------------------------------------------


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """Return one unmasked, final WebSocket frame (server to client) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65_536:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


class FeedServer:
    """A WebSocket tick server on 127.0.0.1, written on raw TCP so it can misbehave anywhere.

    It runs on its own loop in a daemon thread; every public method is thread-safe.
    ``mode`` says what a new connection gets: ``serve`` (the handshake, then whatever the test
    sends), ``hang`` (the request is read and never answered) or ``drop`` (the handshake, then
    closed at once: a reconnect storm).
    """

    def __init__(self) -> None:
        self.mode = "serve"
        #: TCP connections accepted, and handshakes answered
        self.accepted = 0
        self.handshakes = 0
        self.url = ""
        self._writers: list[asyncio.StreamWriter] = []
        #: the random walk's prices in ticks, carried on from one stream to the next
        self.prices = {symbol: round(price / 0.05) for symbol, price in START_PRICES.items()}
        self._task: asyncio.Task | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FeedServer:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _close(self) -> None:
        self._stop_task()
        self._drop_all()
        self._server.close()

    @property
    def clients(self) -> int:
        """Return the connections open after a handshake."""
        return self._run(_value(lambda: len(self._writers)))

    def send(self, payload: bytes) -> None:
        """Send ``payload`` as one text frame to every client."""
        self.loop.call_soon_threadsafe(self._write, ws_frame(payload))

    def send_cut(self, payload: bytes, keep: int) -> None:
        """Send the first ``keep`` bytes of a text frame holding ``payload``, then close."""
        data = ws_frame(payload)[:keep]
        self.loop.call_soon_threadsafe(lambda: (self._write(data), self._drop_all()))

    def trickle(self, payload: bytes, interval_s: float) -> None:
        """Send a text frame holding ``payload`` one byte every ``interval_s`` (slowloris)."""
        self._start_task(self._trickle(ws_frame(payload), interval_s))

    def stream(self, rng: random.Random, frames: int, then: Callable[[], None]) -> None:
        """Send ``frames`` frames of a random walk of NIFTY and BANKNIFTY ticks, one per ms,
        then call ``then`` (on the server's thread) and stop."""
        self._start_task(self._stream(rng, frames, then))

    def stop(self) -> None:
        """Stop what :meth:`stream` or :meth:`trickle` is sending."""
        self.loop.call_soon_threadsafe(self._stop_task)

    def drop_all(self) -> None:
        """Close every client connection."""
        self.loop.call_soon_threadsafe(self._drop_all)

    # -- on the server's loop --------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            if self.mode == "hang":
                await reader.read()  # until the client gives up
                return
            key = next(
                line.split(b":", 1)[1].strip()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.handshakes += 1
            if self.mode == "drop":
                return
            self._writers.append(writer)
            while await reader.read(65_536):
                pass  # the client's subscribe message and close frames: nothing to answer
        except (OSError, asyncio.IncompleteReadError, StopIteration):
            pass
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            writer.close()

    def _write(self, data: bytes) -> None:
        for writer in self._writers:
            writer.write(data)

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def _start_task(self, coro) -> None:
        def start() -> None:
            self._stop_task()
            self._task = self.loop.create_task(coro)

        self.loop.call_soon_threadsafe(start)

    def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _trickle(self, data: bytes, interval_s: float) -> None:
        for k in range(len(data)):
            self._write(data[k : k + 1])
            await asyncio.sleep(interval_s)

    async def _stream(self, rng: random.Random, frames: int, then: Callable[[], None]) -> None:
        prices = self.prices
        for _ in range(frames):
            ticks = []
            for _ in range(rng.randint(1, 4)):
                symbol = rng.choice(("NIFTY", "BANKNIFTY"))
                prices[symbol] += rng.choice((-2, -1, -1, 0, 1, 1, 2))
                price = round(prices[symbol] * 0.05, 2)
                ticks.append({"s": symbol, "p": price, "q": 1, "t": time.time_ns()})
            self._write(ws_frame(orjson.dumps(ticks)))
            await asyncio.sleep(0.001)
        then()


async def _value(get: Callable):
    return get()
