"""Engine configuration: one JSON file, validated by frozen pydantic models.

The file is parsed with ``orjson`` and validated by :class:`EngineConfig`. Every section and
every key has a default, so ``{}`` is a complete configuration; unknown keys are errors so a
typo never silently falls back to a default. Validation stops at the first problem and reports
it as one line, ``<json path>: <problem>, got <value>``, through :class:`ConfigError`.

Secrets never live in this file: sections that need one name the environment variable that
holds it (see :attr:`WebConfig.token_env`).

This module reads and writes the file and is the import point for the whole configuration
API; the models live in :mod:`engine.config_models` and the error reporting in
:mod:`engine.config_errors`.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from pydantic import ValidationError

from engine.config_errors import ConfigError, describe
from engine.config_models import (
    BracketConfig,
    BrokerConfig,
    EngineConfig,
    FeedConfig,
    InstrumentConfig,
    JournalConfig,
    RecordConfig,
    RiskConfig,
    SessionConfig,
    StateConfig,
    StrategyConfig,
    WebConfig,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "BracketConfig",
    "BrokerConfig",
    "ConfigError",
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
    "dump_config",
    "ensure_config",
    "load_config",
    "parse_config",
    "validate_config",
]

#: Configuration file used when none is given, relative to the working directory.
DEFAULT_CONFIG_PATH = Path("config/engine.json")


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
    return validate_config(raw, source)


def validate_config(document: object, source: str = "<config>") -> EngineConfig:
    """Validate a configuration document already decoded from JSON.

    Raises
    ------
    ConfigError
        On the first validation error (``<json path>: <problem>, got <value>``).
    """
    try:
        return EngineConfig.model_validate(document)
    except ValidationError as exc:
        path, message = describe(exc.errors(include_url=False)[0], EngineConfig)
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
