"""The session section: trading hours, trading days and holidays."""

from __future__ import annotations

from datetime import date, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator, model_validator
from pydantic_core import PydanticCustomError

from engine.config_errors import CUSTOM_ERROR, field_error
from engine.config_models.base import Bool, Model, Str, parse_hhmm

#: weekday names of ``session.trading_days``, Monday first (``date.weekday()`` order)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class SessionConfig(Model):
    """Trading hours in the exchange's time zone; times are ``"HH:MM"`` (24-hour).

    A ``close`` earlier than ``open`` spans midnight (CME Globex: 17:00 to 16:00 Central). A
    trading day begins at ``open`` and is named by the date of its ``close``, so the Sunday 17:00
    open starts Monday's trading day; a session within one date keeps midnight as the day's
    boundary.
    """

    #: Whether to trade only inside the session and flatten at ``flatten_at``. Default true.
    enabled: Bool = True
    #: IANA time zone of the times below. Default ``"Asia/Kolkata"``.
    timezone: Str = "Asia/Kolkata"
    #: Session open. Default ``"09:15"``.
    open: Str = "09:15"
    #: Session close; earlier than ``open`` for a session across midnight. Default ``"15:30"``.
    close: Str = "15:30"
    #: Time at which open positions are closed and new entries stop. Default ``"15:20"``.
    flatten_at: Str = "15:20"
    #: Weekdays with a trading day, by the date of its close. Default all seven.
    trading_days: tuple[Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], ...] = WEEKDAYS
    #: Dates (``"YYYY-MM-DD"``, by the date of the close) with no trading day. Default none.
    holidays: tuple[Str, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            # ValueError covers keys ZoneInfo refuses outright, such as absolute paths.
            raise PydanticCustomError(CUSTOM_ERROR, "unknown time zone") from None
        return value

    @field_validator("open", "close", "flatten_at")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        try:
            parse_hhmm(value)
        except ValueError:
            raise PydanticCustomError(
                CUSTOM_ERROR, 'must be "HH:MM" between 00:00 and 23:59'
            ) from None
        return value

    @field_validator("holidays")
    @classmethod
    def _dates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for day in value:
            try:
                date.fromisoformat(day)
            except ValueError:
                raise PydanticCustomError(
                    CUSTOM_ERROR, f'must be dates "YYYY-MM-DD", got {day!r}'
                ) from None
            if len(day) != 10:
                raise PydanticCustomError(CUSTOM_ERROR, f'must be dates "YYYY-MM-DD", got {day!r}')
        return value

    @field_validator("trading_days")
    @classmethod
    def _some_days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise PydanticCustomError(CUSTOM_ERROR, "must name at least one weekday")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> SessionConfig:
        # Checked even when disabled, so enabling a session later cannot surface old mistakes.
        if self.close_time == self.open_time:
            raise field_error("close", f"must differ from session.open ({self.open})", self.close)
        if not 0 < self._since_open(self.flatten_time) <= self._since_open(self.close_time):
            raise field_error(
                "flatten_at",
                f"must be after session.open ({self.open}) and not after "
                f"session.close ({self.close})",
                self.flatten_at,
            )
        return self

    def _since_open(self, at: time) -> int:
        minutes = at.hour * 60 + at.minute - (self.open_time.hour * 60 + self.open_time.minute)
        return minutes % (24 * 60)

    @property
    def overnight(self) -> bool:
        """Whether the session spans midnight (its close is earlier than its open)."""
        return self.close_time < self.open_time

    @property
    def closed_dates(self) -> frozenset[date]:
        """The holidays as dates."""
        return frozenset(date.fromisoformat(day) for day in self.holidays)

    @property
    def weekdays(self) -> frozenset[int]:
        """The ``date.weekday()`` numbers with a trading day."""
        return frozenset(WEEKDAYS.index(day) for day in self.trading_days)

    @property
    def open_time(self) -> time:
        """Session open as a naive :class:`datetime.time` in :attr:`timezone`."""
        return parse_hhmm(self.open)

    @property
    def close_time(self) -> time:
        """Session close as a naive :class:`datetime.time` in :attr:`timezone`."""
        return parse_hhmm(self.close)

    @property
    def flatten_time(self) -> time:
        """Flatten time as a naive :class:`datetime.time` in :attr:`timezone`."""
        return parse_hhmm(self.flatten_at)

    @property
    def tzinfo(self) -> ZoneInfo:
        """The session's time zone (``ZoneInfo`` caches instances, so this is cheap)."""
        return ZoneInfo(self.timezone)
