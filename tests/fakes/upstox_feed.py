"""The fake Upstox v3 market-data feed: a picows server on 127.0.0.1, and its frames.

A client connects to ``ws://127.0.0.1:{port}/v3/feed/market-data-feed?code=...`` with a code
from :meth:`UpstoxFeedServer.grant` (the fake's authorize answer); each code works once, a used
or unknown one is refused with HTTP 403 at the handshake. Every connection opens with a
``market_info`` frame, as Upstox's does; a subscription (``{"method": "sub", "data":
{"instrumentKeys": [...]}}``, in a binary or text frame) is recorded and answered with an
``initial_feed`` snapshot of the keys' known last traded prices. Frames are ``FeedResponse``
messages encoded with the official SDK's generated classes.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import orjson
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from upstox_client.feeder.proto import MarketDataFeedV3_pb2 as pb

#: path of the feed socket (the authorize answer adds a single-use ``code``)
FEED_PATH = "/v3/feed/market-data-feed"


def ltpc_frame(instrument_key: str, price: float, qty: int) -> bytes:
    """Return a ``live_feed`` frame carrying one LTPC of ``instrument_key``, stamped now.

    Parameters
    ----------
    instrument_key : str
        The feed's map key.
    price : float
        Last traded price, also sent as the previous close.
    qty : int
        Last traded quantity.

    Returns
    -------
    bytes
        The serialized ``FeedResponse``.
    """
    now_ms = int(time.time() * 1000)
    message = pb.FeedResponse(type=pb.live_feed, currentTs=now_ms)
    ltpc = message.feeds[instrument_key].ltpc
    ltpc.ltp, ltpc.ltt, ltpc.ltq, ltpc.cp = price, now_ms, qty, price
    return message.SerializeToString()


class UpstoxFeedServer:
    """The feed's picows server; every method but :meth:`grant` runs on the fake's loop.

    Parameters
    ----------
    lock : threading.RLock
        The fake's lock, guarding the codes, the counters and ``ltp``.
    ltp : dict of str to float
        The fake's last traded prices by instrument key, read for the initial snapshot.
    """

    def __init__(self, lock: threading.RLock, ltp: dict[str, float]) -> None:
        self.port = 0
        #: subscription messages received, decoded, with their frame type
        self.subscriptions: list[dict] = []
        #: connections accepted, and handshakes refused
        self.connections = 0
        self.refusals = 0
        #: connected clients and the instrument keys each subscribed to
        self.clients: dict[WSTransport, set[str]] = {}
        self._lock = lock
        self._ltp = ltp
        self._codes: dict[str, bool] = {}
        self._server = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; return the bound port."""
        self._server = await ws_create_server(self._accept, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def grant(self) -> str:
        """Return a single-use feed URL (thread-safe)."""
        code = uuid.uuid4().hex
        with self._lock:
            self._codes[code] = False
        return f"ws://127.0.0.1:{self.port}{FEED_PATH}?code={code}"

    def broadcast(self, payload: bytes, key: str | None, kind=WSMsgType.BINARY) -> None:
        """Send ``payload`` to the subscribers of ``key`` (every client when None)."""
        for transport, keys in self.clients.items():
            if key is None or key in keys:
                transport.send(kind, payload)

    def disconnect_all(self) -> None:
        """Disconnect every client."""
        for transport in list(self.clients):
            transport.disconnect()

    def _accept(self, request: WSUpgradeRequest):
        target = urlsplit(request.path.decode())
        code = (parse_qs(target.query).get("code") or [""])[0]
        with self._lock:
            usable = target.path == FEED_PATH and self._codes.get(code) is False
            if usable:
                self._codes[code] = True
                self.connections += 1
            else:
                self.refusals += 1
        if not usable:
            refusal = WSUpgradeResponse.create_error_response(403, b"authorization code used")
            return WSUpgradeResponseWithListener(refusal, None)
        return _FeedListener(self)

    def _subscribed(self, transport: WSTransport, frame: WSFrame) -> None:
        message = {"frame": frame.msg_type.name}
        with contextlib.suppress(orjson.JSONDecodeError):
            message.update(orjson.loads(frame.get_payload_as_bytes()))
        with self._lock:
            self.subscriptions.append(message)
            keys = message.get("data", {}).get("instrumentKeys", [])
            if message.get("method") == "sub":
                self.clients[transport].update(keys)
            snapshot = pb.FeedResponse(type=pb.initial_feed, currentTs=int(time.time() * 1000))
            for key in keys:
                if key in self._ltp:
                    snapshot.feeds[key].ltpc.ltp = snapshot.feeds[key].ltpc.cp = self._ltp[key]
        transport.send(WSMsgType.BINARY, snapshot.SerializeToString())


class _FeedListener(WSListener):
    def __init__(self, server: UpstoxFeedServer) -> None:
        self.server = server

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.server.clients[transport] = set()
        # Upstox opens every connection with the market status
        info = pb.FeedResponse(type=pb.market_info, currentTs=int(time.time() * 1000))
        info.marketInfo.segmentStatus["NSE_EQ"] = pb.NORMAL_OPEN
        transport.send(WSMsgType.BINARY, info.SerializeToString())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in (WSMsgType.BINARY, WSMsgType.TEXT):
            self.server._subscribed(transport, frame)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.server.clients.pop(transport, None)
