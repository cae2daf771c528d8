"""What every WebSocket feed keeps the same way: its state, staleness and reconnect back-off.

The generic ``ws`` feed and the brokers' feeds (Kite's ticker, Upstox's v3 feed, ProjectX's
market hub) all report ``connecting``, ``connected``, ``stale`` or ``disconnected`` through a
callback, go ``stale`` after ``stale_after_s`` without a sign of life, count dropped frames by
reason, and reconnect with jittered exponential back-off. :class:`FeedUpkeep` holds that part
once; each feed sets the attributes in its ``__init__`` and writes the connection itself.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from picows import WSTransport

#: first reconnect delay, seconds; doubles per failed attempt up to BACKOFF_MAX_S
BACKOFF_START_S = 0.1
#: longest reconnect delay, seconds
BACKOFF_MAX_S = 5.0
#: attempts after which the delay stops doubling (it is capped long before)
MAX_ATTEMPT = 16


def backoff_s(attempt: int) -> float:
    """Return the jittered delay before reconnect ``attempt`` (0 for the first failure).

    The jitter (half to all of the delay) spreads the reconnects of many clients after a
    server restart.
    """
    delay = min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** min(attempt, MAX_ATTEMPT))
    return delay * random.uniform(0.5, 1.0)


class FeedUpkeep:
    """State reporting, staleness and drop counts of a feed (a mix-in)."""

    #: ``connecting``, ``connected``, ``stale`` or ``disconnected``
    state: str
    #: called with the new state whenever it changes
    on_state: Callable[[str], None]
    #: seconds without a sign of life after which a connected feed is ``stale``
    stale_after_s: float
    #: ``time.monotonic()`` of the last frame that carried ticks, None before the first
    last_tick_at: float | None
    #: frames dropped, by reason
    rejected: dict[str, int]
    #: the open connection, None between connections
    _transport: WSTransport | None

    def rejected_frames(self) -> dict[str, int]:
        """Return the dropped frames by reason, nonzero reasons only."""
        return {reason: count for reason, count in self.rejected.items() if count}

    def last_tick_age(self) -> float | None:
        """Return seconds since the last tick arrived, or None before the first."""
        return None if self.last_tick_at is None else time.monotonic() - self.last_tick_at

    def _alive_at(self) -> float | None:
        # what counts as a sign of life; feeds with heartbeats count every frame
        return self.last_tick_at

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.on_state(state)

    def _disconnected(self, transport: WSTransport) -> None:
        if transport is not self._transport:
            # a late goodbye from a connection already replaced: the current one stays
            return
        self._transport = None
        self._set_state("disconnected")

    async def _watch_staleness(self) -> None:
        connected_at = time.monotonic()
        while True:
            await asyncio.sleep(min(self.stale_after_s / 4, 0.25))
            if self.state != "connected":
                connected_at = time.monotonic()
                continue
            alive = self._alive_at()
            since = connected_at if alive is None else max(alive, connected_at)
            if time.monotonic() - since > self.stale_after_s:
                self._set_state("stale")
