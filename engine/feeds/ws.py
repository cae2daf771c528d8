"""The ``ws`` feed: a picows client speaking the generic JSON tick protocol.

Each text frame holds one tick object ``{"s": "NIFTY", "p": 22150.25, "q": 75, "t": <ns>}`` or
an array of them. A frame is parsed straight into the columns of a preallocated
:class:`~engine.feeds.ticks.TickBatch` and handed to the engine as one kernel call, so the only
per-tick Python objects are the parser's own. Frames the protocol cannot carry (bad JSON,
binary, oversized, fragmented) are dropped whole, never partly applied, and counted by reason;
ticks of the wrong types are dropped one by one, and unknown symbols go through as instrument
``-1`` so the kernels count them with the other refused ticks.

The connection is kept up with jittered exponential backoff. The feed reports its state
(``connecting``, ``connected``, ``stale``, ``disconnected``) through a callback; the runtime
pauses entries whenever the state is not ``connected`` with ticks flowing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np
import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from engine.config_models import FeedConfig
from engine.feeds.csv_nb import build_symbol_table
from engine.feeds.frames import FRAME_REJECTS, decode_frame, fill_batch
from engine.feeds.json_nb import DONE, parse_json_ticks
from engine.feeds.ticks import TickBatch
from engine.feeds.upkeep import FeedUpkeep, backoff_s

log = logging.getLogger("otrade.feed")

#: bytes of the shortest tick object, ``{"s":"","p":0,"t":0}``, and its comma in an array
MIN_TICK_BYTES = 21

#: a delivery takes the filled batch, its tick count and the frame's receive stamp
Deliver = Callable[[TickBatch, int, int], None]


class WsFeed(FeedUpkeep):
    """Connect to ``feed.url`` and deliver every text frame's ticks as one batch.

    Parameters
    ----------
    cfg : FeedConfig
        ``url``, ``subscribe``, ``stale_after_s`` and ``max_frame_bytes``.
    index : dict of str to int
        Instrument row by symbol.
    deliver : Deliver
        Runs a batch through the engine (between frames, on the loop).
    on_state : callable
        Called with the new state name whenever it changes.
    """

    def __init__(
        self,
        cfg: FeedConfig,
        index: dict[str, int],
        deliver: Deliver,
        on_state: Callable[[str], None],
    ) -> None:
        self.cfg = cfg
        self.stale_after_s = cfg.stale_after_s
        self.index = index
        self.deliver = deliver
        self.on_state = on_state
        # room for every tick of the largest frame accepted, so that a frame is parsed whole
        # before any of it is applied: broken JSON at its end applies nothing
        self.batch = TickBatch(cfg.max_frame_bytes // MIN_TICK_BYTES + 1)
        symbols = sorted(index, key=index.__getitem__)
        self.symbol_table = build_symbol_table(symbols)
        self._columns = (self.batch.idx, self.batch.price, self.batch.size, self.batch.ts)
        self._frame_buf = np.zeros(cfg.max_frame_bytes, np.uint8)
        self._frame_view = memoryview(self._frame_buf)
        self.state = "connecting"
        #: frames dropped, by reason (``FRAME_REJECTS``)
        self.rejected = dict.fromkeys(FRAME_REJECTS, 0)
        self.frames = 0
        #: connection attempts after the first (a down server counts one per attempt)
        self.reconnects = 0
        #: ``time.monotonic()`` of the last frame that carried ticks, None before the first
        self.last_tick_at: float | None = None
        self._transport: WSTransport | None = None
        self._in_fragment = False
        self._stopping = False

    async def run(self) -> None:
        """Connect, stream and reconnect until ``stop()``."""
        attempt = 0
        watchdog = asyncio.create_task(self._watch_staleness())
        try:
            while not self._stopping:
                try:
                    transport, _ = await ws_connect(
                        lambda: _Listener(self),
                        self.cfg.url,
                        # frames up to 4x the limit are read and dropped (counted); beyond
                        # that picows closes the connection, which then reconnects
                        max_frame_size=self.cfg.max_frame_bytes * 4,
                        enable_auto_pong=True,
                    )
                except Exception as error:  # noqa: BLE001
                    # any failure to connect is retried: the feed's server may be restarting
                    log.debug("feed connect to %s failed: %s", self.cfg.url, error)
                else:
                    ticked = self.last_tick_at
                    try:
                        await transport.wait_disconnected()
                    except Exception as error:  # noqa: BLE001
                        # picows re-raises what ended the connection on its side (a frame
                        # past max_frame_size, a protocol error): it reconnects like any drop
                        log.debug("feed connection to %s ended: %r", self.cfg.url, error)
                    if self.last_tick_at != ticked:
                        # only a connection that carried ticks starts the back-off afresh: a
                        # server that accepts and drops at once is not retried 20 times a second
                        attempt = 0
                if self._stopping:
                    break
                self.reconnects += 1
                await asyncio.sleep(backoff_s(attempt))
                attempt += 1
        finally:
            watchdog.cancel()

    def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        self._stopping = True
        if self._transport is not None:
            self._transport.disconnect()

    # -- picows callbacks ------------------------------------------------------------------------

    def _connected(self, transport: WSTransport) -> None:
        self._transport = transport
        self._in_fragment = False
        if self._stopping:
            # stop() came while the handshake was in flight: run() waits on this connection
            transport.disconnect()
            return
        if self.cfg.subscribe is not None:
            transport.send(WSMsgType.TEXT, orjson.dumps(self.cfg.subscribe))
        self._set_state("connected")

    def _frame(self, transport: WSTransport, frame: WSFrame) -> None:
        recv_ns = time.monotonic_ns()
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            if not frame.fin:
                self._in_fragment = True
                self.rejected["fragmented"] += 1
            elif frame.payload_size > self.cfg.max_frame_bytes:
                self.rejected["oversized"] += 1
            else:
                self._ticks(frame.get_payload_as_memoryview(), recv_ns)
        elif kind == WSMsgType.CONTINUATION:
            if frame.fin:
                self._in_fragment = False
        elif kind == WSMsgType.BINARY:
            self.rejected["binary"] += 1
            self._in_fragment = not frame.fin
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def _ticks(self, payload: memoryview, recv_ns: int) -> None:
        self.frames += 1
        end = len(payload)
        # numba dispatches a read-only array (the frame's own memory) 2.5x slower than a
        # writable one, so frames are copied into one reused buffer first
        self._frame_view[:end] = payload
        n, _, status = parse_json_ticks(self._frame_buf, 0, end, *self.symbol_table, *self._columns)
        if status == DONE:
            self._deliver(n, recv_ns)
            return
        # orjson parses what the fast path declined and names what is wrong; a frame that is
        # not JSON applies nothing
        ticks = decode_frame(payload, self.rejected)
        if ticks is not None:
            n, _ = fill_batch(ticks, 0, self.index, self.batch, self.rejected)
            self._deliver(n, recv_ns)

    def _deliver(self, n: int, recv_ns: int) -> None:
        if n:
            self.last_tick_at = time.monotonic()
            if self.state != "connected":
                self._set_state("connected")
            self.deliver(self.batch, n, recv_ns)


class _Listener(WSListener):
    def __init__(self, feed: WsFeed) -> None:
        self.feed = feed

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.feed._connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.feed._frame(transport, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.feed._disconnected(transport)
