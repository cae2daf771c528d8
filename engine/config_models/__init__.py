"""The configuration models: frozen, strict pydantic models, one per section of the file.

:class:`EngineConfig` is the root. Every section and every key has a default, so ``{}`` is a
complete configuration; unknown keys are errors so a typo never silently falls back to a
default. The models' own checks raise through :func:`~engine.config_errors.field_error` so
:func:`~engine.config_errors.describe` can report them at the offending key. A module per
concern: ``base`` (the strict types), ``session``, ``sections`` (the rest).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from engine.broker_config import BrokerConfig
from engine.config_errors import field_error
from engine.config_models.base import Model
from engine.config_models.sections import (
    BracketConfig,
    FeedConfig,
    InstrumentConfig,
    JournalConfig,
    RecordConfig,
    RiskConfig,
    StateConfig,
    StrategyConfig,
    WebConfig,
    default_instruments,
)
from engine.config_models.session import WEEKDAYS, SessionConfig

__all__ = [
    "WEEKDAYS",
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


class EngineConfig(Model):
    """Root of the configuration file; every section is optional."""

    #: Instruments to trade, 1 to 256, symbols unique. Default: NIFTY, tick 0.05, start 22000.
    instruments: Annotated[tuple[InstrumentConfig, ...], Field(min_length=1, max_length=256)] = (
        Field(default_factory=default_instruments)
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
