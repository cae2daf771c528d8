"""Upstox's v3 market-data feed: authorize, connect with picows, subscribe, decode protobuf ticks.

Every (re)connect starts with ``GET /v3/feed/market-data-feed/authorize``, whose answer
(``data.authorized_redirect_uri``) is a single-use ``wss`` URL. Once connected the feed sends
its subscription as a BINARY frame, ``{"guid", "method": "sub", "data": {"mode": "ltpc",
"instrumentKeys": [...]}}``, and the server answers with binary protobuf ``FeedResponse``
frames. Each frame is decoded by :func:`~engine.brokers.upstox.proto_nb.decode_feed_response`
straight into a preallocated :class:`~engine.feeds.ticks.TickBatch` (instrument row, ``ltp``,
``ltq``, the frame's arrival wall clock) and delivered as one batch; a key that is not
configured goes through as row -1, and a malformed frame is dropped and counted by reason.

The connection is kept up like :class:`engine.feeds.ws.WsFeed`: jittered exponential backoff,
states ``connecting``/``connected``/``stale``/``disconnected`` reported through ``on_state``,
``stale`` after ``stale_after_s`` without a tick. A failed authorize (an expired token among
them, which the broker has already alerted) is retried with the same backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import numpy as np
import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from engine.brokers.live_base import Alert, BrokerError, Deliver, TokenExpired
from engine.brokers.upstox.proto_nb import (
    DECODE_FULL,
    DECODE_OK,
    PROTO_REJECTS,
    decode_feed_response,
    reject_reason,
)
from engine.feeds.csv_nb import build_symbol_table
from engine.feeds.ticks import TickBatch
from engine.feeds.upkeep import FeedUpkeep, backoff_s

__all__ = ["FEED_REJECTS", "UpstoxFeed"]

log = logging.getLogger("otrade.upstox.feed")

#: rows of the tick batch at start; a frame carrying more ticks grows it
BATCH_TICKS = 1024
#: reasons a frame is dropped: the protobuf ones plus what the protocol never sends
FEED_REJECTS: tuple[str, ...] = (*PROTO_REJECTS, "text", "oversized", "fragmented")


class UpstoxFeed(FeedUpkeep):
    """Stream Upstox ``ltpc`` ticks of the configured instruments into the engine.

    Parameters
    ----------
    authorize : callable
        Coroutine function returning a fresh single-use feed URL (the broker's authorize call).
    keys : dict of str to str
        Instrument key by configured symbol.
    index : dict of str to int
        Engine row by configured symbol; only these symbols are subscribed.
    deliver : Deliver
        Runs a batch through the engine (between frames, on the loop).
    on_state : callable
        Called with the new state name whenever it changes.
    on_alert : Alert
        Told ``stream`` when authorizing fails for another reason than an expired token, or
        when handling a frame raised.
    stale_after_s : float
        Seconds without a tick after which the feed is ``stale``.
    max_frame_bytes : int
        Largest frame decoded; larger ones are dropped and counted.
    mode : str
        Subscription mode; ``ltpc`` carries everything the engine uses.
    """

    def __init__(
        self,
        authorize: Callable[[], Awaitable[str]],
        keys: dict[str, str],
        index: dict[str, int],
        deliver: Deliver,
        on_state: Callable[[str], None],
        on_alert: Alert,
        *,
        stale_after_s: float = 5.0,
        max_frame_bytes: int = 1_048_576,
        mode: str = "ltpc",
    ) -> None:
        self.authorize = authorize
        self.deliver = deliver
        self.on_state = on_state
        self.on_alert = on_alert
        self.stale_after_s = stale_after_s
        self.max_frame_bytes = max_frame_bytes
        self.mode = mode
        subscribed = [symbol for symbol in index if symbol in keys]
        #: instrument keys sent in the subscription, in the table's order
        self.instrument_keys = [keys[symbol] for symbol in subscribed]
        self._table = build_symbol_table(self.instrument_keys)
        self._rows = np.array([index[symbol] for symbol in subscribed], np.int64)
        self._grow(BATCH_TICKS)
        self._frame_buf = np.zeros(max_frame_bytes, np.uint8)
        self._frame_view = memoryview(self._frame_buf)
        self.state = "connecting"
        #: frames dropped, by reason (``FEED_REJECTS``)
        self.rejected = dict.fromkeys(FEED_REJECTS, 0)
        self.frames = 0
        #: connection attempts after the first
        self.reconnects = 0
        #: successful authorize calls (one per connection attempt)
        self.authorizations = 0
        #: frames whose handling raised (alerted once per connection)
        self.errors = 0
        #: ``time.monotonic()`` of the last frame that carried ticks, None before the first
        self.last_tick_at: float | None = None
        self._transport: WSTransport | None = None
        self._alerted_error = False
        self._stopping = False

    def _grow(self, rows: int) -> None:
        # the batch and its side columns are only ever replaced, between frames
        self.batch = TickBatch(rows)
        #: ``ltt`` (ms since the epoch) and ``cp`` of the batch's rows, for diagnostics
        self.ltt = np.zeros(rows, np.int64)
        self.cp = np.zeros(rows, np.float64)
        self._columns = (
            self.batch.idx,
            self.batch.price,
            self.batch.size,
            self.batch.ts,
            self.ltt,
            self.cp,
        )

    def subscription(self) -> bytes:
        """Return the subscription message sent (as a binary frame) after every connect."""
        request = {
            "guid": str(uuid.uuid4()),
            "method": "sub",
            "data": {"mode": self.mode, "instrumentKeys": self.instrument_keys},
        }
        return orjson.dumps(request)

    async def run(self) -> None:
        """Authorize, connect, stream and reconnect until ``stop()``."""
        attempt = 0
        failing = False
        watchdog = asyncio.create_task(self._watch_staleness())
        try:
            while not self._stopping:
                try:
                    url = await self.authorize()
                    self.authorizations += 1
                    transport, _ = await ws_connect(
                        lambda: _Listener(self),
                        url,
                        # frames up to 4x the limit are read and dropped (counted); beyond
                        # that picows closes the connection, which then reconnects
                        max_frame_size=self.max_frame_bytes * 4,
                        enable_auto_pong=True,
                    )
                except TokenExpired:
                    pass  # the broker alerted it; renewing the token is the runtime's call
                except Exception as error:  # noqa: BLE001
                    # anything else is retried too: the broker may be restarting its feed
                    log.debug("upstox feed connect failed: %s", error)
                    if not failing:
                        self.on_alert("stream", _message(error))
                    failing = True
                else:
                    attempt = 0
                    failing = False
                    await transport.wait_disconnected()
                if self._stopping:
                    break
                self._set_state("disconnected")
                self.reconnects += 1
                await asyncio.sleep(backoff_s(attempt))
                attempt += 1
        finally:
            watchdog.cancel()
            self._set_state("disconnected")

    def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        self._stopping = True
        if self._transport is not None:
            self._transport.disconnect()

    # -- picows callbacks ------------------------------------------------------------------------

    def _connected(self, transport: WSTransport) -> None:
        self._transport = transport
        if self._stopping:  # stop() came while this connection was being opened
            transport.disconnect()
            return
        self._alerted_error = False
        transport.send(WSMsgType.BINARY, self.subscription())
        self._set_state("connected")

    def _frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.BINARY:
            if not frame.fin:
                self.rejected["fragmented"] += 1
            elif frame.payload_size > self.max_frame_bytes:
                self.rejected["oversized"] += 1
            else:
                self._ticks(frame)
        elif kind == WSMsgType.TEXT:
            self.rejected["text"] += 1
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def _ticks(self, frame: WSFrame) -> None:
        recv_ns = time.monotonic_ns()
        stamp_ns = time.time_ns()
        self.frames += 1
        end = frame.payload_size
        # numba dispatches a read-only array (the frame's own memory) slower than a writable
        # one, so frames are copied into one reused buffer first
        self._frame_view[:end] = frame.get_payload_as_memoryview()
        n, status = self._decode(end, stamp_ns)
        if status == DECODE_FULL:
            self._grow(max(n, 2 * self.batch.capacity))
            n, status = self._decode(end, stamp_ns)
        if status != DECODE_OK:
            self.rejected[reject_reason(status)] += 1
            return
        if n:
            self.last_tick_at = time.monotonic()
            if self.state != "connected":
                self._set_state("connected")
            self.batch.n = n
            self.deliver(self.batch, n, recv_ns)

    def _decode(self, end: int, stamp_ns: int) -> tuple[int, int]:
        return decode_feed_response(
            self._frame_buf, end, *self._table, self._rows, *self._columns, stamp_ns
        )

    def _failed(self, error: Exception) -> None:
        self.errors += 1
        log.exception("upstox feed frame failed")
        if not self._alerted_error:
            self._alerted_error = True
            self.on_alert("stream", _message(error))


def _message(error: Exception) -> str:
    # the broker's own words when it answered, else what went wrong locally
    if isinstance(error, BrokerError):
        return error.message
    return f"{type(error).__name__}: {error}"


class _Listener(WSListener):
    # every callback catches: an exception must neither reach picows nor the loop
    def __init__(self, feed: UpstoxFeed) -> None:
        self.feed = feed

    def on_ws_connected(self, transport: WSTransport) -> None:
        try:
            self.feed._connected(transport)
        except Exception as error:  # noqa: BLE001
            self.feed._failed(error)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        try:
            self.feed._frame(transport, frame)
        except Exception as error:  # noqa: BLE001
            self.feed._failed(error)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        try:
            self.feed._disconnected(transport)
        except Exception as error:  # noqa: BLE001
            self.feed._failed(error)
