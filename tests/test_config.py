"""Tests for engine.config: defaults, shipped files, error messages, immutability."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import orjson
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    EngineConfig,
    dump_config,
    ensure_config,
    load_config,
    parse_config,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "config" / "examples").glob("*.json")) + [ROOT / DEFAULT_CONFIG_PATH]


def error_of(doc: object) -> ConfigError:
    """Validate ``doc`` (serialised to JSON) and return the ConfigError it must raise."""
    with pytest.raises(ConfigError) as info:
        parse_config(orjson.dumps(doc))
    return info.value


def message_of(doc: object) -> str:
    return str(error_of(doc))


# --- defaults -----------------------------------------------------------------------------


def test_empty_object_gives_defaults() -> None:
    cfg = parse_config(b"{}")
    assert cfg == EngineConfig()
    assert [i.symbol for i in cfg.instruments] == ["NIFTY"]
    nifty = cfg.instruments[0]
    assert (nifty.tick_size, nifty.lot_size, nifty.point_value) == (0.05, 1, 1.0)
    assert nifty.sim_start_price == 22000.0
    assert (cfg.strategy.name, cfg.strategy.fast, cfg.strategy.slow) == ("ema_cross", 10, 30)
    assert cfg.strategy.risk_per_trade is None
    assert (cfg.bracket.target_ticks, cfg.bracket.stop_ticks) == (20, 10)
    assert cfg.risk.daily_loss_limit is None and cfg.risk.max_position == 10
    assert cfg.session.timezone == "Asia/Kolkata"
    assert cfg.session.open_time == time(9, 15)
    assert cfg.session.close_time == time(15, 30)
    assert cfg.session.flatten_time == time(15, 20)
    assert cfg.broker.name == "paper" and cfg.feed.name == "sim"
    assert cfg.journal.path == "var/journal.jsonl" and cfg.journal.fsync is True
    assert (cfg.record.enabled, cfg.record.dir) == (True, "var/record")
    assert cfg.risk.price_band_pct == 20.0 and nifty.reference_price is None
    assert cfg.feed.max_clock_skew_s == 30.0
    assert cfg.state.event_capacity == 65536
    assert (cfg.web.host, cfg.web.port, cfg.web.token_env) == ("127.0.0.1", 8000, "OTRADE_TOKEN")


def test_missing_file_is_written_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "engine.json"
    cfg, created = ensure_config(path)
    assert created is True
    assert cfg == EngineConfig()
    text = path.read_bytes()
    assert text.endswith(b"}\n")
    assert text.startswith(b'{\n  "instruments": [\n')
    again, created_again = ensure_config(path)
    assert created_again is False
    assert again == cfg
    assert load_config(path) == cfg
    assert not [p for p in path.parent.iterdir() if p.name != "engine.json"]


def test_ensure_config_leaves_existing_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "engine.json"
    path.write_bytes(b'{"strategy": {"fast": 5}}')
    cfg, created = ensure_config(path)
    assert created is False
    assert cfg.strategy.fast == 5
    assert path.read_bytes() == b'{"strategy": {"fast": 5}}'


def test_load_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: file not found"


def test_dump_round_trips() -> None:
    cfg = parse_config(b'{"instruments": [{"symbol": "ES", "tick_size": 0.25}]}')
    assert parse_config(dump_config(cfg)) == cfg


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_files_load(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, EngineConfig)


def test_shipped_engine_json_is_the_defaults() -> None:
    assert (ROOT / DEFAULT_CONFIG_PATH).read_bytes() == dump_config(EngineConfig())


def test_examples_content() -> None:
    multi = load_config(ROOT / "config/examples/backtest-multi.json")
    assert [i.symbol for i in multi.instruments] == ["NIFTY", "BANKNIFTY", "RELIANCE"]
    assert multi.session.enabled is False
    assert (multi.feed.name, multi.feed.path) == ("replay", "var/ticks.csv")
    es = load_config(ROOT / "config/examples/futures-es.json")
    assert (es.instrument("ES").tick_size, es.instrument("ES").point_value) == (0.25, 50.0)
    assert es.session.timezone == "America/Chicago"
    assert (es.session.open_time, es.session.close_time) == (time(17, 0), time(16, 0))
    assert es.session.flatten_time == time(15, 10) and es.session.overnight
    assert es.session.weekdays == frozenset(range(5))  # Monday to Friday, by the close
    assert (es.risk.daily_loss_limit, es.risk.max_loss_limit) == (1000.0, 2000.0)
    nse = load_config(ROOT / "config/examples/nse.json")
    assert (nse.session.open, nse.session.close, nse.session.overnight) == ("09:15", "15:30", False)


# --- message shapes -----------------------------------------------------------------------


def test_out_of_range() -> None:
    err = error_of({"bracket": {"stop_ticks": -3}})
    assert str(err) == "bracket.stop_ticks: must be > 0, got -3"
    assert err.path == "bracket.stop_ticks"
    assert message_of({"bracket": {"trail_ticks": -1}}) == (
        "bracket.trail_ticks: must be >= 0, got -1"
    )
    assert message_of({"instruments": [{"symbol": "X", "tick_size": 0}]}) == (
        "instruments[0].tick_size: must be > 0, got 0"
    )
    assert message_of({"web": {"port": 70000}}) == "web.port: must be <= 65535, got 70000"


def test_wrong_types() -> None:
    assert message_of({"strategy": {"fast": "ten"}}) == (
        "strategy.fast: must be an integer, got 'ten'"
    )
    assert message_of({"strategy": {"fast": "10"}}) == (
        "strategy.fast: must be an integer, got '10'"
    )
    assert message_of({"strategy": {"fast": 10.0}}) == (
        "strategy.fast: must be an integer, got 10.0"
    )
    assert message_of({"instruments": [{"symbol": "X", "tick_size": "0.05"}]}) == (
        "instruments[0].tick_size: must be a number, got '0.05'"
    )
    assert message_of({"session": {"enabled": "yes"}}) == (
        "session.enabled: must be true or false, got 'yes'"
    )
    assert message_of({"journal": {"path": 5}}) == "journal.path: must be a string, got 5"
    assert message_of({"strategy": [1]}) == "strategy: must be an object, got [1]"
    assert message_of({"instruments": {}}) == "instruments: must be a list, got {}"
    assert message_of([]) == "<root>: must be an object"
    assert message_of({"risk": {"daily_loss_limit": "none"}}) == (
        "risk.daily_loss_limit: must be a number or null, got 'none'"
    )


def test_floats_accept_ints() -> None:
    cfg = parse_config(b'{"instruments": [{"symbol": "ES", "tick_size": 1, "point_value": 50}]}')
    assert cfg.instruments[0].tick_size == 1.0


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"strategy": {"fast": True}}, "strategy.fast: must be an integer, got true"),
        ({"bracket": {"stop_ticks": False}}, "bracket.stop_ticks: must be an integer, got false"),
        (
            {"risk": {"max_loss_limit": True}},
            "risk.max_loss_limit: must be a number or null, got true",
        ),
    ],
)
def test_bool_is_not_a_number(doc: object, message: str) -> None:
    assert message_of(doc) == message


def test_unknown_keys() -> None:
    assert message_of({"strategy": {"fsat": 10}}) == "strategy.fsat: unknown key"
    assert message_of({"webb": {}}) == "webb: unknown key"
    assert message_of({"instruments": [{"symbol": "X", "tick": 1}]}) == (
        "instruments[0].tick: unknown key"
    )


def test_literal() -> None:
    assert message_of({"broker": {"name": "kyte"}}) == (
        "broker.name: must be one of 'paper', 'kite', 'upstox', 'projectx', got 'kyte'"
    )
    assert message_of({"feed": {"name": "kite"}}) == (
        "feed.name: must be one of 'sim', 'replay', 'ws', 'broker', got 'kite'"
    )


def test_malformed_json_names_line_and_column() -> None:
    data = b'{\n  "strategy": {"fast": 10},\n    oops\n}\n'
    with pytest.raises(ConfigError) as info:
        parse_config(data, "config/engine.json")
    message = str(info.value)
    assert message.startswith("config/engine.json: invalid JSON at line 3, column 5: ")
    assert "\n" not in message
    assert info.value.path is None


def test_malformed_json_in_file(tmp_path: Path) -> None:
    path = tmp_path / "engine.json"
    path.write_bytes(b'{"a": }')
    with pytest.raises(ConfigError, match=r"invalid JSON at line 1, column 7: "):
        load_config(path)
    with pytest.raises(ConfigError, match=r"invalid JSON at line 1, column 7: "):
        ensure_config(path)


def test_duplicate_symbol() -> None:
    err = error_of({"instruments": [{"symbol": "NIFTY"}, {"symbol": "NIFTY"}]})
    assert str(err) == "instruments[1].symbol: duplicate symbol, got 'NIFTY'"
    assert err.path == "instruments[1].symbol"


def test_instrument_list_bounds() -> None:
    assert message_of({"instruments": []}) == "instruments: must have at least 1 entry, got 0"
    many = [{"symbol": f"S{i}"} for i in range(257)]
    assert message_of({"instruments": many}) == (
        "instruments: must have at most 256 entries, got 257"
    )
    assert message_of({"instruments": [{"symbol": ""}]}) == (
        "instruments[0].symbol: must not be empty, got ''"
    )
    assert message_of({"instruments": [{"tick_size": 1}]}) == (
        "instruments[0].symbol: required key missing"
    )


@pytest.mark.parametrize("slow", [10, 3])
def test_slow_must_exceed_fast(slow: int) -> None:
    err = error_of({"strategy": {"fast": 10, "slow": slow}})
    assert str(err) == f"strategy.slow: must be > strategy.fast (10), got {slow}"
    assert err.path == "strategy.slow"


def test_bad_timezone() -> None:
    assert message_of({"session": {"timezone": "Mars/Base"}}) == (
        "session.timezone: unknown time zone, got 'Mars/Base'"
    )


@pytest.mark.parametrize("value", ["9:15", "24:00", "09:60", "0915", "09:15:00", ""])
def test_bad_hhmm(value: str) -> None:
    assert message_of({"session": {"open": value}}) == (
        f'session.open: must be "HH:MM" between 00:00 and 23:59, got {value!r}'
    )


@pytest.mark.parametrize("flatten_at", ["15:45", "09:15", "08:00"])
def test_flatten_outside_session(flatten_at: str) -> None:
    err = error_of({"session": {"flatten_at": flatten_at}})
    assert str(err) == (
        "session.flatten_at: must be after session.open (09:15) and not after "
        f"session.close (15:30), got {flatten_at!r}"
    )


def test_flatten_at_close_is_allowed() -> None:
    cfg = parse_config(b'{"session": {"flatten_at": "15:30"}}')
    assert cfg.session.flatten_time == cfg.session.close_time


def test_a_close_before_the_open_spans_midnight() -> None:
    cme = {"timezone": "America/Chicago", "open": "17:00", "close": "16:00", "flatten_at": "15:10"}
    session = parse_config(orjson.dumps({"session": cme})).session
    assert session.overnight and not parse_config(b"{}").session.overnight
    # flatten_at follows the session across midnight: 23:00 is inside it, 16:30 is not
    evening = parse_config(orjson.dumps({"session": {**cme, "flatten_at": "23:00"}})).session
    assert evening.flatten_at == "23:00"
    assert message_of({"session": {**cme, "flatten_at": "16:30"}}) == (
        "session.flatten_at: must be after session.open (17:00) and not after "
        "session.close (16:00), got '16:30'"
    )
    assert message_of({"session": {"close": "09:15", "flatten_at": "09:15"}}) == (
        "session.close: must differ from session.open (09:15), got '09:15'"
    )


@pytest.mark.parametrize(
    ("session", "message"),
    [
        ({"holidays": ["2025-12-25", "25/12/2025"]}, "session.holidays: must be dates"),
        ({"holidays": ["2025-02-30"]}, "session.holidays: must be dates"),
        ({"trading_days": ["Mon", "Funday"]}, "session.trading_days[1]: "),
        ({"trading_days": []}, "session.trading_days: must name at least one weekday"),
    ],
)
def test_bad_trading_days_and_holidays_are_named(session: dict, message: str) -> None:
    assert message_of({"session": session}).startswith(message)


def test_replay_needs_path() -> None:
    err = error_of({"feed": {"name": "replay"}})
    assert str(err) == "feed.path: required when feed.name is 'replay', got null"
    assert err.path == "feed.path"
    cfg = parse_config(b'{"feed": {"name": "replay", "path": "var/ticks.csv"}}')
    assert cfg.feed.path == "var/ticks.csv"


def test_only_first_error_on_one_line() -> None:
    message = message_of({"strategy": {"fast": -1, "slow": -2}, "bracket": {"stop_ticks": 0}})
    assert message == "strategy.fast: must be >= 1, got -1"


def test_long_values_are_truncated() -> None:
    message = message_of({"journal": {"path": ["x" * 500]}})
    assert message.startswith("journal.path: must be a string, got [")
    assert len(message) < 120


# --- immutability -------------------------------------------------------------------------


def test_frozen() -> None:
    cfg = EngineConfig()
    with pytest.raises(pydantic.ValidationError):
        cfg.strategy.fast = 3  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        cfg.bracket = cfg.bracket  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        cfg.instruments[0].tick_size = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.instruments[0] = cfg.instruments[0]  # type: ignore[index]


# --- property -----------------------------------------------------------------------------


# orjson reads integers outside the 64-bit range as floats, so stay inside it to test ints.
@given(st.integers(min_value=-(2**63), max_value=0))
def test_target_ticks_below_one_is_refused(value: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(b'{"bracket": {"target_ticks": %d}}' % value)
    assert str(info.value) == f"bracket.target_ticks: must be > 0, got {value}"
    assert info.value.path == "bracket.target_ticks"
