"""A fake Upstox on 127.0.0.1: the v2 REST API (FastAPI/uvicorn) and the v3 feed (picows).

Both servers run in one daemon thread with its own event loop; every public method is
thread-safe, so a test drives the fake from its own thread and loop. The REST routes live in
:mod:`tests.fakes.upstox_rest`, the feed server in :mod:`tests.fakes.upstox_feed`, and the
order book's fill rules in :mod:`tests.fakes.upstox_exchange`: orders fill against the fake's
last traded prices, and :meth:`FakeUpstox.fill` fills part of an order.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from pathlib import Path
from typing import Any

import uvicorn
from picows import WSMsgType

from engine.config_models import EngineConfig
from tests.fakes.upstox_exchange import execute, match, new_order, public
from tests.fakes.upstox_feed import UpstoxFeedServer, ltpc_frame
from tests.fakes.upstox_rest import build_app

#: environment variable the tests put the fake's token in
TOKEN_ENV = "OTRADE_TEST_UPSTOX_TOKEN"


class FakeUpstox:
    """Fake Upstox REST API and market-data feed; use as a context manager.

    Parameters
    ----------
    instruments : dict of str to str, optional
        Trading symbol by instrument key of the instruments the fake knows.
    token : str
        The access token it accepts.
    """

    def __init__(self, instruments: dict[str, str] | None = None, token: str = "fake-token-1"):
        self.instruments = dict(instruments or {"NSE_EQ|INE009A01021": "INFY"})
        self.access_token = token
        self.rest_url = ""
        #: every REST request: method, path, query, json, headers (lower-case names)
        self.requests: list[dict] = []
        #: the order requests (place, modify, cancel), shaped like ``requests``
        self.orders: list[dict] = []
        #: authorize calls answered
        self.authorizations = 0
        self.book: dict[str, dict] = {}
        self.ltp: dict[str, float] = {}
        self.positions: dict[tuple[str, str], dict] = {}
        self._lock = threading.RLock()
        self.feed = UpstoxFeedServer(self._lock, self.ltp)
        #: subscription messages received on the feed, decoded, with their frame type
        self.subscriptions = self.feed.subscriptions
        self._expired = False
        self._throttle = 0
        self._reject: tuple[str, str] | None = None
        self._delay = 0.0
        self._failures: dict[str, list] = {}
        #: order type -> messages refusing the next placements of that type (400)
        self._typed_rejects: dict[str, list[str]] = {}
        #: refuse SL and SL-M orders whose trigger the LTP has already reached
        self._refuse_crossed = False
        #: order books to answer the next ``retrieve-all`` calls with, oldest first
        self._stale_books: list[list[dict]] = []
        self._ids = itertools.count(250101000000001)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-upstox", daemon=True)
        self.app = build_app(self)

    @property
    def feed_connections(self) -> int:
        """Feed connections accepted."""
        return self.feed.connections

    @property
    def feed_refusals(self) -> int:
        """Feed handshakes refused (a used or unknown code)."""
        return self.feed.refusals

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> FakeUpstox:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstox did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._server is not None:
            self._call(self.feed.disconnect_all)
            self._server.should_exit = True
        self._thread.join(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._serve())
        loop.close()

    async def _serve(self) -> None:
        await self.feed.start("127.0.0.1", 0)
        # named TCP, so asyncio turns Nagle off on its connections: a plain socket() would
        # hold every answer ~40 ms for the client's delayed ACK
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.rest_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="error", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.005)
        self._ready.set()
        await serving
        await self.feed.stop()

    def _call(self, function, *args) -> Any:
        """Run ``function(*args)`` on the fake's loop and return its result."""
        assert self._loop is not None
        done = threading.Event()
        result: list = []

        def run() -> None:
            try:
                result.append(function(*args))
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(5):
            raise RuntimeError("fake upstox loop did not answer")
        return result[0] if result else None

    # -- test controls ---------------------------------------------------------------------------

    def expire_token(self) -> None:
        """Answer every REST call and authorize with 401 ``UDAPI100050`` until set_token."""
        with self._lock:
            self._expired = True

    def set_token(self, token: str) -> None:
        """Accept ``token`` (and only it) from now on."""
        with self._lock:
            self.access_token = token
            self._expired = False

    def throttle(self, n: int) -> None:
        """Answer the next ``n`` order calls with 429 ``UDAPI10005``."""
        with self._lock:
            self._throttle = n

    def reject_next(self, message: str, *, at: str = "place") -> None:
        """Refuse the next order: ``place`` answers 400, ``exchange`` rejects it after."""
        with self._lock:
            self._reject = (at, message)

    def fail(
        self, path: str, n: int, status: int = 500, message: str = "Something went wrong"
    ) -> None:
        """Answer the next ``n`` calls of ``path`` with an HTTP ``status`` error, doing nothing."""
        with self._lock:
            self._failures[path] = [n, status, "UDAPI100500", message]

    def reject_next_of(self, order_type: str, message: str) -> None:
        """Refuse (400) the next placement of ``order_type`` (``MARKET``, ``LIMIT``, ``SL``,
        ``SL-M``) with ``message``; other placements go through."""
        with self._lock:
            self._typed_rejects.setdefault(order_type, []).append(message)

    def refuse_crossed_stops(self, on: bool = True) -> None:
        """Refuse (400) SL and SL-M orders whose trigger the LTP has already reached, instead of
        triggering them on arrival."""
        with self._lock:
            self._refuse_crossed = on

    def book_snapshot(self) -> list[dict]:
        """Return the order book as ``retrieve-all`` answers it now."""
        with self._lock:
            return [public(order) for order in self.book.values()]

    def serve_book_next(self, entries: list[dict]) -> None:
        """Answer the next ``retrieve-all`` with ``entries`` (an older snapshot: a stale,
        out-of-order view of the orders) instead of the current book."""
        with self._lock:
            self._stale_books.append([dict(entry) for entry in entries])

    def delay_next_place(self, seconds: float) -> None:
        """Create the next order but answer its place call only after ``seconds``."""
        with self._lock:
            self._delay = seconds

    def order(self, order_id: str) -> dict:
        """Return a copy of an order book entry."""
        with self._lock:
            return dict(self.book[order_id])

    def set_ltp(self, instrument_key: str, price: float) -> None:
        """Set the last traded price (no frame is sent) and fill what it crosses."""
        with self._lock:
            self.ltp[instrument_key] = price
            self._match(instrument_key)

    def fill(self, order_id: str, qty: int, price: float | None = None) -> None:
        """Fill ``qty`` more units of an open order at ``price`` (default its limit or LTP)."""
        with self._lock:
            order = self.book[order_id]
            key = order["instrument_token"]
            price = price or order["price"] or self.ltp[key]
            execute(order, qty, price, self.positions, self.instruments)

    def push_ticks(self, instrument_key: str, prices: list[float], qty: int = 1) -> None:
        """Send one ``live_feed`` frame per price to the subscribers, filling after each."""
        for price in prices:
            self._call(self.feed.broadcast, ltpc_frame(instrument_key, price, qty), instrument_key)
            self.set_ltp(instrument_key, price)

    def send_raw(self, payload: bytes, kind: WSMsgType = WSMsgType.BINARY) -> None:
        """Send ``payload`` as one frame to every feed client."""
        self._call(self.feed.broadcast, payload, None, kind)

    def drop_feed(self) -> None:
        """Disconnect every feed client."""
        self._call(self.feed.disconnect_all)

    def feed_clients(self) -> int:
        """Return the number of connected feed clients."""
        return self._call(len, self.feed.clients)

    # -- the order book --------------------------------------------------------------------------

    def _match(self, key: str) -> None:
        ltp = self.ltp.get(key)
        if ltp is not None:
            match(self.book, ltp, key, self.positions, self.instruments)

    def _refusal(self, body: dict) -> str | None:
        typed = self._typed_rejects.get(body["order_type"])
        if typed:
            return typed.pop(0)
        if self._refuse_crossed and body["order_type"] in ("SL", "SL-M"):
            ltp = self.ltp.get(body["instrument_token"])
            trigger, buy = float(body["trigger_price"]), body["transaction_type"] == "BUY"
            if ltp is not None and (trigger <= ltp if buy else trigger >= ltp):
                return "Trigger price is not valid for the last traded price"
        return None

    def _create(self, body: dict) -> str:
        order_id = str(next(self._ids))
        key = body["instrument_token"]
        order = new_order(order_id, body, self.instruments[key])
        self.book[order_id] = order
        if self._reject and self._reject[0] == "exchange":
            order["status"] = "rejected"
            order["status_message"] = order["status_message_raw"] = self._reject[1]
            self._reject = None
        else:
            self._match(key)
        return order_id


def upstox_config(
    fake: FakeUpstox, journal_dir: Path, instruments: list[dict] | None = None, **broker: Any
) -> EngineConfig:
    """Return an engine config trading through ``fake`` (token in :data:`TOKEN_ENV`)."""
    from tests.conftest import make_config

    if instruments is None:
        instruments = [
            {"symbol": symbol, "tick_size": 0.05, "upstox": {"instrument_key": key}}
            for key, symbol in fake.instruments.items()
        ]
    return make_config(
        instruments=instruments,
        broker={"name": "upstox", "base_url": fake.rest_url, "access_token_env": TOKEN_ENV}
        | broker,
        feed={"name": "broker", "stale_after_s": 5.0},
        journal={"path": str(journal_dir / "journal.jsonl")},
        web={"enabled": False},
    )
