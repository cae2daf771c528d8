"""The fake ProjectX gateway's SignalR JSON hubs, ``/hubs/market`` and ``/hubs/user``, on picows.

Clients connect without negotiation with ``?access_token=JWT`` (HTTP 401 at the upgrade when the
token is unknown), then the JSON handshake; records end with 0x1e. The hubs count the pings
they receive, close on a close record, record every invocation and answer it with a completion
when it carries an id (an error for a method the hub does not have).
"""

from __future__ import annotations

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
)

#: the SignalR record separator
RS = b"\x1e"
#: what each hub's subscription methods take
SUBSCRIPTIONS = {
    "market": (
        "SubscribeContractQuotes",
        "SubscribeContractTrades",
        "SubscribeContractMarketDepth",
    ),
    "user": ("SubscribeAccounts", "SubscribeOrders", "SubscribePositions", "SubscribeTrades"),
}
#: user-hub event -> the subscription that receives it
USER_EVENTS = {
    "GatewayUserOrder": "SubscribeOrders",
    "GatewayUserTrade": "SubscribeTrades",
    "GatewayUserPosition": "SubscribePositions",
}


def invocation(target: str, arguments: list) -> bytes:
    """Return the record of a server-to-client invocation of ``target``."""
    return orjson.dumps({"type": 1, "target": target, "arguments": arguments}) + RS


class FakeHubs:
    """Both hubs' clients, and what they sent; call only on the fake's loop.

    Parameters
    ----------
    tokens : set of str
        The valid tokens (the gateway's own set, read at every upgrade).
    """

    def __init__(self, tokens: set[str]) -> None:
        self.tokens = tokens
        #: per hub: invocations received ((target, arguments)), handshakes, pings received
        self.invocations: dict[str, list] = {"market": [], "user": []}
        self.handshakes = {"market": 0, "user": 0}
        self.pings_received = {"market": 0, "user": 0}
        #: per hub: the connected clients
        self.peers: dict[str, list[Peer]] = {"market": [], "user": []}
        #: every user-hub event pushed: (payload, subscription), oldest first
        self.user_sent: list[tuple[bytes, tuple]] = []

    def route(self, request: WSUpgradeRequest):
        """Accept an upgrade to a hub with a valid token; refuse a bad token with HTTP 401."""
        url = urlsplit(request.path.decode())
        hub = url.path.rsplit("/", 1)[-1]
        if url.path not in ("/hubs/market", "/hubs/user"):
            return None
        token = parse_qs(url.query).get("access_token", [""])[0]
        if token not in self.tokens:
            refusal = WSUpgradeResponse.create_error_response(401, b"Unauthorized")
            return WSUpgradeResponseWithListener(refusal, None)
        return Peer(self, hub)

    def broadcast(self, hub: str, payload: bytes, subscription: tuple | None) -> None:
        """Send ``payload`` to the clients of ``hub`` past the handshake (those subscribed)."""
        for peer in self.peers[hub]:
            if peer.open and (subscription is None or subscription in peer.subscriptions):
                peer.transport.send(WSMsgType.TEXT, payload)

    def user(self, target: str, record: dict) -> None:
        """Push ``record`` as a ``{"action", "data"}`` user-hub event to its subscribers."""
        payload = invocation(target, [{"action": 1, "data": dict(record)}])
        subscription = (USER_EVENTS[target], record["accountId"])
        self.user_sent.append((payload, subscription))
        self.broadcast("user", payload, subscription)

    def resend_user(self, back: int = 1) -> None:
        """Push the ``back``-th last user-hub event again (1: the last one)."""
        if len(self.user_sent) >= back:
            payload, subscription = self.user_sent[-back]
            self.user_sent.append((payload, subscription))
            self.broadcast("user", payload, subscription)

    def market(self, contract_id: str, trade: list, quote: dict) -> None:
        """Send GatewayTrade and GatewayQuote, in one frame, to each client subscribed."""
        for peer in self.peers["market"]:
            frame = b""
            if ("SubscribeContractTrades", contract_id) in peer.subscriptions:
                frame += invocation("GatewayTrade", [contract_id, trade])
            if ("SubscribeContractQuotes", contract_id) in peer.subscriptions:
                frame += invocation("GatewayQuote", [contract_id, quote])
            if frame and peer.open:
                peer.transport.send(WSMsgType.TEXT, frame)

    def logout(self) -> None:
        """Send GatewayLogout to every user-hub client, then close every connection."""
        message = invocation("GatewayLogout", ["Your session has expired. Please log in again."])
        self.broadcast("user", message, None)
        self.disconnect_all()

    def disconnect_all(self) -> None:
        """Close every connection of both hubs."""
        for peer in [p for peers in self.peers.values() for p in peers]:
            peer.transport.disconnect()

    def drop(self, hub: str) -> None:
        """Close every connection of ``hub``."""
        for peer in list(self.peers[hub]):
            peer.transport.disconnect()

    def send(self, hub: str, kind: WSMsgType, payload: bytes, fin: bool) -> None:
        """Send ``payload`` as is, one WebSocket frame, to every client of ``hub``."""
        for peer in self.peers[hub]:
            if peer.open:
                peer.transport.send(kind, payload, fin=fin)

    def clients(self, hub: str) -> int:
        """Return the clients of ``hub`` past the handshake."""
        return sum(peer.open for peer in self.peers[hub])


class Peer(WSListener):
    """One hub client, from the fake's side: handshake, records, subscriptions."""

    def __init__(self, hubs: FakeHubs, hub: str) -> None:
        self.hubs, self.hub = hubs, hub
        self.open = False
        self.subscriptions: set[tuple] = set()
        self.partial = b""
        self.transport: WSTransport

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.hubs.peers[self.hub].append(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.hubs.peers[self.hub].remove(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        *records, self.partial = (self.partial + frame.get_payload_as_bytes()).split(RS)
        for record in records:
            self._record(orjson.loads(record))

    def _record(self, message: dict) -> None:
        if not self.open:
            if message == {"protocol": "json", "version": 1}:
                self.open = True
                self.hubs.handshakes[self.hub] += 1
                self.transport.send(WSMsgType.TEXT, b"{}" + RS)
            else:
                self.transport.send(WSMsgType.TEXT, b'{"error":"Unsupported protocol."}' + RS)
                self.transport.disconnect()
            return
        kind = message.get("type")
        if kind == 6:
            self.hubs.pings_received[self.hub] += 1
        elif kind == 7:
            self.transport.disconnect()
        elif kind == 1:
            target, arguments = message.get("target"), message.get("arguments") or []
            self.hubs.invocations[self.hub].append((target, arguments))
            error = None
            if target in SUBSCRIPTIONS[self.hub]:
                self.subscriptions.add((target, arguments[0] if arguments else None))
            else:
                error = f"Failed to invoke '{target}' because it does not exist."
            if message.get("invocationId") is not None:
                done = {"type": 3, "invocationId": message["invocationId"]}
                done.update({"error": error} if error else {"result": None})
                self.transport.send(WSMsgType.TEXT, orjson.dumps(done) + RS)
