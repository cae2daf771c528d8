"""Broker configuration: which broker routes orders, where it lives, and the instruments' ids.

Secrets never appear here: the config names the environment variables that hold them. Every
URL has the broker's documented default and can be overridden, so tests point the adapters at
local fake servers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator
from pydantic_core import PydanticCustomError

from engine.config_errors import CUSTOM_ERROR, field_error

Int = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Str = Annotated[str, Strict()]
EnvName = Annotated[str, Strict(), Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Url = Annotated[str, Strict(), Field(pattern=r"^(https?|wss?)://[^\s/]+")]

#: brokers that route real orders; ``paper`` fills inside the process
LIVE_BROKERS: tuple[str, ...] = ("kite", "upstox", "projectx")

#: documented endpoints: REST base, market-data WebSocket (Kite ticker, ProjectX hubs root)
DEFAULT_URLS: dict[str, tuple[str, str]] = {
    "kite": ("https://api.kite.trade", "wss://ws.kite.trade"),
    "upstox": ("https://api.upstox.com", ""),  # the v3 feed URL comes from its authorize call
    "projectx": ("https://api.topstepx.com", "wss://rtc.topstepx.com/hubs"),
}

#: default environment variable names: (api key, api secret, access token, user name)
DEFAULT_ENV: dict[str, tuple[str, str, str, str]] = {
    "kite": ("KITE_API_KEY", "KITE_API_SECRET", "KITE_ACCESS_TOKEN", ""),
    "upstox": ("UPSTOX_API_KEY", "UPSTOX_API_SECRET", "UPSTOX_ACCESS_TOKEN", ""),
    "projectx": ("PROJECTX_API_KEY", "", "", "PROJECTX_USERNAME"),
}

#: default order product: Kite intraday ``MIS``, Upstox intraday ``I``
DEFAULT_PRODUCT: dict[str, str] = {"kite": "MIS", "upstox": "I", "projectx": ""}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KiteIds(_Model):
    """An instrument's Kite Connect identity."""

    #: Numeric token of the ticker; its low byte is the segment. Required.
    instrument_token: Annotated[Int, Field(ge=1, le=2**32 - 1)]
    #: Trading symbol, e.g. ``"INFY"`` or ``"NIFTY24DECFUT"``. Required.
    tradingsymbol: Annotated[Str, Field(min_length=1)]
    #: Exchange of the order. Default ``"NSE"``.
    exchange: Literal["NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX"] = "NSE"


class UpstoxIds(_Model):
    """An instrument's Upstox identity."""

    #: Instrument key, ``SEGMENT|ISIN`` or ``SEGMENT|token``, e.g. ``"NSE_EQ|INE848E01016"``.
    instrument_key: Annotated[Str, Field(pattern=r"^[A-Z_]+\|\S+$")]


class ProjectXIds(_Model):
    """An instrument's ProjectX contract: a fixed id, or a search resolved at start."""

    #: Contract id, e.g. ``"CON.F.US.ENQ.H25"``. Default null.
    contract_id: Annotated[Str, Field(min_length=1)] | None = None
    #: Text searched with ``Contract/search`` at start; the active contract is traded.
    #: Default null.
    contract_search: Annotated[Str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ProjectXIds:
        if (self.contract_id is None) == (self.contract_search is None):
            raise field_error(
                "contract_id", "give exactly one of contract_id and contract_search", None
            )
        return self


class BrokerConfig(_Model):
    """Order routing: the paper broker or a live broker and how to reach it."""

    #: ``"paper"`` fills inside the process; ``"kite"``, ``"upstox"`` and ``"projectx"``
    #: send real orders. Default ``"paper"``.
    name: Literal["paper", "kite", "upstox", "projectx"] = "paper"
    #: Adverse slippage applied to paper market fills, in ticks. Default 0.
    slippage_ticks: Annotated[Int, Field(ge=0)] = 0
    #: REST base URL; null uses the broker's documented one. Default null.
    base_url: Url | None = None
    #: Market-data WebSocket URL (Kite ticker, ProjectX hubs root); null uses the documented
    #: one. Default null.
    ws_url: Url | None = None
    #: Variable holding the API key (Kite ``api_key``, Upstox client id, ProjectX API key);
    #: null uses ``KITE_API_KEY``, ``UPSTOX_API_KEY`` or ``PROJECTX_API_KEY``. Default null.
    api_key_env: EnvName | None = None
    #: Variable holding the API secret (Kite, Upstox); null uses ``KITE_API_SECRET`` or
    #: ``UPSTOX_API_SECRET``. Default null.
    api_secret_env: EnvName | None = None
    #: Variable holding the day's access token (Kite, Upstox); when unset the token is read from
    #: ``token_path``. Null uses ``KITE_ACCESS_TOKEN`` or ``UPSTOX_ACCESS_TOKEN``. Default null.
    access_token_env: EnvName | None = None
    #: Variable holding the ProjectX user name; null uses ``PROJECTX_USERNAME``. Default null.
    user_name_env: EnvName | None = None
    #: File where ``run.py login`` stores the access token (mode 0600); null uses
    #: ``<journal dir>/<broker>_token``. Default null.
    token_path: Annotated[Str, Field(min_length=1)] | None = None
    #: Order product; null uses intraday (Kite ``MIS``, Upstox ``I``). Default null.
    product: Annotated[Str, Field(min_length=1)] | None = None
    #: ProjectX account id; null takes the only active account. Default null.
    account_id: Annotated[Int, Field(ge=1)] | None = None
    #: ProjectX ``Contract/search`` ``live`` flag (false searches the simulated data).
    #: Default false.
    live_contracts: Annotated[bool, Strict()] = False
    #: Seconds an HTTP request may take before it is abandoned. Default 5.
    timeout_s: Annotated[Float, Field(gt=0, le=60)] = 5.0

    @field_validator("base_url", "ws_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        if value is not None and value.endswith("/"):
            raise PydanticCustomError(CUSTOM_ERROR, "must not end with '/'")
        return value

    @property
    def live(self) -> bool:
        """Whether orders go to a real broker."""
        return self.name in LIVE_BROKERS

    @property
    def rest_url(self) -> str:
        """The REST base URL in use."""
        return self.base_url or DEFAULT_URLS[self.name][0]

    @property
    def stream_url(self) -> str:
        """The market-data WebSocket URL in use."""
        return self.ws_url or DEFAULT_URLS[self.name][1]

    def env_name(self, which: Literal["api_key", "api_secret", "access_token", "user_name"]) -> str:
        """Return the environment variable name configured (or defaulted) for ``which``."""
        configured = getattr(self, f"{which}_env")
        if configured is not None:
            return configured
        slot = ("api_key", "api_secret", "access_token", "user_name").index(which)
        return DEFAULT_ENV[self.name][slot]

    @property
    def order_product(self) -> str:
        """The order product in use."""
        return self.product or DEFAULT_PRODUCT[self.name]
