"""Which Kite orders are ours, and the poller that follows them between ticker messages.

Order snapshots reach the adapter from the ticker's ``{"type": "order"}`` messages, from polls
of ``GET /orders`` and from lookups. :class:`OrderWatch` keeps only ours (an id this adapter
placed or looked up, or a tag it sent) and hands them to an
:class:`~engine.brokers.kite.rest.OrderTracker`, which merges both sources into one
deduplicated update stream. :meth:`OrderWatch.poll` polls every :data:`POLL_INTERVAL_S` while
any of our orders is open, in flight or placed but not yet seen, so updates keep flowing when
the market data comes from elsewhere or the ticker is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from engine.brokers.base import OrderRequest, OrderState
from engine.brokers.kite.rest import OrderTracker, order_state
from engine.brokers.live_base import Alert, BrokerError, TokenExpired
from engine.brokers.stream import UpdateStream

#: seconds between ``GET /orders`` polls while one of our orders is open
POLL_INTERVAL_S = 0.5
#: seconds between polls while the token is expired (each one fails until it is renewed)
EXPIRED_POLL_S = 2.0
#: updates kept for a slow consumer before the oldest is dropped
STREAM_CAPACITY = 65_536
#: seconds a tag whose placement failed in transit is still watched for on the order book
PENDING_TAG_S = 60.0
#: prefix of the id given to an order Kite refused outright (it never got a Kite id)
REFUSED_ID = "rejected:"


class OrderWatch:
    """Track our Kite orders from every source and poll for them while any is open.

    Parameters
    ----------
    symbols : dict
        ``(exchange, tradingsymbol)`` -> configured symbol; other orders keep Kite's name.
    """

    def __init__(self, symbols: dict[tuple[str, str], str]) -> None:
        self.symbols = symbols
        self.tracker = OrderTracker(UpdateStream(STREAM_CAPACITY))
        #: client tag -> Kite order id of every order this adapter placed or looked up
        self.tags: dict[str, str] = {}
        #: Kite ids of our orders
        self.ids: set[str] = set()
        #: ids placed but not yet seen in a poll or on the ticker
        self.unseen: set[str] = set()
        #: tag -> monotonic deadline, for orders sent whose Kite id is not known yet
        self.pending: dict[str, float] = {}
        #: tag -> the request, for what Kite does not echo back (the OCO group)
        self.requests: dict[str, OrderRequest] = {}
        #: set whenever there may be something to poll for
        self.wake = asyncio.Event()
        self._poll_error = ""

    def expect(self, order: OrderRequest) -> None:
        """Watch for ``order`` by its tag while its placement is on its way to Kite."""
        self.requests[order.tag] = order
        self.pending[order.tag] = time.monotonic() + PENDING_TAG_S
        self.wake.set()

    def ingest(self, data: dict) -> OrderState | None:
        """Track ``data`` if it is one of our orders; return the state now known.

        Parameters
        ----------
        data : dict
            One Kite order record (order book, history entry or ticker message).

        Returns
        -------
        OrderState or None
            None when the order is not ours.
        """
        order_id = str(data.get("order_id") or "")
        if order_id not in self.ids:
            tag = data.get("tag") or ""
            if not tag or (tag not in self.pending and self.tags.get(tag) != order_id):
                return None
            self.adopt(tag, order_id)
        self.unseen.discard(order_id)
        return self.tracker.observe(*self.read(data))

    def read(self, data: dict) -> tuple[OrderState, int]:
        """Return the state of any Kite order record and when it changed (ns), untracked."""
        symbol = self.symbols.get((data.get("exchange"), data.get("tradingsymbol")))
        request = self.requests.get(data.get("tag") or "")
        group = request.oco_group if request is not None else None
        return order_state(data, symbol or str(data.get("tradingsymbol")), group)

    def adopt(self, tag: str, order_id: str) -> None:
        """Make the order ``order_id`` carrying ``tag`` one of ours."""
        self.tags[tag] = order_id
        self.ids.add(order_id)
        if order_id not in self.tracker.known:
            # placed but not yet seen in a poll or on the ticker: keep polling until it is
            self.unseen.add(order_id)
        self.pending.pop(tag, None)
        self.wake.set()

    def refused(self, order: OrderRequest, message: str) -> OrderState:
        """Report ``order``, which Kite refused outright, as ``rejected`` with ``message``."""
        state = order.as_state(f"{REFUSED_ID}{order.tag}", "rejected", reason=message)
        return self.tracker.observe(state, time.time_ns())

    def watching(self) -> bool:
        """Return whether any order of ours is open, in flight or not yet seen."""
        now = time.monotonic()
        for tag in [tag for tag, deadline in self.pending.items() if deadline < now]:
            del self.pending[tag]
        return bool(self.tracker.open_ids or self.pending or self.unseen)

    async def poll(
        self,
        fetch: Callable[[], Awaitable[Iterable[dict]]],
        expired: Callable[[], bool],
        on_alert: Alert,
    ) -> None:
        """Poll the order book while :meth:`watching`; sleep until :attr:`wake` otherwise.

        Parameters
        ----------
        fetch : callable
            Returns the records of ``GET /orders``.
        expired : callable
            True while the access token is expired (polls slow down to :data:`EXPIRED_POLL_S`).
        on_alert : Alert
            Told ``broker_error`` once per distinct polling failure.
        """
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.watching():
                await self._poll_once(fetch, on_alert)
                await asyncio.sleep(EXPIRED_POLL_S if expired() else POLL_INTERVAL_S)

    async def _poll_once(
        self, fetch: Callable[[], Awaitable[Iterable[dict]]], on_alert: Alert
    ) -> None:
        try:
            for data in await fetch():
                self.ingest(data)
        except TokenExpired:
            return  # alerted once by the adapter; its renew() brings it back
        except Exception as error:  # noqa: BLE001 - the poller must survive anything
            message = error.message if isinstance(error, BrokerError) else repr(error)
            if message != self._poll_error:
                on_alert("broker_error", f"polling Kite orders: {message}")
            self._poll_error = message
            return
        self._poll_error = ""
