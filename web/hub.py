"""Fan-out of snapshots and events to the page's WebSocket clients.

Every message is encoded once and queued for each client in a bounded deque; a client too slow
to keep up loses its oldest messages (counted), so no client can hold up the engine.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import orjson

#: messages queued per client before the oldest are dropped
CLIENT_QUEUE = 256
#: seconds events wait to be sent together
EVENT_BATCH_S = 0.01


class Client:
    """One WebSocket client's outgoing queue."""

    def __init__(self) -> None:
        self.queue: deque[bytes] = deque(maxlen=CLIENT_QUEUE)
        self.ready = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def put(self, message: bytes) -> None:
        """Queue ``message``, dropping the oldest one when the queue is full."""
        if len(self.queue) == CLIENT_QUEUE:
            self.dropped += 1
        self.queue.append(message)
        self.ready.set()

    async def take(self) -> list[bytes]:
        """Wait for messages and return all queued ones; empty once the hub closed."""
        await self.ready.wait()
        self.ready.clear()
        messages = list(self.queue)
        self.queue.clear()
        return messages


class Hub:
    """Push periodic snapshots and live events to every connected client.

    Parameters
    ----------
    snapshot : callable
        Returns the periodic snapshot dict.
    push_hz : float
        Snapshots per second.
    """

    def __init__(self, snapshot: Callable[[], dict], push_hz: float) -> None:
        self.snapshot = snapshot
        self.period = 1.0 / push_hz
        self.clients: set[Client] = set()
        #: messages dropped by clients that left (those still connected count their own)
        self.dropped_gone = 0
        self._pending: list[dict] = []

    def client_count(self) -> int:
        """Return the connected clients."""
        return len(self.clients)

    def dropped(self) -> int:
        """Return messages dropped for slow clients since start."""
        return self.dropped_gone + sum(client.dropped for client in self.clients)

    def join(self) -> Client:
        """Register and return a new client."""
        client = Client()
        self.clients.add(client)
        return client

    def leave(self, client: Client) -> None:
        """Forget ``client``."""
        if client in self.clients:
            self.clients.discard(client)
            self.dropped_gone += client.dropped

    def publish(self, event: dict) -> None:
        """Queue one event record for every client.

        Events are sent in batches, ``{"type": "events", "events": [...]}``, at most
        ``EVENT_BATCH_S`` after the first: a busy engine emits thousands a second, and one
        frame per event per client would cost the engine more than the events themselves.
        """
        if not self.clients:
            return
        self._pending.append(event)
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_later(EVENT_BATCH_S, self._flush)

    def _flush(self) -> None:
        if self._pending:
            self._broadcast(orjson.dumps({"type": "events", "events": self._pending}))
            self._pending = []

    def _broadcast(self, message: bytes) -> None:
        for client in self.clients:
            client.put(message)

    async def push(self) -> None:
        """Broadcast a snapshot every period while clients are connected; run until cancelled."""
        while True:
            await asyncio.sleep(self.period)
            if self.clients:
                self._broadcast(orjson.dumps(self.snapshot()))

    def close(self) -> None:
        """Wake every client so its handler closes the socket."""
        for client in self.clients:
            client.closed = True
            client.ready.set()
