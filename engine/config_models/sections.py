"""The sections of the configuration file besides the session: one model each."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, JsonValue, field_validator, model_validator
from pydantic_core import PydanticCustomError

from engine.broker_config import KiteIds, ProjectXIds, UpstoxIds
from engine.config_errors import CUSTOM_ERROR, field_error
from engine.config_models.base import ENV_NAME, Bool, Float, Int, Model, Str


class InstrumentConfig(Model):
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


def default_instruments() -> tuple[InstrumentConfig, ...]:
    """Return the default ``instruments``: NIFTY, tick 0.05, starting at 22000."""
    return (InstrumentConfig(symbol="NIFTY", sim_start_price=22000.0),)


class StrategyConfig(Model):
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


class BracketConfig(Model):
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


class RiskConfig(Model):
    """Pre-trade and P&L limits enforced by the risk kernel."""

    #: Realised plus open loss for the day that halts trading; null = no limit. Default null.
    daily_loss_limit: Annotated[Float, Field(gt=0)] | None = None
    #: Loss that halts trading until the operator resumes, measured as ``max_loss_mode`` says;
    #: null = no limit. Default null.
    max_loss_limit: Annotated[Float, Field(gt=0)] | None = None
    #: ``"intraday_trailing"``: equity more than the limit below its running peak (the peak
    #: restarts on resume); ``"eod_trailing"``: equity at or below the floor, the highest
    #: end-of-trading-day balance less the limit, moved only at each day's end;
    #: ``"static"``: equity at or below the starting balance less the limit.
    #: Default ``"intraday_trailing"``.
    max_loss_mode: Literal["intraday_trailing", "eod_trailing", "static"] = "intraday_trailing"
    #: With ``eod_trailing``: the floor stops rising at the starting balance (Topstep's rule).
    #: Default false.
    max_loss_locks_at_start: Bool = False
    #: The account's balance at the start: balance = starting balance + realized P&L, equity
    #: = balance + unrealized. Default 0.
    starting_balance: Annotated[Float, Field(ge=0)] = 0.0
    #: Profit over the starting balance that, once realized, flattens every position at once
    #: (exit reason ``risk``) and stops entries until the operator resumes (an evaluation
    #: passed); null = none. Default null.
    profit_target: Annotated[Float, Field(gt=0)] | None = None
    #: Lots open at once across all instruments (a prop firm's position limit); an entry that
    #: would exceed it is refused (``max_contracts``). Null = none. Default null.
    max_contracts: Annotated[Int, Field(ge=1)] | None = None
    #: Largest absolute position per instrument, in lots. Default 10.
    max_position: Annotated[Int, Field(ge=1)] = 10
    #: Order submissions allowed per second across instruments. Default 50.
    max_orders_per_second: Annotated[Int, Field(ge=1)] = 50
    #: Largest move of a tick from the instrument's last accepted price (before the first one,
    #: ``reference_price`` or a restored position's entry), in percent; a tick outside it is
    #: refused and counted as ``price_band``. In the spirit of exchange circuit limits (NSE
    #: 10/15/20 %, CME equity index 7/13/20 %); null = no band. Default 20.
    price_band_pct: Annotated[Float, Field(gt=0)] | None = 20.0


class FeedConfig(Model):
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


class JournalConfig(Model):
    """Append-only JSON Lines journal of orders, fills, risk and control events."""

    #: Journal file, relative to the working directory. Default ``"var/journal.jsonl"``.
    path: Annotated[Str, Field(min_length=1)] = "var/journal.jsonl"
    #: fsync each drained block of events (one group commit per batch with events) before its
    #: orders leave, so a power loss loses no order line; costs ~0.15 ms per such batch here
    #: (BENCHMARKS.md). false leaves it to the OS, which survives a crash but not power loss.
    #: Default true.
    fsync: Bool = True


class RecordConfig(Model):
    """The flight recorder of live runs (``engine.record``), replayed by ``replay-session``."""

    #: Record every live run's inputs. Default true.
    enabled: Bool = True
    #: Folder of the recordings, one file per trading day and run. Default ``"var/record"``.
    dir: Annotated[Str, Field(min_length=1)] = "var/record"


class StateConfig(Model):
    """Sizes of the preallocated NumPy state."""

    #: Capacity of the event ring buffer, in events. Default 65536.
    event_capacity: Annotated[Int, Field(ge=1024)] = 65536
    #: Ticks processed per kernel call. Default 65536.
    chunk_ticks: Annotated[Int, Field(ge=1024)] = 65536


class WebConfig(Model):
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
        if ENV_NAME.match(value) is None:
            raise PydanticCustomError(CUSTOM_ERROR, "must be an environment variable name")
        return value
