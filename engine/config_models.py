"""The configuration models: frozen, strict pydantic models, one per section of the file.

:class:`EngineConfig` is the root. Every section and every key has a default, so ``{}`` is a
complete configuration; unknown keys are errors so a typo never silently falls back to a
default. The models' own checks raise through :func:`~engine.config_errors.field_error` so
:func:`~engine.config_errors.describe` can report them at the offending key.
"""

from __future__ import annotations

import re
from datetime import date, time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from engine.broker_config import BrokerConfig, KiteIds, ProjectXIds, UpstoxIds
from engine.config_errors import CUSTOM_ERROR, field_error

__all__ = [
    "BracketConfig",
    "BrokerConfig",
    "EngineConfig",
    "FeedConfig",
    "InstrumentConfig",
    "JournalConfig",
    "RecordConfig",
    "RiskConfig",
    "SessionConfig",
    "StateConfig",
    "StrategyConfig",
    "WebConfig",
]

# Strict everywhere: JSON already carries types, so "10" -> 10 or 10.0 -> 10 coercion would
# only hide mistakes. Strict floats still accept ints, and strict ints refuse bools.
Int = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]

_HHMM = re.compile(r"^([0-9]{2}):([0-9]{2})$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstrumentConfig(_Model):
    """One tradable instrument. ``symbol`` is required; the rest default to NSE-like values."""

    #: Symbol as the feed and broker spell it; unique within ``instruments``.
    symbol: Annotated[Str, Field(min_length=1)]
    #: Minimum price increment. Default 0.05 (NSE equities and index derivatives).
    tick_size: Annotated[Float, Field(gt=0)] = 0.05
    #: Units per lot; order quantities in the engine are whole lots. Default 1.
    lot_size: Annotated[Int, Field(ge=1)] = 1
    #: Currency value of a one-point price move for one unit. Default 1.0.
    point_value: Annotated[Float, Field(gt=0)] = 1.0
    #: Starting price of this instrument's random walk in the ``sim`` feed. Default 100.0.
    sim_start_price: Annotated[Float, Field(gt=0)] = 100.0
    #: Price the band (``risk.price_band_pct``) checks this instrument's first tick against,
    #: e.g. the last close; null: the first tick is taken as it is. Default null.
    reference_price: Annotated[Float, Field(gt=0)] | None = None
    #: Kite ids; required when ``broker.name`` is ``"kite"``. Default null.
    kite: KiteIds | None = None
    #: Upstox ids; required when ``broker.name`` is ``"upstox"``. Default null.
    upstox: UpstoxIds | None = None
    #: ProjectX contract; required when ``broker.name`` is ``"projectx"``. Default null.
    projectx: ProjectXIds | None = None


def _default_instruments() -> tuple[InstrumentConfig, ...]:
    return (InstrumentConfig(symbol="NIFTY", sim_start_price=22000.0),)


class StrategyConfig(_Model):
    """Strategy selection and parameters."""

    #: Strategy implementation. Default ``"ema_cross"`` (the only one so far).
    name: Literal["ema_cross"] = "ema_cross"
    #: Fast EMA period in ticks. Default 10.
    fast: Annotated[Int, Field(ge=1)] = 10
    #: Slow EMA period in ticks; must be greater than ``fast``. Default 30.
    slow: Annotated[Int, Field(ge=2)] = 30
    #: Lots per entry when ``risk_per_trade`` is null. Default 1.
    quantity: Annotated[Int, Field(ge=1)] = 1
    #: Length of the time bars that feed ATR and RSI, in seconds. Default 60.
    bar_seconds: Annotated[Int, Field(ge=1)] = 60
    #: Wilder ATR period in bars. Default 14.
    atr_period: Annotated[Int, Field(ge=1)] = 14
    #: RSI period in bars. Default 14.
    rsi_period: Annotated[Int, Field(ge=1)] = 14
    #: Currency amount risked per entry, sizing the position from the stop distance.
    #: Default null: fixed ``quantity`` sizing.
    risk_per_trade: Annotated[Float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _slow_after_fast(self) -> StrategyConfig:
        if self.slow <= self.fast:
            raise field_error("slow", f"must be > strategy.fast ({self.fast})", self.slow)
        return self


class BracketConfig(_Model):
    """Target and stop attached to every entry, in ticks or ATR multiples."""

    #: Take-profit distance from the entry, in ticks. Default 20.
    target_ticks: Annotated[Int, Field(gt=0)] = 20
    #: Stop-loss distance from the entry, in ticks. Default 10.
    stop_ticks: Annotated[Int, Field(gt=0)] = 10
    #: Trailing-stop distance in ticks; 0 disables trailing. Default 0.
    trail_ticks: Annotated[Int, Field(ge=0)] = 0
    #: Profit in ticks after which the stop moves to the entry; 0 disables. Default 0.
    breakeven_ticks: Annotated[Int, Field(ge=0)] = 0
    #: Target as a multiple of ATR; 0 uses ``target_ticks``. Default 0.
    target_atr: Annotated[Float, Field(ge=0)] = 0.0
    #: Stop as a multiple of ATR; 0 uses ``stop_ticks``. Default 0.
    stop_atr: Annotated[Float, Field(ge=0)] = 0.0


class RiskConfig(_Model):
    """Pre-trade and P&L limits enforced by the risk kernel."""

    #: Realised plus open loss for the day that halts trading; null = no limit. Default null.
    daily_loss_limit: Annotated[Float, Field(gt=0)] | None = None
    #: Loss from the start of the run that halts trading; null = no limit. Default null.
    max_loss_limit: Annotated[Float, Field(gt=0)] | None = None
    #: Largest absolute position per instrument, in lots. Default 10.
    max_position: Annotated[Int, Field(ge=1)] = 10
    #: Order submissions allowed per second across instruments. Default 50.
    max_orders_per_second: Annotated[Int, Field(ge=1)] = 50
    #: Largest move of a tick from the instrument's last accepted price (before the first one,
    #: ``reference_price`` or a restored position's entry), in percent; a tick outside it is
    #: refused and counted as ``price_band``. In the spirit of exchange circuit limits (NSE
    #: 10/15/20 %, CME equity index 7/13/20 %); null = no band. Default 20.
    price_band_pct: Annotated[Float, Field(gt=0)] | None = 20.0


def _parse_hhmm(value: str) -> time:
    match = _HHMM.match(value)
    if match is None:
        raise ValueError(value)
    return time(int(match[1]), int(match[2]))  # raises ValueError when out of range


#: weekday names of ``session.trading_days``, Monday first (``date.weekday()`` order)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class SessionConfig(_Model):
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
            _parse_hhmm(value)
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
        return _parse_hhmm(self.open)

    @property
    def close_time(self) -> time:
        """Session close as a naive :class:`datetime.time` in :attr:`timezone`."""
        return _parse_hhmm(self.close)

    @property
    def flatten_time(self) -> time:
        """Flatten time as a naive :class:`datetime.time` in :attr:`timezone`."""
        return _parse_hhmm(self.flatten_at)

    @property
    def tzinfo(self) -> ZoneInfo:
        """The session's time zone (``ZoneInfo`` caches instances, so this is cheap)."""
        return ZoneInfo(self.timezone)


class FeedConfig(_Model):
    """Market data source."""

    #: ``"sim"`` (seeded random walk), ``"replay"`` (recorded ticks), ``"ws"`` (a WebSocket
    #: speaking the generic JSON tick protocol) or ``"broker"`` (the live broker's own market
    #: data). Default ``"sim"``.
    name: Literal["sim", "replay", "ws", "broker"] = "sim"
    #: Random seed of the sim feed; bounded to uint32, the widest seed NumPy and Numba
    #: generators both accept. Default 1.
    seed: Annotated[Int, Field(ge=0, le=2**32 - 1)] = 1
    #: Tick rate of the sim feed and pacing of replay. Default 1000.
    ticks_per_second: Annotated[Float, Field(gt=0)] = 1000.0
    #: File replayed by the ``replay`` feed (CSV ``ts,symbol,price,size`` or NPY); required
    #: when ``name`` is ``"replay"``. Default null.
    path: Annotated[Str, Field(min_length=1)] | None = None
    #: Largest random-walk step of the sim feed, in ticks. Default 1.
    sim_step_ticks: Annotated[Int, Field(ge=1)] = 1
    #: WebSocket URL of the ``ws`` feed. Default ``"ws://127.0.0.1:9001/"``.
    url: Annotated[Str, Field(pattern=r"^wss?://[^\s/]+")] = "ws://127.0.0.1:9001/"
    #: JSON sent once after every connect of the ``ws`` feed (any JSON value); null sends
    #: nothing. Default null.
    subscribe: JsonValue = None
    #: Seconds without a tick after which the ``ws`` feed is stale and entries pause.
    #: Default 5.
    stale_after_s: Annotated[Float, Field(gt=0)] = 5.0
    #: Seconds a ``ws`` or ``broker`` feed's tick may be dated ahead of this machine's clock;
    #: later ticks are refused and counted as ``future_timestamp``. Default 30.
    max_clock_skew_s: Annotated[Float, Field(gt=0)] = 30.0
    #: Largest ``ws`` frame accepted, in bytes, at most 64 MiB (a frame is parsed whole, into
    #: a batch sized for it); larger frames are dropped and counted. Default 1048576.
    max_frame_bytes: Annotated[Int, Field(ge=1024, le=64 << 20)] = 1_048_576

    @model_validator(mode="after")
    def _replay_needs_path(self) -> FeedConfig:
        if self.name == "replay" and self.path is None:
            raise field_error("path", "required when feed.name is 'replay'", None)
        return self


class JournalConfig(_Model):
    """Append-only JSON Lines journal of orders, fills, risk and control events."""

    #: Journal file, relative to the working directory. Default ``"var/journal.jsonl"``.
    path: Annotated[Str, Field(min_length=1)] = "var/journal.jsonl"
    #: fsync each drained block of events (one group commit per batch with events) before its
    #: orders leave, so a power loss loses no order line; costs ~0.15 ms per such batch here
    #: (BENCHMARKS.md). false leaves it to the OS, which survives a crash but not power loss.
    #: Default true.
    fsync: Bool = True


class RecordConfig(_Model):
    """The flight recorder of live runs (``engine.record``), replayed by ``replay-session``."""

    #: Record every live run's inputs. Default true.
    enabled: Bool = True
    #: Folder of the recordings, one file per trading day and run. Default ``"var/record"``.
    dir: Annotated[Str, Field(min_length=1)] = "var/record"


class StateConfig(_Model):
    """Sizes of the preallocated NumPy state."""

    #: Capacity of the event ring buffer, in events. Default 65536.
    event_capacity: Annotated[Int, Field(ge=1024)] = 65536
    #: Ticks processed per kernel call. Default 65536.
    chunk_ticks: Annotated[Int, Field(ge=1024)] = 65536


class WebConfig(_Model):
    """HTTP/WebSocket control surface."""

    #: Serve the API and the monitoring page from the engine's process. Default true.
    enabled: Bool = True
    #: Bind address; loopback by default so nothing is exposed unintentionally.
    #: Default ``"127.0.0.1"``.
    host: Annotated[Str, Field(min_length=1)] = "127.0.0.1"
    #: TCP port. Default 8000.
    port: Annotated[Int, Field(ge=1, le=65535)] = 8000
    #: Name of the environment variable holding the bearer token. Default ``"OTRADE_TOKEN"``.
    token_env: Str = "OTRADE_TOKEN"
    #: Rate of state pushes to WebSocket clients, per second. Default 10.
    push_hz: Annotated[Float, Field(gt=0, le=100)] = 10.0
    #: Origins allowed by CORS; empty turns CORS off (the page is served same-origin).
    #: Default empty.
    cors_origins: tuple[Str, ...] = ()

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if _ENV_NAME.match(value) is None:
            raise PydanticCustomError(CUSTOM_ERROR, "must be an environment variable name")
        return value


class EngineConfig(_Model):
    """Root of the configuration file; every section is optional."""

    #: Instruments to trade, 1 to 256, symbols unique. Default: NIFTY, tick 0.05, start 22000.
    instruments: Annotated[tuple[InstrumentConfig, ...], Field(min_length=1, max_length=256)] = (
        Field(default_factory=_default_instruments)
    )
    #: Default :class:`StrategyConfig`.
    strategy: StrategyConfig = StrategyConfig()
    #: Default :class:`BracketConfig`.
    bracket: BracketConfig = BracketConfig()
    #: Default :class:`RiskConfig`.
    risk: RiskConfig = RiskConfig()
    #: Default :class:`SessionConfig`.
    session: SessionConfig = SessionConfig()
    #: Default :class:`BrokerConfig`.
    broker: BrokerConfig = BrokerConfig()
    #: Default :class:`FeedConfig`.
    feed: FeedConfig = FeedConfig()
    #: Default :class:`JournalConfig`.
    journal: JournalConfig = JournalConfig()
    #: Default :class:`RecordConfig`.
    record: RecordConfig = RecordConfig()
    #: Default :class:`StateConfig`.
    state: StateConfig = StateConfig()
    #: Default :class:`WebConfig`.
    web: WebConfig = WebConfig()

    @model_validator(mode="after")
    def _unique_symbols(self) -> EngineConfig:
        seen: set[str] = set()
        for index, instrument in enumerate(self.instruments):
            if instrument.symbol in seen:
                raise field_error(
                    f"instruments[{index}].symbol", "duplicate symbol", instrument.symbol
                )
            seen.add(instrument.symbol)
        return self

    @model_validator(mode="after")
    def _broker_mapping(self) -> EngineConfig:
        broker = self.broker.name
        if not self.broker.live:
            if self.feed.name == "broker":
                raise field_error("feed.name", "'broker' needs a live broker.name", "broker")
            return self
        for index, instrument in enumerate(self.instruments):
            if getattr(instrument, broker) is None:
                raise field_error(
                    f"instruments[{index}].{broker}",
                    f"required when broker.name is '{broker}'",
                    None,
                )
        if self.feed.name not in ("broker", "ws"):
            raise field_error(
                "feed.name",
                f"must be 'broker' or 'ws' when broker.name is '{broker}': real orders need real"
                " prices",
                self.feed.name,
            )
        return self

    def instrument(self, symbol: str) -> InstrumentConfig:
        """Return the instrument named ``symbol``.

        Parameters
        ----------
        symbol : str
            The instrument's symbol.

        Returns
        -------
        InstrumentConfig

        Raises
        ------
        KeyError
            When no instrument has that symbol.
        """
        for instrument in self.instruments:
            if instrument.symbol == symbol:
                return instrument
        raise KeyError(symbol)
