"""The engine: runs tick batches through the kernels and hands their events to sinks.

One kernel call per batch; events are drained in blocks after it, so Python work scales with
orders and fills, not with ticks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from engine.config import EngineConfig
from engine.state import PAUSE_OPERATOR, State
from kernels import broker_fill, flatten_one, kill, layout, run_ticks
from kernels.record import RC_NEED

#: a sink takes a drained block of event rows and the batch's receive stamp (monotonic ns)
EventSink = Callable[[np.ndarray, int], None]
#: a control listener takes the operator action's name and its details (the journal's control)
ControlListener = Callable[..., None]


class TickMatcher(Protocol):
    """What matches operator orders against each batch after the kernels (the paper broker)."""

    def on_ticks(
        self,
        idx: np.ndarray,
        price: np.ndarray,
        ts: np.ndarray,
        n: int,
        *,
        codes: np.ndarray,
        recv_ns: int = 0,
    ) -> None: ...


class Engine:
    """Own the state and run ticks through the kernels.

    Parameters
    ----------
    cfg : EngineConfig
        The validated configuration.
    sinks : list of EventSink, optional
        Called with every drained block of events, in order (journal, trade log, ...).
    """

    def __init__(self, cfg: EngineConfig, sinks: list[EventSink] | None = None) -> None:
        self.cfg = cfg
        self.state = State(cfg)
        self.sinks: list[EventSink] = list(sinks or [])
        self.controls: list[ControlListener] = []
        #: the paper broker matching operator orders, when one is attached
        self.paper: TickMatcher | None = None
        #: fields of the broker order behind the fill being drained (tag, order_id), for the
        #: sinks to add to its entry or exit record; empty otherwise
        self.fill_note: dict = {}
        #: the flight recorder (``engine.record.Recorder``) of a live session, or None
        self.recorder = None
        #: live real-time feeds: refuse ticks dated more than this ahead of the wall clock, ns;
        #: None (backtests, replays) bounds them by ``layout.TS_HORIZON`` only
        self.clock_skew_ns: int | None = None

    def process(
        self,
        idx: np.ndarray,
        price: np.ndarray,
        size: np.ndarray,
        ts: np.ndarray,
        n: int,
        recv_ns: int = 0,
    ) -> None:
        """Run the first ``n`` ticks of the scratch arrays and drain their events.

        Parameters
        ----------
        idx, price, size, ts : np.ndarray
            Scratch arrays of a tick batch (int64, float64, float64, int64).
        n : int
            Ticks filled.
        recv_ns : int
            ``time.monotonic_ns()`` when the batch arrived, for the journal's latency stamps.
        """
        if n <= 0:
            return
        state = self.state
        if self.clock_skew_ns is not None:
            state.ints[state.acct, layout.A_MAX_TS] = time.time_ns() + self.clock_skew_ns
        codes = state.tick_codes(n)
        book, events = state.book, state.events
        args = (idx, price, size, ts, codes)
        # the recording controls on the batch's first call only: a call resumed after a drain or
        # a calendar refill must not record the rest of the batch again
        ctl = state.record_ctl
        start = 0
        while start < n:
            start = run_ticks(book, events, *args, state.record, ctl, start, n)
            if start < 0:  # the record buffer is full: write it out, then the batch again
                self.recorder.make_room(int(ctl[RC_NEED]))
                start = 0
                continue
            ctl = state.record_off
            self.drain(recv_ns)
            if start < n:
                state.ensure_calendar(int(ts[start]), int(ts[start]))
        if self.paper is not None:
            # operator orders match after the strategy: within a batch, the strategy sees
            # their fills from the next batch on
            self.paper.on_ticks(idx, price, ts, n, codes=codes, recv_ns=recv_ns)

    def drain(self, recv_ns: int = 0) -> None:
        """Hand the events written since the last drain to the sinks and empty the ring."""
        ints, acct = self.state.ints, self.state.acct
        count = int(ints[acct, layout.A_EVENTS])
        if count == 0:
            return
        rows = self.state.events[:count]
        for sink in self.sinks:
            sink(rows, recv_ns)
        ints[acct, layout.A_EVENTS] = 0

    def broker_fill(
        self, i: int, side: int, qty: int, price: float, reason: int, ts: int, **note
    ) -> float:
        """Book a live broker's fill on instrument row ``i``; return its realized P&L.

        Parameters
        ----------
        i : int
            Instrument row.
        side : int
            ``layout.LONG`` (bought) or ``layout.SHORT`` (sold).
        qty : int
            Units filled by this fill (not cumulative).
        price : float
            Price of these units.
        reason : int
            ``layout.R_*`` of an exit (ignored when the fill opens a position).
        ts : int
            When it filled, ns since the epoch.
        **note
            The broker order's ``tag`` and ``order_id``, added to the journal's fill line.
        """
        state = self.state
        if self.clock_skew_ns is not None:
            # a broker's clock far ahead must not end the trading day either (see process)
            ts = min(ts, time.time_ns() + self.clock_skew_ns)
        self._record("fill", i=i, side=side, qty=qty, price=price, reason=reason, ts=ts, note=note)
        if ts >= state.calendar_end:
            state.ensure_calendar(ts, ts)
        self.fill_note = note
        try:
            pnl = broker_fill(state.book, state.events, i, side, float(qty), price, ts, reason)
            self.drain()
        finally:
            self.fill_note = {}
        return pnl

    # -- operator controls, between batches ----------------------------------------------------

    def kill(self, ts: int | None = None) -> None:
        """Flatten everything and refuse every entry until ``resume``."""
        ts = _now(ts)
        self._record("kill", ts=ts)
        self.announce("kill")
        kill(self.state.book, self.state.events, ts)
        self.drain()

    def flatten(self, symbol: str | None = None, ts: int | None = None) -> None:
        """Close one symbol's position, or all of them, at the LTP (reason ``manual``)."""
        targets = range(self.state.n) if symbol is None else [self.state.index[symbol]]
        ts = _now(ts)
        self._record("flatten", symbol=symbol, ts=ts)
        self.announce("flatten", symbol=symbol)
        for i in targets:
            flatten_one(self.state.book, self.state.events, i, ts, layout.R_MANUAL)
        self.drain()

    def close(self, i: int, reason: int, ts: int | None = None) -> None:
        """Close instrument row ``i``'s position at market with exit ``reason`` (``layout.R_*``);
        live, this is one exit intent, sent unless an exit is on its way already."""
        ts = _now(ts)
        self._record("close", i=i, reason=reason, ts=ts)
        flatten_one(self.state.book, self.state.events, i, ts, reason)
        self.drain()

    def pause(self) -> None:
        """Stop new entries; exits keep running."""
        self._record("pause")
        self.announce("pause")
        self.state.set_pause(PAUSE_OPERATOR, True)

    def resume(self) -> None:
        """Lift a pause or halt (see ``State.resume``)."""
        self._record("resume")
        self.announce("resume")
        self.state.resume()

    def _record(self, op: str, **fields) -> None:
        if self.recorder is not None:
            self.recorder.event(op, **fields)

    def announce(self, action: str, **fields) -> None:
        """Tell the control listeners (journal, page) of an operator action."""
        for listener in self.controls:
            listener(action, **fields)


def _now(ts: int | None) -> int:
    return time.time_ns() if ts is None else ts
