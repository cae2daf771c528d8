"""The safety net under the user hub: a poll of ``Order/searchOpen`` while our orders are open.

Every :data:`POLL_INTERVAL_S`, or at once when woken (after every user-hub subscription, so
events missed while it was down are caught up), the open orders are merged into the
:class:`~engine.brokers.projectx.orders.OrderTracker`; an order of ours that left the open list
is read back from ``Order/search`` to learn how it ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from engine.brokers.live_base import Alert
from engine.brokers.projectx.orders import OrderTracker

#: seconds between polls of Order/searchOpen while our orders are open
POLL_INTERVAL_S = 1.0


class OrderPoll:
    """Poll the gateway's open orders while the tracker knows open orders of ours.

    Parameters
    ----------
    tracker : OrderTracker
        Where the records read go.
    search_open : callable
        Returns the ``Order/searchOpen`` answer.
    search_recent : callable
        Returns the ``Order/search`` answer of the recent orders.
    on_alert : Alert
        Told ``broker_error`` when a poll fails (once per distinct message in a row).
    """

    def __init__(
        self,
        tracker: OrderTracker,
        search_open: Callable[[], Awaitable[dict]],
        search_recent: Callable[[], Awaitable[dict]],
        on_alert: Alert,
    ) -> None:
        self.tracker = tracker
        self.search_open = search_open
        self.search_recent = search_recent
        self.on_alert = on_alert
        self._wake: asyncio.Future | None = None
        self._error = ""

    def wake(self) -> None:
        """Poll now rather than at the next interval."""
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run(self) -> None:
        """Poll every :data:`POLL_INTERVAL_S` (or when woken) until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            # a plain future woken by a timer or wake(): 3.11's wait_for can swallow a
            # cancel that races its timeout, which would hang close()
            self._wake = loop.create_future()
            timer = loop.call_later(POLL_INTERVAL_S, self.wake)
            try:
                await self._wake
            finally:
                timer.cancel()
            if not self.tracker.open_ids():
                continue
            try:
                await self.reconcile()
                self._error = ""
            except Exception as error:  # noqa: BLE001 - the poll must outlive any failure
                message = f"ProjectX order poll: {error}"
                if message != self._error:
                    self._error = message
                    self.on_alert("broker_error", message)

    async def reconcile(self) -> None:
        """Merge the open orders; learn how our orders that left the open list ended."""
        known_open = set(self.tracker.open_ids())
        data = await self.search_open()
        seen = set()
        for raw in data.get("orders") or []:
            seen.add(str(raw.get("id")))
            self.tracker.on_order(raw)
        if known_open - seen:
            for raw in (await self.search_recent()).get("orders") or []:
                if str(raw.get("id")) in known_open - seen:
                    self.tracker.on_order(raw)
