"""The State owner: array sizes, parameters in the book, the session calendar, snapshots."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest

from engine.sessions import CALENDAR_DAYS
from engine.state import State
from kernels import layout
from kernels.layout import (
    A_DAILY_LOSS_LIMIT,
    A_EVENT_CAP,
    A_MAX_LOSS_LIMIT,
    A_MAX_ORDERS_PER_SEC,
    A_N_INST,
    A_SESSION_ROW,
    S_DAY_END,
    S_DAY_START,
    S_FLATTEN,
    S_OPEN,
)
from tests.conftest import (
    DAY,
    SECOND,
    T0,
    Ticks,
    local_ns,
    make_config,
    make_engine,
    make_state,
    run,
)

THREE = [
    {"symbol": "AAA", "tick_size": 0.25, "lot_size": 10, "point_value": 2.0},
    {"symbol": "BBB", "tick_size": 0.05, "lot_size": 75, "point_value": 1.0},
    {"symbol": "CCC", "tick_size": 1.0, "lot_size": 1, "point_value": 50.0},
]


def test_state_sizes_come_from_the_config():
    state = make_state(instruments=THREE, state={"event_capacity": 2048})
    n = 3
    assert state.n == n
    assert state.book.shape == (n + CALENDAR_DAYS + 1, layout.N_BOOK_COLS)
    assert state.acct == state.book.shape[0] - 1
    assert state.calendar.shape == (CALENDAR_DAYS, layout.N_BOOK_COLS)
    assert np.shares_memory(state.calendar, state.book)
    assert np.shares_memory(state.ints, state.book)
    assert state.events.shape == (2048, layout.N_EVENT_COLS)
    assert state.events.dtype == np.int64
    assert np.shares_memory(state.event_floats, state.events)
    assert state.account_int(A_EVENT_CAP) == 2048
    assert state.account_int(A_N_INST) == n
    assert state.symbols == ("AAA", "BBB", "CCC")
    assert state.index == {"AAA": 0, "BBB": 1, "CCC": 2}


def test_book_columns_are_wide_enough_for_every_row_kind():
    assert layout.N_BOOK_COLS >= layout.N_INST_COLS > layout.I_DAY_START
    assert layout.N_BOOK_COLS >= layout.N_ACCOUNT_COLS
    assert layout.A_REFUSED + len(layout.GATE_REASONS) <= layout.N_ACCOUNT_COLS
    assert layout.E_MFE < layout.N_EVENT_COLS


def test_parameters_are_copied_from_the_config():
    state = make_state(
        instruments=THREE,
        strategy={
            "fast": 4,
            "slow": 9,
            "quantity": 3,
            "bar_seconds": 15,
            "atr_period": 7,
            "rsi_period": 11,
            "risk_per_trade": 500.0,
        },
        bracket={
            "target_ticks": 12,
            "stop_ticks": 6,
            "trail_ticks": 3,
            "breakeven_ticks": 5,
            "target_atr": 2.5,
            "stop_atr": 1.25,
        },
        risk={
            "daily_loss_limit": 1000.0,
            "max_loss_limit": 2500.0,
            "max_position": 7,
            "max_orders_per_second": 13,
        },
        broker={"slippage_ticks": 2},
    )
    shared = {
        layout.I_ALPHA_FAST: 2.0 / 5,
        layout.I_ALPHA_SLOW: 2.0 / 10,
        layout.I_SLOW: 9.0,
        layout.I_QUANTITY: 3.0,
        layout.I_ATR_PERIOD: 7.0,
        layout.I_RSI_PERIOD: 11.0,
        layout.I_RISK_PER_TRADE: 500.0,
        layout.I_TARGET_TICKS: 12.0,
        layout.I_STOP_TICKS: 6.0,
        layout.I_TRAIL_TICKS: 3.0,
        layout.I_BREAKEVEN_TICKS: 5.0,
        layout.I_TARGET_ATR: 2.5,
        layout.I_STOP_ATR: 1.25,
        layout.I_SLIPPAGE_TICKS: 2.0,
        layout.I_MAX_POSITION: 7.0,
    }
    for i, inst in enumerate(THREE):
        row = state.book[i]
        assert row[layout.I_TICK_SIZE] == inst["tick_size"]
        assert row[layout.I_LOT_SIZE] == inst["lot_size"]
        assert row[layout.I_POINT_VALUE] == inst["point_value"]
        for column, value in shared.items():
            assert row[column] == value, column
        assert math.isnan(row[layout.I_ATR]) and math.isnan(row[layout.I_RSI])
        assert state.ints[i, layout.I_BAR_NS] == 15 * SECOND
        assert state.ints[i, layout.I_LAST_TS] == np.iinfo(np.int64).min
        assert row[layout.I_SIDE] == layout.FLAT
    assert state.account(A_DAILY_LOSS_LIMIT) == 1000.0
    assert state.account(A_MAX_LOSS_LIMIT) == 2500.0
    assert state.account(A_MAX_ORDERS_PER_SEC) == 13.0


def test_unset_limits_are_infinite_and_fixed_sizing_has_no_risk():
    state = make_state(risk={"daily_loss_limit": None, "max_loss_limit": None})
    assert state.account(A_DAILY_LOSS_LIMIT) == math.inf
    assert state.account(A_MAX_LOSS_LIMIT) == math.inf
    assert state.book[0, layout.I_RISK_PER_TRADE] == 0.0


def test_a_fresh_state_reports_nothing():
    state = make_state(instruments=THREE)
    assert state.rejected_ticks() == {}
    assert state.refused_entries() == {}
    assert state.halt_reason() is None
    assert state.positions() == {}


# -- session calendar ------------------------------------------------------------------------

CHICAGO = "America/Chicago"
CHICAGO_SESSION = {
    "enabled": True,
    "timezone": CHICAGO,
    "open": "08:30",
    "flatten_at": "14:55",
    "close": "15:00",
}


def test_ensure_calendar_rows_are_local_days():
    state = make_state(session=CHICAGO_SESSION)
    first = local_ns("2025-03-08 12:00:00", CHICAGO)
    state.ensure_calendar(first, first + 3 * DAY)
    cal = state.calendar
    for k, day in enumerate(("2025-03-08", "2025-03-09", "2025-03-10")):
        assert cal[k, S_DAY_START] == local_ns(f"{day} 00:00:00", CHICAGO)
        assert cal[k, S_OPEN] == local_ns(f"{day} 08:30:00", CHICAGO)
        assert cal[k, S_FLATTEN] == local_ns(f"{day} 14:55:00", CHICAGO)
        assert cal[k, S_DAY_END] == cal[k + 1, S_DAY_START]
    # the day daylight saving starts has 23 hours
    assert cal[1, S_DAY_END] - cal[1, S_DAY_START] == 23 * 3600 * SECOND
    assert state.account_int(A_SESSION_ROW) == state.n


def test_ensure_calendar_is_a_no_op_once_covered():
    engine, _ = make_engine(session=CHICAGO_SESSION)
    state = engine.state
    ticks = Ticks(ts=local_ns("2025-03-07 10:00:00", CHICAGO), step=DAY)
    ticks.extend([100.0, 100.0, 100.0])
    run(engine, ticks)
    row = state.account_int(A_SESSION_ROW)
    assert row == state.n + 2
    calendar = state.calendar.copy()
    state.ensure_calendar(ticks.rows[0][3], ticks.rows[-1][3] + DAY)
    assert state.account_int(A_SESSION_ROW) == row
    assert np.array_equal(state.calendar, calendar)


def daily_stream(days: int) -> tuple[Ticks, list[int]]:
    """One crossover at 10:00 and one tick after flatten_at, Chicago time, every day from
    2024-01-01 (several daylight-saving changes); return the ticks and each day's first row."""
    ticks = Ticks()
    starts = []
    first = date(2024, 1, 1)
    for d in range(days):
        day = (first + timedelta(days=d)).isoformat()
        starts.append(len(ticks))
        ticks.extend([100.0, 100.0, 100.0, 100.25], start=local_ns(f"{day} 10:00:00", CHICAGO))
        ticks.add(100.25, ts=local_ns(f"{day} 14:58:00", CHICAGO))
    starts.append(len(ticks))
    return ticks, starts


def test_a_long_replay_refills_the_calendar_and_keeps_days_right():
    days = 450
    engine, log = make_engine(session=CHICAGO_SESSION)
    state = engine.state
    ticks, starts = daily_stream(days)
    first = date(2024, 1, 1)
    for d in range(days):
        run(engine, ticks.rows[starts[d] : starts[d + 1]])
        day = (first + timedelta(days=d)).isoformat()
        row = state.account_int(A_SESSION_ROW)
        assert state.ints[row, S_DAY_START] == local_ns(f"{day} 00:00:00", CHICAGO), day
        assert state.ints[row, S_FLATTEN] == local_ns(f"{day} 14:55:00", CHICAGO), day
    # the calendar was refilled: its first row is no longer the first day
    assert state.calendar[0, S_DAY_START] > local_ns("2024-01-01 00:00:00", CHICAGO)

    entries, trades = log.records("entry"), log.trades()
    assert len(entries) == len(trades) == days
    assert {t["exit_reason"] for t in trades} == {"eod"}
    for d in range(days):
        open_ts = ticks.rows[starts[d]][3]
        assert open_ts <= entries[d]["tick_t"] <= trades[d]["exit_ts"]
        assert trades[d]["exit_ts"] == ticks.rows[starts[d + 1] - 1][3]
    assert state.refused_entries() == {}


def test_a_long_replay_in_one_batch_matches_daily_batches():
    days = 450
    ticks, starts = daily_stream(days)
    whole, whole_log = make_engine(session=CHICAGO_SESSION)
    run(whole, ticks)
    daily, daily_log = make_engine(session=CHICAGO_SESSION)
    for d in range(days):
        run(daily, ticks.rows[starts[d] : starts[d + 1]])
    assert whole.state.refused_entries() == {}
    assert np.array_equal(whole_log.rows, daily_log.rows)


def test_a_gap_longer_than_the_calendar_starts_a_new_day():
    engine, log = make_engine(risk={"daily_loss_limit": 1.0})
    ticks = Ticks()
    ticks.extend([100.0, 100.0, 100.0, 100.25, 99.0])  # long, then -1.25 open: halted
    run(engine, ticks)
    assert engine.state.halt_reason() == "daily_loss"
    later = Ticks(ts=T0 + 500 * DAY, step=SECOND)
    later.extend([99.0, 99.0, 99.0, 99.25])
    run(engine, later)
    assert engine.state.halt_reason() is None
    assert len(log.records("entry")) == 2


# -- positions -------------------------------------------------------------------------------


def test_positions_snapshot():
    engine, _ = make_engine(
        instruments=THREE,
        strategy={"quantity": 2},
        bracket={"target_ticks": 8, "stop_ticks": 4},
        broker={"slippage_ticks": 1},
    )
    ticks = Ticks()
    ticks.extend([100.0, 100.0, 100.0], idx=0)
    entry_ts = ticks.add(100.25, idx=0)
    ticks.extend([20.0, 21.0], idx=2)  # CCC: too few ticks to signal
    ticks.extend([50.0, 50.0, 50.0, 49.95, 49.9], idx=1)
    short_ts = ticks.rows[-2][3]
    run(engine, ticks)

    positions = engine.state.positions()
    assert set(positions) == {"AAA", "BBB"}
    assert all(
        set(p) == {"side", "qty", "entry_price", "target", "stop", "unrealized_pnl", "entry_ts"}
        for p in positions.values()
    )
    aaa, bbb = positions["AAA"], positions["BBB"]
    # AAA long 2 lots of 10 at 100.25 + 1 tick
    assert aaa == {
        "side": "long",
        "qty": 20,
        "entry_price": 100.5,
        "target": 102.5,
        "stop": 99.5,
        "unrealized_pnl": (100.25 - 100.5) * 20 * 2.0,
        "entry_ts": entry_ts,
    }
    # BBB short 2 lots of 75 at 49.95 - 1 tick, marked at 49.90
    assert (bbb["side"], bbb["qty"], bbb["entry_ts"]) == ("short", 150, short_ts)
    assert bbb["entry_price"] == pytest.approx(49.90)
    assert bbb["target"] == pytest.approx(49.90 - 8 * 0.05)
    assert bbb["stop"] == pytest.approx(49.90 + 4 * 0.05)
    assert bbb["unrealized_pnl"] == pytest.approx(0.0, abs=1e-9)
    assert isinstance(aaa["qty"], int) and isinstance(aaa["entry_ts"], int)
    assert isinstance(aaa["entry_price"], float)


def test_state_resume_restarts_the_loss_window():
    state = State(make_config(risk={"max_loss_limit": 5.0}))
    acct = state.book[state.acct]
    acct[layout.A_EQUITY] = -3.0
    acct[layout.A_PEAK] = 4.0
    acct[layout.A_DRAWDOWN] = 7.0
    state.set_account_int(layout.A_HALT, layout.G_MAX_LOSS)
    state.set_account_int(layout.A_PAUSED, 1)
    assert state.halt_reason() == "max_loss"
    state.resume()
    assert state.halt_reason() is None
    assert (acct[layout.A_PEAK], acct[layout.A_DRAWDOWN]) == (-3.0, 0.0)


def test_session_open_follows_the_calendar():
    state = make_state(
        session={
            "enabled": True,
            "timezone": "Asia/Kolkata",
            "open": "09:15",
            "close": "15:30",
            "flatten_at": "15:20",
        }
    )
    opens = local_ns("2025-11-21 09:15", "Asia/Kolkata")
    flattens = local_ns("2025-11-21 15:20", "Asia/Kolkata")
    state.ensure_calendar(opens, opens)
    assert not state.session_open(opens - 1)
    assert state.session_open(opens)
    assert state.session_open(flattens - 1)
    assert not state.session_open(flattens)
