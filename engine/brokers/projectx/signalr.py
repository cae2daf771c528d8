"""A small SignalR client: the JSON hub protocol over one picows WebSocket.

ProjectX's hubs speak SignalR's JSON protocol over a WebSocket reached directly: negotiation is
skipped and the JWT travels in the ``access_token`` query parameter.

- After the upgrade the client sends the handshake ``{"protocol":"json","version":1}`` and the
  server answers ``{}`` (or ``{"error": ...}``).
- Every message is one JSON record ending with the record separator 0x1e. A WebSocket message
  may carry several records and one record may span several messages (or fragments), so
  records are cut from a byte buffer, never taken frame by frame.
- Type 1 is an invocation ``{"type":1,"target","arguments"[,"invocationId"]}``, 3 the
  completion of one the client invoked with an id, 6 a ping and 7 a close
  ``{"type":7,"error","allowReconnect"}``.

Both sides ping every :data:`PING_INTERVAL_S`; a connection that hears nothing for
:data:`SERVER_TIMEOUT_S` (SignalR's default server timeout) is dropped. The connection comes
back with jittered exponential backoff, and after every handshake the owner's
:meth:`HubHandler.hub_open` runs again so it can resubscribe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import orjson
from picows import WSFrame, WSInvalidStatusError, WSListener, WSMsgType, WSTransport, ws_connect

from engine.feeds.upkeep import backoff_s

log = logging.getLogger("otrade.projectx.signalr")

#: ends every SignalR JSON record
RECORD_SEPARATOR = b"\x1e"
#: the handshake request of the JSON protocol, version 1
HANDSHAKE = b'{"protocol":"json","version":1}\x1e'
#: message types of the hub protocol
INVOCATION, STREAM_ITEM, COMPLETION, STREAM_INVOCATION, CANCEL_INVOCATION, PING, CLOSE = range(1, 8)
#: a ping record
PING_RECORD = b'{"type":6}\x1e'
#: a close record (the client's goodbye)
CLOSE_RECORD = b'{"type":7}\x1e'
#: seconds between the client's pings (SignalR's keep-alive interval)
PING_INTERVAL_S = 15.0
#: seconds without any record after which the connection is considered dead
SERVER_TIMEOUT_S = 30.0
#: largest record accepted, bytes; a longer one is a protocol error and drops the connection
MAX_RECORD_BYTES = 4 * 1024 * 1024


class RecordBuffer:
    """Cut a byte stream into 0x1e-terminated records, whatever the frame boundaries.

    Parameters
    ----------
    limit : int
        Largest record accepted, bytes.
    """

    def __init__(self, limit: int = MAX_RECORD_BYTES) -> None:
        self.limit = limit
        self._partial = bytearray()

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """Return the records completed by ``data``, in order, without their separators.

        Raises
        ------
        ValueError
            When an unfinished record grows beyond the limit; the buffer is then emptied.
        """
        if self._partial:
            self._partial += data
            chunk = bytes(self._partial)
        else:
            chunk = bytes(data)
        *records, rest = chunk.split(RECORD_SEPARATOR)
        if len(rest) > self.limit:
            self._partial.clear()
            raise ValueError(f"record longer than {self.limit} bytes")
        self._partial[:] = rest
        return records

    def clear(self) -> None:
        """Forget an unfinished record (the connection it came from is gone)."""
        self._partial.clear()

    @property
    def pending(self) -> int:
        """Bytes of the unfinished record."""
        return len(self._partial)


class HubHandler:
    """What a hub's owner is told; the methods run on the loop and must not block.

    Every method has a do-nothing default so an owner implements only what it needs.
    """

    def hub_open(self, hub: HubConnection) -> None:
        """Handle a finished handshake: subscribe here (it runs after every reconnect)."""

    def hub_invocation(self, target: str, arguments: list, recv_ns: int) -> None:
        """Handle one server invocation; ``recv_ns`` is the frame's ``monotonic_ns``."""

    def hub_frame_done(self, recv_ns: int) -> None:
        """Handle the end of one WebSocket frame's records (flush batched work here)."""

    def hub_closed(self) -> None:
        """Handle the loss of the connection (a reconnect follows unless stopped)."""

    def hub_error(self, message: str) -> None:
        """Report a hub error: a refused handshake, a failed invocation, a close with error."""

    def hub_unauthorized(self, message: str) -> None:
        """Report that the server refused the WebSocket upgrade with HTTP 401."""


class HubConnection:
    """One SignalR hub over picows: handshake, records, pings, invocations, reconnects.

    Parameters
    ----------
    name : str
        Hub name for messages (``market``, ``user``).
    url : callable
        Returns the ``ws(s)://`` URL to connect to, token included; called before every
        connect so a renewed token is used.
    handler : HubHandler
        Receives the hub's events.
    ping_interval_s : float, optional
        Seconds between pings. Default :data:`PING_INTERVAL_S`.
    server_timeout_s : float, optional
        Seconds of silence after which the connection is dropped. Default
        :data:`SERVER_TIMEOUT_S`.
    """

    def __init__(
        self,
        name: str,
        url: Callable[[], str],
        handler: HubHandler,
        *,
        ping_interval_s: float = PING_INTERVAL_S,
        server_timeout_s: float = SERVER_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.url = url
        self.handler = handler
        self.ping_interval_s = ping_interval_s
        self.server_timeout_s = server_timeout_s
        #: ``connecting``, ``connected`` (handshake done) or ``disconnected``
        self.state = "connecting"
        #: handshakes completed
        self.connections = 0
        #: connection attempts after the first
        self.reconnects = 0
        #: server pings received
        self.pings = 0
        #: records that were not JSON objects
        self.malformed = 0
        #: the URL of the current connection (None while disconnected)
        self.connected_url: str | None = None
        self._buffer = RecordBuffer()
        self._transport: WSTransport | None = None
        self._open = False
        self._last_heard = time.monotonic()
        self._next_id = 0
        self._pending: dict[str, str] = {}
        self._stopping = False

    async def run(self) -> None:
        """Connect, handshake and dispatch until :meth:`stop`, reconnecting with backoff."""
        attempt = 0
        keepalive = asyncio.create_task(self._keepalive())
        try:
            while not self._stopping:
                url = self.url()
                try:
                    transport, _ = await ws_connect(
                        lambda: _Listener(self), url, enable_auto_pong=True
                    )
                except WSInvalidStatusError as error:
                    status = int(error.response.status) if error.response is not None else 0
                    # a token renewed since this attempt began is simply tried next time
                    if status == 401 and url == self.url():
                        self.handler.hub_unauthorized(f"{self.name} hub: HTTP 401 Unauthorized")
                    log.debug("%s hub refused the upgrade: HTTP %s", self.name, status)
                except Exception as error:  # noqa: BLE001
                    # any failure to connect is retried: the gateway may be restarting. Only
                    # the error's type is logged: its text may quote the URL, token included
                    log.debug("%s hub connect failed: %s", self.name, type(error).__name__)
                else:
                    self.connected_url = url
                    handshakes = self.connections
                    await transport.wait_disconnected()
                    if self.connections > handshakes:
                        attempt = 0
                if self._stopping:
                    break
                self.reconnects += 1
                await asyncio.sleep(backoff_s(attempt))
                attempt += 1
        finally:
            keepalive.cancel()

    def stop(self) -> None:
        """Say goodbye, close the connection and stop reconnecting."""
        self._stopping = True
        if self._transport is not None:
            if self._open:
                self._transport.send(WSMsgType.TEXT, CLOSE_RECORD)
            self._transport.disconnect()

    def disconnect(self) -> None:
        """Drop the current connection; :meth:`run` reconnects (with the URL's new token)."""
        if self._transport is not None:
            self._transport.disconnect()

    def send(self, target: str, arguments: list) -> bool:
        """Invoke ``target`` on the server; a failure comes back through ``hub_error``.

        Parameters
        ----------
        target : str
            The hub method, e.g. ``SubscribeContractTrades``.
        arguments : list
            Its arguments, JSON-serialisable.

        Returns
        -------
        bool
            False when the hub is not connected (nothing was sent).
        """
        if self._transport is None or not self._open:
            return False
        self._next_id += 1
        invocation_id = str(self._next_id)
        self._pending[invocation_id] = target
        message = {
            "type": INVOCATION,
            "invocationId": invocation_id,
            "target": target,
            "arguments": arguments,
        }
        self._transport.send(WSMsgType.TEXT, orjson.dumps(message) + RECORD_SEPARATOR)
        return True

    async def _keepalive(self) -> None:
        step = min(self.ping_interval_s, self.server_timeout_s) / 4
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(step)
            transport = self._transport
            if transport is None:
                continue
            now = time.monotonic()
            if now - self._last_heard > self.server_timeout_s:
                log.debug(
                    "%s hub silent for %.1f s, reconnecting", self.name, self.server_timeout_s
                )
                transport.disconnect()
            elif self._open and now - last_ping >= self.ping_interval_s:
                transport.send(WSMsgType.TEXT, PING_RECORD)
                last_ping = now

    # -- picows callbacks ------------------------------------------------------------------------

    def _connected(self, transport: WSTransport) -> None:
        self._transport = transport
        if self._stopping:
            # stop() came during the handshake: run() waits on this connection
            transport.disconnect()
            return
        self._open = False
        self._buffer.clear()
        self._pending.clear()
        self._last_heard = time.monotonic()
        transport.send(WSMsgType.TEXT, HANDSHAKE)

    def _disconnected(self, transport: WSTransport) -> None:
        if transport is not self._transport:
            # a late goodbye from a connection already replaced: the current one stays
            return
        self._transport = None
        self._open = False
        self.connected_url = None
        self._buffer.clear()
        if self.state != "disconnected":
            self.state = "disconnected"
            self._safely(self.handler.hub_closed)

    def _frame(self, transport: WSTransport, frame: WSFrame) -> None:
        recv_ns = time.monotonic_ns()
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if kind not in (WSMsgType.TEXT, WSMsgType.CONTINUATION, WSMsgType.BINARY):
            return
        self._last_heard = time.monotonic()
        try:
            records = self._buffer.feed(frame.get_payload_as_memoryview())
        except ValueError as error:
            self._safely(self.handler.hub_error, f"{self.name} hub: {error}")
            transport.disconnect()
            return
        for record in records:
            self._record(transport, record, recv_ns)
        if records:
            self._safely(self.handler.hub_frame_done, recv_ns)

    def _record(self, transport: WSTransport, record: bytes, recv_ns: int) -> None:
        try:
            message = orjson.loads(record)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            self.malformed += 1
            return
        if not self._open:
            self._handshake(transport, message)
            return
        kind = message.get("type")
        if kind == INVOCATION:
            arguments = message.get("arguments")
            self._safely(
                self.handler.hub_invocation,
                str(message.get("target")),
                arguments if isinstance(arguments, list) else [],
                recv_ns,
            )
        elif kind == COMPLETION:
            target = self._pending.pop(str(message.get("invocationId")), "?")
            if message.get("error"):
                self._safely(
                    self.handler.hub_error, f"{self.name} hub: {target}: {message['error']}"
                )
        elif kind == PING:
            self.pings += 1
            transport.send(WSMsgType.TEXT, PING_RECORD)
        elif kind == CLOSE:
            if message.get("error"):
                self._safely(self.handler.hub_error, f"{self.name} hub: {message['error']}")
            transport.disconnect()

    def _handshake(self, transport: WSTransport, message: dict) -> None:
        if message.get("error"):
            self._safely(self.handler.hub_error, f"{self.name} hub handshake: {message['error']}")
            transport.disconnect()
            return
        self._open = True
        self.connections += 1
        self.state = "connected"
        self._safely(self.handler.hub_open, self)

    def _safely(self, callback: Callable, *args: object) -> None:
        # an owner's bug must not kill the connection's callbacks (nor the loop): report it
        try:
            callback(*args)
        except Exception as error:  # noqa: BLE001
            log.exception("%s hub handler failed", self.name)
            if callback is not self.handler.hub_error:
                self._safely(self.handler.hub_error, f"{self.name} hub handler: {error!r}")


class _Listener(WSListener):
    def __init__(self, hub: HubConnection) -> None:
        self.hub = hub

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.hub._connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.hub._frame(transport, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.hub._disconnected(transport)
