"""A fake Kite ticker (picows) and builders of Kite's exact binary ticker packets.

The packet builders take the raw wire integers (prices already multiplied by the segment's
divisor: 100, or 1e7 for CDS and 1e4 for BCD/NCO tokens) and return a packet body as Kite sends
it; :func:`frame` joins bodies into one binary frame (u16 count, then u16 length + body per
packet, big-endian). Field names are pykiteconnect's tick keys. Layouts, in byte offsets:

- LTP (8): token 0, last_price 4
- quote (44): token, last_price, last_traded_quantity 8, average_traded_price 12,
  volume_traded 16, total_buy_quantity 20, total_sell_quantity 24, open 28, high 32, low 36,
  close 40
- full (184): quote + last_trade_time 44, oi 48, oi_day_high 52, oi_day_low 56,
  exchange_timestamp 60, then 10 depth entries of 12 bytes from 64 (5 buy, 5 sell): quantity
  u32, price u32, orders u16, 2 bytes padding
- index quote (28): token, last_price, high 8, low 12, open 16, close 20, change 24 (signed)
- index full (32): index quote + exchange_timestamp 28

:class:`KiteTickerServer` accepts ``/?api_key=..&access_token=..`` connections and refuses any
other key or token with HTTP 403 at the handshake, as Kite does; it records the clients' text
messages and the subscriptions they make, and sends ticks, text and heartbeats to every client.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
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

#: field order of a quote packet after the token (all u32)
QUOTE_FIELDS = (
    "last_price",
    "last_traded_quantity",
    "average_traded_price",
    "volume_traded",
    "total_buy_quantity",
    "total_sell_quantity",
    "open",
    "high",
    "low",
    "close",
)
#: fields a full packet adds after the quote fields (all u32), before the depth
FULL_FIELDS = ("last_trade_time", "oi", "oi_day_high", "oi_day_low", "exchange_timestamp")
#: field order of an index quote packet after the token (``change`` is signed)
INDEX_QUOTE_FIELDS = ("last_price", "high", "low", "open", "close", "change")
#: depth entries of a full packet: 5 buy levels, then 5 sell levels
DEPTH_ENTRIES = 10
#: Kite's error envelope for a refused ticker handshake
FORBIDDEN_BODY = orjson.dumps(
    {
        "status": "error",
        "message": "Invalid `api_key` or `access_token`.",
        "error_type": "TokenException",
    }
)


def _fields(names: Sequence[str], given: dict[str, int], kind: str) -> list[int]:
    unknown = set(given) - set(names)
    if unknown:
        raise TypeError(f"{kind} packet has no field {sorted(unknown)}")
    return [int(given.get(name, 0)) for name in names]


def ltp_packet(token: int, last_price_int: int) -> bytes:
    """Return an LTP packet (8 bytes): the token and the raw last price."""
    return struct.pack(">II", token, last_price_int)


def quote_packet(token: int, **fields: int) -> bytes:
    """Return a quote packet (44 bytes); ``fields`` are ``QUOTE_FIELDS`` (missing ones 0)."""
    return struct.pack(">11I", token, *_fields(QUOTE_FIELDS, fields, "quote"))


def full_packet(token: int, depth: Iterable[tuple[int, int, int]] = (), **fields: int) -> bytes:
    """Return a full packet (184 bytes).

    Parameters
    ----------
    token : int
        Instrument token.
    depth : iterable of (quantity, raw price, orders)
        Up to 10 entries, 5 buy levels then 5 sell levels; missing entries are zeros.
    **fields : int
        ``QUOTE_FIELDS`` and ``FULL_FIELDS`` (missing ones 0).
    """
    values = _fields(QUOTE_FIELDS + FULL_FIELDS, fields, "full")
    entries = list(depth)
    if len(entries) > DEPTH_ENTRIES:
        raise ValueError(f"a full packet holds {DEPTH_ENTRIES} depth entries, got {len(entries)}")
    entries += [(0, 0, 0)] * (DEPTH_ENTRIES - len(entries))
    body = struct.pack(">16I", token, *values)
    body += b"".join(struct.pack(">IIHxx", q, p, o) for q, p, o in entries)
    return body


def index_quote_packet(token: int, **fields: int) -> bytes:
    """Return an index quote packet (28 bytes); ``fields`` are ``INDEX_QUOTE_FIELDS``."""
    return struct.pack(">6Ii", token, *_fields(INDEX_QUOTE_FIELDS, fields, "index quote"))


def index_full_packet(token: int, exchange_timestamp: int = 0, **fields: int) -> bytes:
    """Return an index full packet (32 bytes): an index quote and the exchange timestamp."""
    return index_quote_packet(token, **fields) + struct.pack(">I", exchange_timestamp)


def frame(packets: Sequence[bytes]) -> bytes:
    """Return one binary ticker frame holding ``packets``."""
    parts = [struct.pack(">H", len(packets))]
    for packet in packets:
        parts.append(struct.pack(">H", len(packet)))
        parts.append(packet)
    return b"".join(parts)


class KiteTickerServer:
    """A picows Kite ticker on 127.0.0.1, started from whichever asyncio loop runs the test.

    Parameters
    ----------
    api_key : str
        The key a client must send.
    access_token : str
        The token a client must send; change the attribute to renew or revoke it.
    """

    def __init__(self, api_key: str, access_token: str) -> None:
        self.api_key = api_key
        self.access_token = access_token
        #: token -> mode over the connected clients (Kite's default mode on subscribe is quote)
        self.subscriptions: dict[int, str] = {}
        #: every text message received, parsed
        self.messages: list[dict] = []
        #: connections accepted so far, and handshakes refused with 403
        self.connections = 0
        self.refused = 0
        self.clients: list[WSTransport] = []
        #: close every connection right after its handshake (a server in trouble)
        self.drop_on_connect = False
        self._per_client: dict[WSTransport, dict[int, str]] = {}
        self._server = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; return the bound port."""
        self._server = await ws_create_server(self._accept, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Disconnect every client and stop listening."""
        self.disconnect_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def send_ticks(self, packets: Sequence[bytes]) -> None:
        """Send one binary frame holding ``packets`` to every client."""
        self.send_binary(frame(packets))

    def send_binary(self, payload: bytes) -> None:
        """Send raw bytes as one binary frame to every client (malformed frames included)."""
        for client in list(self.clients):
            client.send(WSMsgType.BINARY, payload)

    def send_heartbeat(self) -> None:
        """Send Kite's 1-byte heartbeat to every client."""
        self.send_binary(b"\x00")

    def send_text(self, obj: object) -> None:
        """Send ``obj`` as a JSON text frame to every client."""
        payload = orjson.dumps(obj)
        for client in list(self.clients):
            client.send(WSMsgType.TEXT, payload)

    def disconnect_all(self) -> None:
        """Close every client connection from the server side."""
        for client in list(self.clients):
            client.send_close()
            client.disconnect()

    # -- picows ----------------------------------------------------------------------------------

    def _accept(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        query = parse_qs(urlsplit(request.path.decode()).query)
        if query.get("api_key") != [self.api_key] or query.get("access_token") != [
            self.access_token
        ]:
            self.refused += 1
            response = WSUpgradeResponse.create_error_response(
                403, FORBIDDEN_BODY, {"Content-Type": "application/json"}
            )
            return WSUpgradeResponseWithListener(response, None)
        return _ServerListener(self)

    def _connected(self, transport: WSTransport) -> None:
        self.connections += 1
        if self.drop_on_connect:
            transport.disconnect()
            return
        self.clients.append(transport)
        self._per_client[transport] = {}

    def _disconnected(self, transport: WSTransport) -> None:
        if transport in self.clients:
            self.clients.remove(transport)
        self._per_client.pop(transport, None)
        self._merge_subscriptions()

    def _message(self, transport: WSTransport, payload: bytes) -> None:
        message = orjson.loads(payload)
        self.messages.append(message)
        mine = self._per_client.setdefault(transport, {})
        action, value = message.get("a"), message.get("v")
        if action == "subscribe":
            for token in value:
                mine.setdefault(int(token), "quote")
        elif action == "unsubscribe":
            for token in value:
                mine.pop(int(token), None)
        elif action == "mode":
            mode, tokens = value
            for token in tokens:
                mine[int(token)] = mode
        self._merge_subscriptions()

    def _merge_subscriptions(self) -> None:
        # one dict object throughout, so a reference a test holds stays current
        self.subscriptions.clear()
        for mine in self._per_client.values():
            self.subscriptions.update(mine)


class _ServerListener(WSListener):
    def __init__(self, server: KiteTickerServer) -> None:
        self.server = server

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.server._connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.server._message(transport, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.server._disconnected(transport)
