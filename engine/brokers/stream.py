"""A broker's stream of order updates: numbered in order, queued for one consumer."""

from __future__ import annotations

import asyncio

from engine.brokers.base import OrderState, OrderUpdate

__all__ = ["UpdateStream"]


class UpdateStream:
    """Number order updates and queue them for one consumer; drop the oldest when full.

    Parameters
    ----------
    capacity : int
        Length of the queue. When it is full the oldest update is dropped and counted in
        :attr:`dropped`.
    """

    def __init__(self, capacity: int) -> None:
        self._queue: asyncio.Queue[OrderUpdate] = asyncio.Queue(maxsize=capacity)
        self._seq = 0
        #: updates dropped because the queue was full
        self.dropped = 0

    def emit(self, kind: str, state: OrderState, reason: str | None, ts: int) -> None:
        """Queue the next update; see :class:`OrderUpdate` for the fields.

        Parameters
        ----------
        kind : str
            One of ``UPDATE_KINDS``.
        state : OrderState
            The order after the change.
        reason : str, optional
            Why it changed.
        ts : int
            When it changed, ns since the epoch.
        """
        update = OrderUpdate(self._seq, kind, state, reason, ts)
        self._seq += 1
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(update)

    async def get(self) -> OrderUpdate:
        """Return the oldest queued update, waiting for one when there is none."""
        return await self._queue.get()

    @property
    def queued(self) -> int:
        """Updates waiting in the queue."""
        return self._queue.qsize()
