"""Trading days: sessions across midnight, weekends, holidays, DST, and what resets with the day."""

from __future__ import annotations

from datetime import date

import numpy as np
import orjson
import pytest

from engine.config_models import SessionConfig
from engine.core import Engine
from engine.feeds.session_clock import SessionClock
from engine.journal import Journal, read_journal
from engine.sessions import fill_calendar, trading_day
from kernels import layout
from tests.conftest import MINUTE, EventLog, Ticks, local_ns, make_config, run
from tests.test_cli import run_cli

CHICAGO = "America/Chicago"
#: CME Globex equity index hours with Topstep's flatten, Monday to Friday by the close's date
CME = {
    "enabled": True,
    "timezone": CHICAGO,
    "open": "17:00",
    "close": "16:00",
    "flatten_at": "15:10",
    "trading_days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
}


def rows(session: dict, first: str, n: int) -> np.ndarray:
    calendar = np.zeros((n, 5), np.int64)
    fill_calendar(calendar, date.fromisoformat(first), SessionConfig(**session))
    return calendar


def row(start: str, opens: str, flatten: str, close: str, end: str, zone: str) -> list[int]:
    return [local_ns(text, zone) for text in (start, opens, flatten, close, end)]


@pytest.mark.parametrize(
    ("local", "day"),
    [
        ("2025-11-23 18:00", "2025-11-24"),  # the Sunday open starts Monday's trading day
        ("2025-11-24 15:59", "2025-11-24"),
        ("2025-11-24 16:30", "2025-11-24"),  # the break after the close
        ("2025-11-24 17:00", "2025-11-25"),  # the open starts the next day
        ("2025-11-28 17:30", "2025-11-28"),  # Friday evening: Saturday has no trading day
        ("2025-11-29 12:00", "2025-11-28"),
        ("2025-11-30 16:59", "2025-11-28"),
        ("2025-11-30 17:00", "2025-12-01"),
    ],
)
def test_a_moment_belongs_to_the_trading_day_of_the_next_close(local: str, day: str) -> None:
    assert trading_day(local_ns(local, CHICAGO), SessionConfig(**CME)).isoformat() == day


def test_cme_rows_run_from_open_to_open_and_fold_the_weekend_into_friday() -> None:
    calendar = rows(CME, "2025-11-27", 3)  # Thursday, Friday, Monday
    assert calendar[1].tolist() == row(
        "2025-11-27 17:00", "2025-11-27 17:00", "2025-11-28 15:10", "2025-11-28 16:00",
        "2025-11-30 17:00", CHICAGO,
    )  # fmt: skip
    assert calendar[2, layout.S_DAY_START] == local_ns("2025-11-30 17:00", CHICAGO)
    assert (calendar[1:, layout.S_DAY_START] == calendar[:-1, layout.S_DAY_END]).all()


def test_a_holiday_has_no_trading_day_and_the_day_before_reaches_past_it() -> None:
    session = {**CME, "holidays": ["2025-12-25"]}
    calendar = rows(session, "2025-12-24", 2)
    assert calendar[0, layout.S_DAY_END] == local_ns("2025-12-25 17:00", CHICAGO)
    assert calendar[1, layout.S_CLOSE] == local_ns("2025-12-26 16:00", CHICAGO)
    wednesday_evening = local_ns("2025-12-24 18:00", CHICAGO)
    assert trading_day(wednesday_evening, SessionConfig(**session)) == date(2025, 12, 24)


def test_the_spring_dst_change_in_chicago_moves_the_open_not_the_day() -> None:
    # DST starts Sunday 2026-03-08 at 02:00: Friday closes at 16:00 CST, Sunday opens 17:00 CDT
    friday, monday = rows(CME, "2026-03-06", 2)
    assert friday[layout.S_CLOSE] == local_ns("2026-03-06 16:00", CHICAGO)
    assert monday[layout.S_OPEN] - friday[layout.S_CLOSE] == (49 * 60 - 60) * MINUTE
    assert (monday[layout.S_OPEN] // 10**9) % 86400 == 22 * 3600  # 17:00 CDT is 22:00 UTC
    assert (friday[layout.S_CLOSE] // 10**9) % 86400 == 22 * 3600  # 16:00 CST is 22:00 UTC


def test_the_autumn_dst_change_in_new_york_keeps_an_evening_session_whole() -> None:
    # DST ends Sunday 2026-11-01 at 02:00 New York: Monday's 18:00-17:00 day is 24 h long
    session = {"timezone": "America/New_York", "open": "18:00", "close": "17:00",
               "flatten_at": "16:50"}  # fmt: skip
    sunday, monday = rows(session, "2026-11-01", 2)
    assert sunday[layout.S_DAY_START] == local_ns("2026-10-31 18:00", "America/New_York")
    assert sunday[layout.S_DAY_END] - sunday[layout.S_DAY_START] == 25 * 60 * MINUTE
    assert monday[layout.S_DAY_END] - monday[layout.S_DAY_START] == 24 * 60 * MINUTE


def test_a_session_across_midnight_ahead_of_utc() -> None:
    # a Tokyo night session: Tuesday's trading day opens Monday 16:30 JST (07:30 UTC Monday)
    tokyo = {"timezone": "Asia/Tokyo", "open": "16:30", "close": "06:00", "flatten_at": "05:55"}
    (tuesday,) = rows(tokyo, "2025-11-25", 1)
    assert tuesday[layout.S_OPEN] == local_ns("2025-11-24 16:30", "Asia/Tokyo")
    assert tuesday[layout.S_CLOSE] == local_ns("2025-11-25 06:00", "Asia/Tokyo")
    assert trading_day(local_ns("2025-11-24 23:00", "Asia/Tokyo"), SessionConfig(**tokyo)) == (
        date(2025, 11, 25)
    )


def test_the_day_loss_limit_and_the_journal_day_turn_over_at_the_open_not_at_midnight(tmp_path):
    cfg = make_config(
        session=CME,
        risk={"daily_loss_limit": 2.0, "max_position": 10, "max_orders_per_second": 1000},
        journal={"path": str(tmp_path / "journal.jsonl")},
    )
    engine = Engine(cfg)
    log = EventLog(engine.state.symbols)
    journal = Journal(cfg, engine.state.symbols)
    engine.sinks += [log, journal]
    state = engine.state
    monday = Ticks(ts=local_ns("2025-11-24 09:00", CHICAGO), step=MINUTE)
    for price in (100.0, 100.0, 100.0, 100.25, 99.0, 98.0):  # long at 100.25, then -2.25
        monday.add(price)
    monday.add(98.5, ts=local_ns("2025-11-24 16:59", CHICAGO))  # the break: still Monday
    run(engine, monday)
    assert [r["reason"] for r in log.records("halt")] == ["daily_loss"]
    assert state.halt_reason() == "daily_loss" and state.account(layout.A_DAY_REALIZED) == -2.25
    run(engine, Ticks(ts=local_ns("2025-11-24 17:01", CHICAGO)).extend([98.25]))
    # Tuesday's trading day began at Monday's 17:00 open: the halt is lifted, the day is new
    assert state.halt_reason() is None and state.account(layout.A_DAY_REALIZED) == 0.0
    journal.close()
    fills = [line for line in read_journal(cfg.journal.path) if line["type"] == "fill"]
    # Monday's entry and risk exit, then at 17:01 an entry that is Tuesday's
    days = [(line["action"], line["day"]) for line in fills]
    assert days == [("entry", "2025-11-24"), ("exit", "2025-11-24"), ("entry", "2025-11-25")]


def test_the_session_clock_puts_ticks_only_in_trading_hours() -> None:
    session = SessionConfig(**{**CME, "holidays": ["2025-11-27"]})
    clock = SessionClock(session, date(2025, 11, 24))
    hour = 60 * MINUTE
    # 23 h of trading a day: 5 days from Monday, the Thursday holiday skipped
    offsets = np.arange(0, 5 * 23 * hour, 10 * MINUTE, dtype=np.int64)
    stamps = offsets.copy()
    clock.retime(stamps)
    assert stamps[0] == local_ns("2025-11-23 17:00", CHICAGO)  # Monday's day opens on Sunday
    assert (np.diff(stamps) > 0).all()
    days = {trading_day(int(t), session) for t in stamps}
    assert days == {date(2025, 11, d) for d in (24, 25, 26, 28)} | {date(2025, 12, 1)}
    calendar = rows({**CME, "holidays": ["2025-11-27"]}, "2025-11-24", 5)
    inside = np.zeros(len(stamps), bool)
    for opens, closes in calendar[:, [layout.S_OPEN, layout.S_CLOSE]]:
        inside |= (stamps >= opens) & (stamps < closes)
    assert inside.all()  # none in the break, the weekend or the holiday


def test_run_py_ticks_writes_a_week_of_cme_trading_days(tmp_path) -> None:
    config = tmp_path / "c.json"
    config.write_bytes(orjson.dumps({"session": CME, "feed": {"ticks_per_second": 2.0}}))
    ticks = tmp_path / "week.npy"
    made = run_cli("ticks", "--config", str(config), "--out", str(ticks), "--count", "828000")
    assert made.returncode == 0, made.stderr
    stamps = np.load(ticks)["ts"]  # 828,000 ticks at 2 a second: five 23-hour days
    session = SessionConfig(**CME)
    days = sorted({trading_day(int(t), session) for t in stamps[::600]})
    assert len(days) == 5 and all(day.weekday() < 5 for day in days)
    times = [int(t) for t in stamps[::600]]
    assert all(trading_day(t, session) in days for t in times)
