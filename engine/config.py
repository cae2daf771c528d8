"""Engine configuration: one JSON file, validated by frozen pydantic models.

The file is parsed with ``orjson`` and validated by :class:`EngineConfig`. Every section and
every key has a default, so ``{}`` is a complete configuration; unknown keys are errors so a
typo never silently falls back to a default. Validation stops at the first problem and reports
it as one line, ``<json path>: <problem>, got <value>``, through :class:`ConfigError`.

Secrets never live in this file: sections that need one name the environment variable that
holds it (see :attr:`WebConfig.token_env`).
"""

from __future__ import annotations

import os
import re
import types
import typing
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "BracketConfig",
    "BrokerConfig",
    "ConfigError",
    "EngineConfig",
    "FeedConfig",
    "InstrumentConfig",
    "JournalConfig",
    "RiskConfig",
    "SessionConfig",
    "StateConfig",
    "StrategyConfig",
    "WebConfig",
    "dump_config",
    "ensure_config",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH = Path("config/engine.json")

# Strict everywhere: JSON already carries types, so "10" -> 10 or 10.0 -> 10 coercion would
# only hide mistakes. Strict floats still accept ints, and strict ints refuse bools.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]

_HHMM = re.compile(r"^([0-9]{2}):([0-9]{2})$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Custom errors use this type so the formatter can tell them from pydantic's own.
_CUSTOM = "otrade_config"


class ConfigError(Exception):
    """A configuration file could not be read, parsed or validated.

    ``str(error)`` is a single line fit for ``config error in <file>: <message>``.

    Parameters
    ----------
    message : str
        The one-line description of the first problem found.
    source : str, optional
        The file (or label) the configuration came from.
    path : str, optional
        The JSON path of the offending key, e.g. ``instruments[0].tick_size``; ``None`` when
        the problem is not about one key (unreadable file, malformed JSON).
    """

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None):
        # Multi-line messages would break log lines and the CLI's one-line report.
        message = " ".join(message.split())
        super().__init__(message)
        self.message = message
        self.source = source
        self.path = path


def _field_error(field: str, message: str, got: Any) -> PydanticCustomError:
    """Build an error for a model validator that must point at ``field``, not the model."""
    # The template is escaped so braces in a message are never read as placeholders.
    template = message.replace("{", "{{").replace("}", "}}")
    return PydanticCustomError(_CUSTOM, template, {"field": field, "got": got})


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
            raise _field_error("slow", f"must be > strategy.fast ({self.fast})", self.slow)
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


def _parse_hhmm(value: str) -> time:
    match = _HHMM.match(value)
    if match is None:
        raise ValueError(value)
    return time(int(match[1]), int(match[2]))  # raises ValueError when out of range


class SessionConfig(_Model):
    """Trading hours in the exchange's time zone; times are ``"HH:MM"`` (24-hour)."""

    #: Whether to trade only inside the session and flatten at ``flatten_at``. Default true.
    enabled: Bool = True
    #: IANA time zone of the times below. Default ``"Asia/Kolkata"``.
    timezone: Str = "Asia/Kolkata"
    #: Session open. Default ``"09:15"``.
    open: Str = "09:15"
    #: Session close. Default ``"15:30"``.
    close: Str = "15:30"
    #: Time at which open positions are closed and new entries stop. Default ``"15:20"``.
    flatten_at: Str = "15:20"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            # ValueError covers keys ZoneInfo refuses outright, such as absolute paths.
            raise PydanticCustomError(_CUSTOM, "unknown time zone") from None
        return value

    @field_validator("open", "close", "flatten_at")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        try:
            _parse_hhmm(value)
        except ValueError:
            raise PydanticCustomError(_CUSTOM, 'must be "HH:MM" between 00:00 and 23:59') from None
        return value

    @model_validator(mode="after")
    def _ordered(self) -> SessionConfig:
        # Checked even when disabled, so enabling a session later cannot surface old mistakes.
        if self.close_time <= self.open_time:
            raise _field_error("close", f"must be after session.open ({self.open})", self.close)
        if not self.open_time < self.flatten_time <= self.close_time:
            raise _field_error(
                "flatten_at",
                f"must be after session.open ({self.open}) and not after "
                f"session.close ({self.close})",
                self.flatten_at,
            )
        return self

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


class BrokerConfig(_Model):
    """Order routing."""

    #: Broker adapter; ``"paper"`` fills inside the process. Default ``"paper"``.
    name: Literal["paper"] = "paper"
    #: Adverse slippage applied to paper market fills, in ticks. Default 0.
    slippage_ticks: Annotated[Int, Field(ge=0)] = 0


class FeedConfig(_Model):
    """Market data source."""

    #: ``"sim"`` (seeded random walk) or ``"replay"`` (recorded ticks). Default ``"sim"``.
    name: Literal["sim", "replay"] = "sim"
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

    @model_validator(mode="after")
    def _replay_needs_path(self) -> FeedConfig:
        if self.name == "replay" and self.path is None:
            raise _field_error("path", "required when feed.name is 'replay'", None)
        return self


class JournalConfig(_Model):
    """Append-only JSON Lines journal of orders, fills, risk and control events."""

    #: Journal file, relative to the working directory. Default ``"var/journal.jsonl"``.
    path: Annotated[Str, Field(min_length=1)] = "var/journal.jsonl"
    #: fsync after every write: survives power loss at the cost of latency. Default false.
    fsync: Bool = False


class StateConfig(_Model):
    """Sizes of the preallocated NumPy state."""

    #: Capacity of the event ring buffer, in events. Default 65536.
    event_capacity: Annotated[Int, Field(ge=1024)] = 65536
    #: Ticks processed per kernel call. Default 65536.
    chunk_ticks: Annotated[Int, Field(ge=1024)] = 65536


class WebConfig(_Model):
    """HTTP/WebSocket control surface."""

    #: Bind address; loopback by default so nothing is exposed unintentionally.
    #: Default ``"127.0.0.1"``.
    host: Annotated[Str, Field(min_length=1)] = "127.0.0.1"
    #: TCP port. Default 8000.
    port: Annotated[Int, Field(ge=1, le=65535)] = 8000
    #: Name of the environment variable holding the bearer token. Default ``"OTRADE_TOKEN"``.
    token_env: Str = "OTRADE_TOKEN"
    #: Rate of state pushes to WebSocket clients, per second. Default 10.
    push_hz: Annotated[Float, Field(gt=0)] = 10.0

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if _ENV_NAME.match(value) is None:
            raise PydanticCustomError(_CUSTOM, "must be an environment variable name")
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
    #: Default :class:`StateConfig`.
    state: StateConfig = StateConfig()
    #: Default :class:`WebConfig`.
    web: WebConfig = WebConfig()

    @model_validator(mode="after")
    def _unique_symbols(self) -> EngineConfig:
        seen: set[str] = set()
        for index, instrument in enumerate(self.instruments):
            if instrument.symbol in seen:
                raise _field_error(
                    f"instruments[{index}].symbol", "duplicate symbol", instrument.symbol
                )
            seen.add(instrument.symbol)
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


# --------------------------------------------------------------------------------------------
# Error formatting


_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "missing": "required key missing",
}

_MAX_SHOWN = 60


def _show(value: Any) -> str:
    """Render a bad value the way the user wrote it: repr for strings, JSON for the rest."""
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, BaseModel):
        text = orjson.dumps(value.model_dump(mode="json")).decode()
    else:
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            text = repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return text


def _json_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = part
    return out or "<root>"


def _is_nullable(loc: tuple[int | str, ...]) -> bool:
    """Whether the field at ``loc`` accepts null, so its type message can say so."""
    model: type[BaseModel] | None = EngineConfig
    annotation: Any = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        model = next(
            (
                arg
                for arg in (annotation, *typing.get_args(annotation))
                if isinstance(arg, type) and issubclass(arg, BaseModel)
            ),
            None,
        )
    origin = typing.get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


def _describe(error: Any) -> tuple[str, str]:
    """Turn one pydantic error into ``(json path, one-line message)``."""
    kind: str = error["type"]
    loc: tuple[int | str, ...] = tuple(error["loc"])
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    show_value = True

    if kind == _CUSTOM:
        field = ctx.get("field")
        if field is not None:
            # Model validators report at the model; move the error to the field it is about.
            loc = loc + (field,)
            value = ctx.get("got")
        problem = error["msg"]
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op, key = {
            "greater_than": (">", "gt"),
            "greater_than_equal": (">=", "ge"),
            "less_than": ("<", "lt"),
            "less_than_equal": ("<=", "le"),
        }[kind]
        bound = ctx[key]
        # Float fields carry float bounds; "> 0" reads better than "> 0.0" for whole numbers.
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        problem = f"must be {op} {_show(bound)}"
    elif kind == "literal_error":
        # pydantic joins the choices as "'a', 'b' or 'c'"; a plain list reads better here.
        problem = "must be one of " + str(ctx["expected"]).replace(" or ", ", ")
    elif kind == "extra_forbidden":
        problem, show_value = "unknown key", False
    elif kind == "missing":
        problem, show_value = "required key missing", False
    elif kind in ("string_too_short", "too_short"):
        minimum = ctx.get("min_length", 1)
        if kind == "string_too_short" and minimum == 1:
            problem = "must not be empty"
        else:
            unit = "character" if kind == "string_too_short" else "entry"
            problem = f"must have at least {minimum} {unit}{'' if minimum == 1 else 's'}"
        if kind == "too_short":
            value = ctx.get("actual_length", value)
    elif kind in ("string_too_long", "too_long"):
        unit = "characters" if kind == "string_too_long" else "entries"
        problem = f"must have at most {ctx.get('max_length')} {unit}"
        if kind == "too_long":
            value = ctx.get("actual_length", value)
    elif kind in _TYPE_MESSAGES:
        problem = _TYPE_MESSAGES[kind]
        if _is_nullable(loc):
            problem += " or null"
        # The root is always an object in a well-formed file; echoing it helps nobody.
        show_value = bool(loc)
    else:
        problem = error["msg"]

    path = _json_path(loc)
    message = f"{path}: {problem}"
    if show_value:
        message += f", got {_show(value)}"
    return path, message


# --------------------------------------------------------------------------------------------
# Loading


def parse_config(data: bytes | str, source: str = "<config>") -> EngineConfig:
    """Parse and validate a configuration document.

    Parameters
    ----------
    data : bytes or str
        The JSON document.
    source : str, optional
        Name of the document's origin, used in malformed-JSON messages.

    Returns
    -------
    EngineConfig
        The validated configuration with defaults filled in.

    Raises
    ------
    ConfigError
        On malformed JSON (naming line and column) or on the first validation error
        (``<json path>: <problem>, got <value>``).
    """
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            source=source,
        ) from None
    try:
        return EngineConfig.model_validate(raw)
    except ValidationError as exc:
        path, message = _describe(exc.errors(include_url=False)[0])
        raise ConfigError(message, source=source, path=path) from None


def load_config(path: str | os.PathLike[str] = DEFAULT_CONFIG_PATH) -> EngineConfig:
    """Read, parse and validate the configuration file at ``path``.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The configuration file. Default :data:`DEFAULT_CONFIG_PATH`.

    Returns
    -------
    EngineConfig

    Raises
    ------
    ConfigError
        When the file is missing or unreadable, or its contents are invalid.
    """
    source = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found", source=source) from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}", source=source) from None
    return parse_config(data, source)


def dump_config(cfg: EngineConfig) -> bytes:
    """Serialise a configuration as pretty JSON (2-space indent, trailing newline).

    Parameters
    ----------
    cfg : EngineConfig
        The configuration; every key is written, defaults included.

    Returns
    -------
    bytes
        A document that :func:`parse_config` turns back into an equal ``EngineConfig``.
    """
    return orjson.dumps(cfg.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"


def ensure_config(
    path: str | os.PathLike[str] = DEFAULT_CONFIG_PATH,
) -> tuple[EngineConfig, bool]:
    """Load the configuration at ``path``, first writing the defaults there if it is missing.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The configuration file. Default :data:`DEFAULT_CONFIG_PATH`.

    Returns
    -------
    tuple of (EngineConfig, bool)
        The configuration, and whether the file was created by this call.

    Raises
    ------
    ConfigError
        When an existing file is invalid, or the defaults cannot be written.
    """
    target = Path(path)
    if target.exists():
        return load_config(target), False
    cfg = EngineConfig()
    # Write a sibling then rename, so a crash or a concurrent reader never sees half a file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(dump_config(cfg))
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"{os.fspath(path)}: cannot write defaults: {exc.strerror or exc}",
            source=os.fspath(path),
        ) from None
    return cfg, True
