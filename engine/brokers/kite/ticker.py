"""Kite Connect's ticker over picows: binary ticks into the engine, text order updates out.

Every connect asks for the current access token (so a renewed one is picked up), then
subscribes the instrument tokens and sets their mode. Binary frames are decoded by
:func:`~engine.brokers.kite.ticker_nb.decode_ticks` straight into a preallocated
:class:`~engine.feeds.ticks.TickBatch`, with no Python object per tick; Kite's 1-byte
heartbeats keep the feed alive between ticks. Text frames carry order updates and errors.
Reconnects and states follow :class:`engine.feeds.ws.WsFeed`. A handshake refused with HTTP 403
means the token is expired or revoked: ``token_expired`` is alerted once per token and the feed
keeps retrying, since the broker may renew the token. The URL holds the token: never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

import numpy as np
import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from picows.common import WSHandshakeError

from engine.brokers.kite import ticker_nb
from engine.brokers.live_base import Alert, Deliver
from engine.feeds.ticks import FRAME_BATCH_TICKS, TickBatch
from engine.feeds.upkeep import FeedUpkeep, backoff_s

log = logging.getLogger("otrade.kite.ticker")

#: picows logger name suffix of this feed; picows logs the upgrade request (whose query holds
#: the access token) below DEBUG, so this logger is held at INFO to keep the token out of logs
PICOWS_LOGGER = "kite_ticker"
logging.getLogger(f"picows.{PICOWS_LOGGER}").setLevel(logging.INFO)

#: largest frame read; Kite's largest (3000 instruments in full mode) is about 560 KB
MAX_FRAME_BYTES = 4 << 20
#: first size of the reused frame buffer, which grows to the largest frame seen
FRAME_BUFFER_BYTES = 64 << 10
#: Kite's subscription modes
MODES = ("ltp", "quote", "full")
#: reasons a frame is dropped; the first two are decode_ticks' codes -1 and -2
KITE_REJECTS = ("truncated", "packet_length", "bad_text", "fragmented")


class KiteTicker(FeedUpkeep):
    """Kite's market data and order updates as a :class:`~engine.brokers.live_base.MarketFeed`.

    Parameters
    ----------
    url : str
        Ticker URL, ``wss://ws.kite.trade`` (a local fake's in tests).
    api_key : str
        The app's API key.
    access_token : callable
        Returns the current access token; called on every connect.
    tokens : dict of int to int
        Engine row by instrument token; ticks of other tokens go through with row -1.
    deliver : Deliver
        Runs a batch through the engine (between frames, on the loop).
    on_state : callable
        Called with the new state name whenever it changes.
    on_order : callable
        Called with the ``data`` of every order update.
    on_alert : Alert
        Told ``token_expired``, ``broker_error`` and ``stream`` problems.
    mode : str
        ``ltp``, ``quote`` (sizes come with the ticks) or ``full``.
    stale_after_s : float
        A connection with no frame (ticks or heartbeats) for this long is ``stale``.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        access_token: Callable[[], str],
        tokens: dict[int, int],
        deliver: Deliver,
        on_state: Callable[[str], None],
        on_order: Callable[[dict], None],
        on_alert: Alert,
        mode: str = "quote",
        stale_after_s: float = 5.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"kite ticker mode must be one of {MODES}, got {mode!r}")
        self.url = url
        self.api_key = api_key
        self.access_token = access_token
        self.deliver = deliver
        self.on_state = on_state
        self.on_order = on_order
        self.on_alert = on_alert
        self.mode = mode
        self.stale_after_s = stale_after_s
        self.token_keys, self.token_rows = ticker_nb.token_table(tokens)
        self.batch = TickBatch(FRAME_BATCH_TICKS)
        self._columns = (self.batch.idx, self.batch.price, self.batch.size, self.batch.ts)
        self._frame_buf = np.zeros(FRAME_BUFFER_BYTES, np.uint8)
        self._frame_view = memoryview(self._frame_buf)
        self.state = "connecting"
        #: frames dropped, by reason (``KITE_REJECTS``)
        self.rejected = dict.fromkeys(KITE_REJECTS, 0)
        #: binary frames with packets, heartbeats, and connection attempts after the first
        self.frames, self.heartbeats, self.reconnects = 0, 0, 0
        #: ``time.monotonic()`` of the last frame with ticks, None before the first
        self.last_tick_at: float | None = None
        #: ``time.monotonic()`` of the last frame of any kind (heartbeats too), or of the connect
        self.last_frame_at: float | None = None
        self._transport: WSTransport | None = None
        self._stopping = False
        self._stop_requested = asyncio.Event()
        # the token whose refusal was alerted, so one expiry alerts once however many retries
        self._refused_token: str | None = None
        self._outage_alerted = False

    def _alive_at(self) -> float | None:
        return self.last_frame_at  # Kite's heartbeats keep a quiet instrument's feed alive

    async def run(self) -> None:
        """Connect, subscribe and deliver ticks until :meth:`stop`, reconnecting with backoff."""
        attempt = 0
        watchdog = asyncio.create_task(self._watch_staleness())
        try:
            while not self._stopping:
                framed = self.frames + self.heartbeats
                # only a connection that carried frames (ticks or Kite's heartbeats) starts the
                # back-off afresh: a server that accepts and drops at once is not hammered
                if await self._session() and self.frames + self.heartbeats != framed:
                    attempt = 0
                if self._stopping:
                    break
                self.reconnects += 1
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff_s(attempt)):
                        await self._stop_requested.wait()
                attempt += 1
        finally:
            watchdog.cancel()

    def stop(self) -> None:
        """Close the connection and end :meth:`run`."""
        self._stopping = True
        self._stop_requested.set()
        if self._transport is not None:
            self._transport.disconnect()

    async def _session(self) -> bool:
        # one connection, from handshake to disconnect; True when the handshake succeeded
        try:
            token = self.access_token()
            query = urlencode({"api_key": self.api_key, "access_token": token})
        except Exception as error:  # noqa: BLE001 - a token source failing must not end the feed
            self._alert_outage(f"kite ticker: no access token: {error}")
            return False
        separator = "&" if "?" in self.url else "?"
        try:
            transport, _ = await ws_connect(
                lambda: _Listener(self),
                f"{self.url}{separator}{query}",
                max_frame_size=MAX_FRAME_BYTES,
                enable_auto_pong=True,
                logger_name=PICOWS_LOGGER,
            )
        except WSHandshakeError as error:
            self._refused(error, token)
            return False
        except Exception as error:  # noqa: BLE001 - any failure to connect is retried
            # some picows errors quote the whole URL, query and token included
            reason = str(error).replace(query, "<query>")
            log.debug("kite ticker connect to %s failed: %s", self.url, reason)
            self._alert_outage(f"kite ticker: cannot connect to {self.url}: {reason}")
            return False
        await transport.wait_disconnected()
        return True

    def _refused(self, error: WSHandshakeError, token: str) -> None:
        status = int(error.response.status) if error.response is not None else 0
        # Kite's error envelope carries a message; otherwise the body itself, else the status
        body = (error.raw_body or b"").strip()
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError:
            envelope = None
        if isinstance(envelope, dict) and isinstance(envelope.get("message"), str):
            message = envelope["message"]
        else:
            message = body.decode("utf-8", "replace") or f"HTTP {status}"
        if status == 403:
            if token != self._refused_token:
                self._refused_token = token
                self._alert("token_expired", message)
        else:
            self._alert_outage(f"kite ticker: handshake refused: {message}")

    def _alert_outage(self, message: str) -> None:
        # once per outage: a server down for minutes would otherwise alert every few seconds
        if not self._outage_alerted:
            self._outage_alerted = True
            self._alert("stream", message)

    def _alert(self, code: str, message: str) -> None:
        try:
            self.on_alert(code, message)
        except Exception:  # noqa: BLE001 - a failing sink must not take the feed down
            log.exception("kite ticker alert handler failed")

    # -- picows callbacks ------------------------------------------------------------------------

    def _connected(self, transport: WSTransport) -> None:
        if self._stopping:
            transport.disconnect()
            return
        self._transport = transport
        self._refused_token = None
        self._outage_alerted = False
        tokens = self.token_keys.tolist()
        if tokens:
            transport.send(WSMsgType.TEXT, orjson.dumps({"a": "subscribe", "v": tokens}))
            transport.send(WSMsgType.TEXT, orjson.dumps({"a": "mode", "v": [self.mode, tokens]}))
        self.last_frame_at = time.monotonic()
        self._set_state("connected")

    def _frame(self, transport: WSTransport, frame: WSFrame) -> None:
        recv_ns = time.monotonic_ns()
        self.last_frame_at = time.monotonic()
        kind = frame.msg_type
        if kind == WSMsgType.BINARY or kind == WSMsgType.TEXT:
            if not frame.fin:
                # Kite never fragments; a fragmented message is dropped whole (its
                # continuation frames fall through below)
                self.rejected["fragmented"] += 1
            elif kind == WSMsgType.BINARY:
                self._binary(frame, recv_ns)
            else:
                self._text(frame.get_payload_as_bytes())
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def _binary(self, frame: WSFrame, recv_ns: int) -> None:
        size = frame.payload_size
        self._set_state("connected")  # a heartbeat or ticks: the connection is alive
        if size < 2:
            self.heartbeats += 1
            return
        self.frames += 1
        if size > self._frame_buf.shape[0]:
            self._frame_buf = np.zeros(max(size, 2 * self._frame_buf.shape[0]), np.uint8)
            self._frame_view = memoryview(self._frame_buf)
        # numba dispatches a read-only array (the frame's own memory) much slower than a
        # writable one, so frames are copied into one reused buffer first
        self._frame_view[:size] = frame.get_payload_as_memoryview()
        wall_ns = time.time_ns()
        keys, rows, capacity = self.token_keys, self.token_rows, self.batch.capacity
        start = 0
        while True:
            n = ticker_nb.decode_ticks(
                self._frame_buf, size, keys, rows, *self._columns, wall_ns, start
            )
            if n < 0:
                self.rejected[KITE_REJECTS[-n - 1]] += 1
                return
            if n:
                self.last_tick_at = time.monotonic()
                try:
                    self.deliver(self.batch, n, recv_ns)
                except Exception as error:  # noqa: BLE001 - stream callbacks never crash the loop
                    log.exception("kite tick delivery failed")
                    self._alert("stream", f"kite ticks not delivered: {error!r}")
                    return
            if n < capacity:
                return
            # a frame larger than the batch runs as several kernel calls, in order
            start += n

    def _text(self, payload: bytes) -> None:
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.rejected["bad_text"] += 1
            return
        if type(message) is not dict:
            return
        kind, data = message.get("type"), message.get("data")
        if kind == "order" and isinstance(data, dict) and data:
            try:
                self.on_order(data)
            except Exception as error:  # noqa: BLE001 - stream callbacks never crash the loop
                log.exception("kite order update handler failed")
                self._alert("stream", f"kite order update not handled: {error!r}")
        elif kind == "error":
            self._alert("broker_error", str(data))


class _Listener(WSListener):
    def __init__(self, feed: KiteTicker) -> None:
        self.feed = feed

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.feed._connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.feed._frame(transport, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.feed._disconnected(transport)
