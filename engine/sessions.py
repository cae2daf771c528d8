"""The exchange session calendar: trading days turned into UTC nanosecond rows.

The kernels never see a time zone. For each trading day this module writes one calendar row of
UTC nanoseconds (day start, open, flatten_at, close, next day start) into the book, so daylight
saving changes, sessions across midnight, weekends and holidays are handled once here, in
Python, and the hot path compares integers.

A trading day is named by the date of its close. A session within one date starts its day at
local midnight (NSE); one across midnight starts it at the open, on the date before (CME: the
Sunday 17:00 open starts Monday's day). A date with no trading day (a weekday not traded, a
holiday) folds into the trading day before it, whose row then reaches the next trading day's
start: the rows are contiguous, and the session is closed in between.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import numpy as np

from engine.config import SessionConfig
from kernels.layout import S_CLOSE, S_DAY_END, S_DAY_START, S_FLATTEN, S_OPEN

#: rows in the calendar; replays longer than this refill it as they go
CALENDAR_DAYS = 400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64_MIN = np.iinfo(np.int64).min
_INT64_MAX = np.iinfo(np.int64).max


def local_ns(day: date, at: time, session: SessionConfig) -> int:
    """Return the UTC nanoseconds of local time ``at`` on ``day`` in the session's zone."""
    moment = datetime.combine(day, at, tzinfo=session.tzinfo)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def is_trading_day(day: date, session: SessionConfig) -> bool:
    """Return whether ``day`` (a close date) has a trading day; every date when disabled."""
    if not session.enabled:
        return True
    return day.weekday() in session.weekdays and day not in session.closed_dates


def trading_day(ts_ns: int, session: SessionConfig) -> date:
    """Return the trading day (the date of its close) that UTC nanoseconds ``ts_ns`` belong to.

    A moment between two trading days (a weekend, a holiday, the break after a close) belongs
    to the one before.
    """
    moment = (_EPOCH + timedelta(microseconds=ts_ns // 1000)).astimezone(session.tzinfo)
    day = moment.date()
    if session.enabled and session.overnight and moment.time() >= session.open_time:
        day += timedelta(days=1)
    for _ in range(MAX_CLOSED_RUN):
        if is_trading_day(day, session):
            return day
        day -= timedelta(days=1)
    return day


#: consecutive dates without a trading day a calendar walks before giving up (a config with
#: weekdays and holidays closing everything would otherwise loop forever)
MAX_CLOSED_RUN = 400


def _day_start(day: date, session: SessionConfig) -> int:
    if session.enabled and session.overnight:
        return local_ns(day - timedelta(days=1), session.open_time, session)
    return local_ns(day, time(0, 0), session)


def _next_trading_day(day: date, session: SessionConfig) -> date:
    for _ in range(MAX_CLOSED_RUN):
        day += timedelta(days=1)
        if is_trading_day(day, session):
            return day
    return day


def _at(day: date, at: time, session: SessionConfig) -> int:
    # a time of a session across midnight that is not before the open falls on the date before
    # the close (the open itself, and a flatten_at in the evening)
    if session.overnight and at >= session.open_time:
        return local_ns(day - timedelta(days=1), at, session)
    return local_ns(day, at, session)


def fill_calendar(rows: np.ndarray, first_day: date, session: SessionConfig) -> None:
    """Fill int64 calendar ``rows`` with consecutive trading days from ``first_day`` on.

    ``first_day`` should be a trading day (``trading_day`` gives one); if it is not, the rows
    start at the next. A disabled session is open around the clock: its rows still mark local
    midnights, which reset the day's P&L and loss limit, but never close to entries nor flatten.
    """
    day = first_day if is_trading_day(first_day, session) else _next_trading_day(first_day, session)
    start = _day_start(day, session)
    for k in range(rows.shape[0]):
        following = _next_trading_day(day, session)
        rows[k, S_DAY_START] = start
        start = rows[k, S_DAY_END] = _day_start(following, session)
        if session.enabled:
            rows[k, S_OPEN] = _at(day, session.open_time, session)
            rows[k, S_FLATTEN] = _at(day, session.flatten_time, session)
            rows[k, S_CLOSE] = _at(day, session.close_time, session)
        else:
            rows[k, S_OPEN] = _INT64_MIN
            rows[k, S_FLATTEN] = _INT64_MAX
            rows[k, S_CLOSE] = _INT64_MAX
        day = following
