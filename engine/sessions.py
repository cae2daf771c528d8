"""The exchange session calendar: local trading hours turned into UTC nanosecond rows.

The kernels never see a time zone. For each local date this module writes one calendar row of
UTC nanoseconds (day start, open, flatten_at, close, next day start) into the book, so daylight
saving changes are handled once here, in Python, and the hot path compares integers.
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


def local_date(ts_ns: int, session: SessionConfig) -> date:
    """Return the local date in the session's zone of UTC nanoseconds ``ts_ns``."""
    moment = _EPOCH + timedelta(microseconds=ts_ns // 1000)
    return moment.astimezone(session.tzinfo).date()


def fill_calendar(rows: np.ndarray, first_day: date, session: SessionConfig) -> None:
    """Fill int64 calendar ``rows`` with consecutive local days from ``first_day``.

    A disabled session is open around the clock: its rows still mark local midnights, which
    reset the day's P&L and loss limit, but never close to entries nor flatten.
    """
    midnight = time(0, 0)
    for k in range(rows.shape[0]):
        day = first_day + timedelta(days=k)
        rows[k, S_DAY_START] = local_ns(day, midnight, session)
        rows[k, S_DAY_END] = local_ns(day + timedelta(days=1), midnight, session)
        if session.enabled:
            rows[k, S_OPEN] = local_ns(day, session.open_time, session)
            rows[k, S_FLATTEN] = local_ns(day, session.flatten_time, session)
            rows[k, S_CLOSE] = local_ns(day, session.close_time, session)
        else:
            rows[k, S_OPEN] = _INT64_MIN
            rows[k, S_FLATTEN] = _INT64_MAX
            rows[k, S_CLOSE] = _INT64_MAX
