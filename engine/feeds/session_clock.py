"""Lay a continuous tick clock over a session's trading hours, for simulated tick files.

The sim feed dates its ticks on a continuous clock. :class:`SessionClock` moves those stamps
into the session: the first second of the clock is the first trading day's open, and a tick
past a day's close continues at the next trading day's open, so a file holds ticks only while
the market is open (none in CME's 16:00-17:00 break, none on a weekend or a holiday).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from engine.config import SessionConfig
from engine.sessions import fill_calendar, trading_day
from kernels.layout import S_CLOSE, S_OPEN

#: trading days laid out at a time when the clock runs past the last one
DAYS_PER_FILL = 64


class SessionClock:
    """Map offsets on a continuous clock (ns from 0) to UTC ns inside trading hours.

    Parameters
    ----------
    session : SessionConfig
        The enabled session whose trading days and hours the ticks follow.
    first_day : date
        The trading day (by its close's date) the first tick falls on.
    """

    def __init__(self, session: SessionConfig, first_day: date) -> None:
        self.session = session
        self._opens = np.zeros(0, np.int64)
        # clock offsets at which each trading day's hours begin and end
        self._starts = np.zeros(0, np.int64)
        self._ends = np.zeros(0, np.int64)
        self._next_day = first_day
        self._extend()

    def _extend(self) -> None:
        rows = np.zeros((DAYS_PER_FILL, 5), np.int64)
        fill_calendar(rows, self._next_day, self.session)
        lengths = rows[:, S_CLOSE] - rows[:, S_OPEN]
        done = int(self._ends[-1]) if len(self._ends) else 0
        ends = done + np.cumsum(lengths)
        self._opens = np.concatenate((self._opens, rows[:, S_OPEN]))
        self._starts = np.concatenate((self._starts, ends - lengths))
        self._ends = np.concatenate((self._ends, ends))
        # the day after the last one laid out; fill_calendar skips to a trading day from it
        self._next_day = trading_day(int(rows[-1, S_CLOSE]) - 1, self.session) + timedelta(days=1)

    def retime(self, ts: np.ndarray) -> None:
        """Replace clock offsets ``ts`` (int64 ns, ascending) by their UTC ns, in place."""
        if len(ts) == 0:
            return
        while ts[-1] >= self._ends[-1]:
            self._extend()
        day = np.searchsorted(self._ends, ts, side="right")
        ts[:] = self._opens[day] + (ts - self._starts[day])
