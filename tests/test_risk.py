"""Halts and refusals through Engine.process with real tick arrays.

With fast 1 / slow 2 (the test base config) three flat ticks then a one-tick move signal on
the move, and from then on every up/down alternation is a crossover; targets and stops sit
100 ticks away unless a test says otherwise.
"""

from __future__ import annotations

import pytest

from tests.conftest import (
    HOUR,
    MINUTE,
    SECOND,
    T0,
    Ticks,
    local_ns,
    make_engine,
    run,
)

KOLKATA = "Asia/Kolkata"
CHICAGO = "America/Chicago"


def at(records: list[dict], ts: int, kind: str | None = None) -> list[dict]:
    return [r for r in records if r["tick_t"] == ts and (kind is None or r["type"] == kind)]


def cross_up(ticks: Ticks, start: int | None = None, base: float = 100.0) -> int:
    """Three flat ticks and a one-tick rise; return the ts of the signalling tick."""
    ticks.extend([base, base, base], start=start)
    return ticks.add(base + 0.25)


def alternate(ticks: Ticks, n: int, first: float, second: float, start: int | None = None):
    """``n`` ticks alternating between two prices; return their ts.

    ``first`` must reverse the last move through the slow EMA; each later tick then crosses.
    """
    return [ticks.add(second if k % 2 else first, ts=start if k == 0 else None) for k in range(n)]


def other(ticks: Ticks, a: float, b: float) -> float:
    """The next price of an alternation between ``a`` and ``b``."""
    return a if ticks.rows[-1][1] == b else b


# -- daily loss limit ------------------------------------------------------------------------


def test_daily_loss_limit_flattens_and_stops_entries_until_local_midnight():
    engine, log = make_engine(
        risk={"daily_loss_limit": 2.0}, session={"enabled": False, "timezone": KOLKATA}
    )
    ticks = Ticks(ts=local_ns("2025-11-21 10:00:00", KOLKATA))
    entry_ts = cross_up(ticks)  # long at 100.25
    for price in (100.0, 99.5, 98.5):  # open loss -0.25, -0.75, -1.75
        ticks.add(price)
    breach_ts = ticks.add(98.25)  # -2.0: at the limit
    midnight = local_ns("2025-11-22 00:00:00", KOLKATA)
    alternate(ticks, 6, 98.5, 98.25, start=midnight - 10 * MINUTE)
    last_of_day = ticks.add(other(ticks, 98.25, 98.5), ts=midnight - 1)
    run(engine, ticks)

    state = engine.state
    assert state.halt_reason() == "daily_loss"
    assert [r["tick_t"] for r in log.records("entry")] == [entry_ts]
    [trade] = log.trades()
    assert (trade["exit_ts"], trade["exit_reason"]) == (breach_ts, "risk")
    assert (trade["exit_price"], trade["pnl"]) == (98.25, -2.0)
    [halt] = log.records("halt")
    assert (halt["tick_t"], halt["reason"]) == (breach_ts, "daily_loss")
    refused = log.records("refused")
    assert len(refused) == 7 and {r["reason"] for r in refused} == {"daily_loss"}
    assert at(refused, last_of_day)
    assert state.refused_entries() == {"daily_loss": 7}
    assert state.positions() == {}

    # local midnight is 18:30 UTC: the new day starts there, not at UTC midnight
    after = Ticks(ts=midnight)
    next_day = after.add(other(ticks, 98.25, 98.5))
    run(engine, after)
    assert state.halt_reason() is None
    assert at(log.records("entry"), next_day)


def test_daily_loss_counts_realized_and_unrealized_across_instruments():
    instruments = [{"symbol": "AAA", "tick_size": 0.25}, {"symbol": "BBB", "tick_size": 0.25}]
    engine, log = make_engine(
        instruments=instruments,
        bracket={"stop_ticks": 4},
        risk={"daily_loss_limit": 2.0},
    )
    ticks = Ticks()
    cross_up(ticks)  # AAA long 100.25, stop 99.25
    ticks.extend([50.0, 50.0, 50.0, 50.25], idx=1)  # BBB long 50.25, stop 49.25
    ticks.extend([100.0, 99.5, 99.0])  # AAA stopped at 99.0: -1.25 realized
    ticks.extend([50.0, 49.75], idx=1)  # day P&L -1.25 - 0.5
    breach_ts = ticks.add(49.5, idx=1)  # -1.25 - 0.75 = -2.0
    run(engine, ticks)

    trades = log.trades()
    assert [(t["symbol"], t["exit_reason"], t["pnl"]) for t in trades] == [
        ("AAA", "stop", -1.25),
        ("BBB", "risk", -0.75),
    ]
    assert trades[1]["exit_ts"] == breach_ts
    assert len(log.records("entry")) == 2
    assert engine.state.halt_reason() == "daily_loss"


def test_daily_loss_from_a_stopped_trade_halts_at_the_exit():
    engine, log = make_engine(bracket={"stop_ticks": 4}, risk={"daily_loss_limit": 1.0})
    ticks = Ticks()
    cross_up(ticks)  # long 100.25, stop 99.25
    ticks.extend([100.0, 99.5])  # the EMAs cross down here, while the position is open
    stop_ts = ticks.add(99.0)  # stopped: -1.25 realized, no signal on this tick
    run(engine, ticks)
    assert [(t["exit_ts"], t["exit_reason"]) for t in log.trades()] == [(stop_ts, "stop")]
    assert engine.state.halt_reason() == "daily_loss"

    later = Ticks(ts=stop_ts + SECOND)
    later.extend([99.0, 99.0, 99.25])  # a crossover up
    run(engine, later)
    assert len(log.records("entry")) == 1
    assert engine.state.refused_entries() == {"daily_loss": 1}


# -- max loss limit --------------------------------------------------------------------------


def test_max_loss_limit_halts_until_resume():
    engine, log = make_engine(
        risk={"max_loss_limit": 2.0}, session={"enabled": False, "timezone": KOLKATA}
    )
    ticks = Ticks(ts=local_ns("2025-11-21 22:00:00", KOLKATA))
    cross_up(ticks)  # long 100.25
    ticks.extend([101.0, 102.0, 103.0])  # peak equity 2.75
    ticks.add(101.0)  # drawdown 2.0: not more than the limit
    breach_ts = ticks.add(100.75)  # drawdown 2.25
    # across local midnight: a new day does not lift it
    alternate(ticks, 6, 101.25, 100.75, start=local_ns("2025-11-22 00:30:00", KOLKATA))
    run(engine, ticks)

    state = engine.state
    [trade] = log.trades()
    assert (trade["exit_ts"], trade["exit_reason"], trade["exit_price"]) == (
        breach_ts,
        "risk",
        100.75,
    )
    [halt] = log.records("halt")
    assert (halt["tick_t"], halt["reason"]) == (breach_ts, "max_loss")
    assert state.halt_reason() == "max_loss"
    assert state.refused_entries() == {"max_loss": 6}
    assert len(log.records("entry")) == 1

    engine.resume()
    assert state.halt_reason() is None
    more = Ticks(ts=ticks.ts + SECOND)
    entry_ts = more.add(other(ticks, 101.25, 100.75))
    more.add(more.rows[-1][1])
    run(engine, more)
    assert at(log.records("entry"), entry_ts)
    assert len(log.records("exit")) == 1  # the equity peak restarted at resume: no re-halt
    assert state.halt_reason() is None


# -- max position, sizing, rate limit --------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "lot_size", "max_position", "allowed"),
    [(2, 25, 2, True), (3, 25, 2, False), (1, 1, 1, True), (2, 1, 1, False)],
)
def test_max_position_refuses_an_entry_bigger_than_it(quantity, lot_size, max_position, allowed):
    engine, log = make_engine(
        instruments=[{"symbol": "AAA", "tick_size": 0.25, "lot_size": lot_size}],
        strategy={"quantity": quantity},
        risk={"max_position": max_position},
    )
    ticks = Ticks()
    signal_ts = cross_up(ticks)
    run(engine, ticks)
    if allowed:
        [entry] = log.records("entry")
        assert (entry["tick_t"], entry["qty"]) == (signal_ts, quantity * lot_size)
        assert engine.state.refused_entries() == {}
    else:
        assert log.records("entry") == []
        [refused] = log.records("refused")
        assert (refused["tick_t"], refused["reason"]) == (signal_ts, "max_position")
        assert engine.state.refused_entries() == {"max_position": 1}
        assert engine.state.positions() == {}


def test_risk_sizing_too_small_for_a_lot_is_refused():
    # one lot risks 4 ticks * 0.25 * 10 units = 10 > 9.99
    engine, log = make_engine(
        instruments=[{"symbol": "AAA", "tick_size": 0.25, "lot_size": 10}],
        strategy={"risk_per_trade": 9.99},
        bracket={"stop_ticks": 4},
    )
    ticks = Ticks()
    cross_up(ticks)
    run(engine, ticks)
    assert log.records("entry") == []
    assert engine.state.refused_entries() == {"zero_size": 1}


def test_max_orders_per_second_counts_in_tick_time():
    engine, log = make_engine(
        bracket={"target_ticks": 1, "stop_ticks": 1}, risk={"max_orders_per_second": 3}
    )
    ticks = Ticks(ts=T0 - 3 * SECOND)
    ticks.extend([100.0, 100.0, 100.0])
    ms = 1_000_000
    # every tick crosses, and with one-tick brackets every tick also stops out the position:
    # entry (1); exit (2) + entry (3); exit (4) and the entry is refused; then only refusals
    for k in range(9):
        ticks.add(100.25 if k % 2 == 0 else 100.0, ts=T0 + k * ms)
    last_in_second = ticks.add(other(ticks, 100.0, 100.25), ts=T0 + SECOND - 1)
    next_second = ticks.add(other(ticks, 100.0, 100.25), ts=T0 + SECOND)
    run(engine, ticks)

    entries = [r["tick_t"] for r in log.records("entry")]
    assert entries == [T0, T0 + ms, next_second]
    refused = log.records("refused")
    assert {r["reason"] for r in refused} == {"rate_limit"}
    assert [r["tick_t"] for r in refused] == [T0 + k * ms for k in range(2, 9)] + [last_in_second]
    assert engine.state.refused_entries() == {"rate_limit": 8}
    # exits are never refused
    assert [r["reason"] for r in log.records("exit")] == ["stop", "stop"]


# -- session ---------------------------------------------------------------------------------

KOLKATA_SESSION = {
    "enabled": True,
    "timezone": KOLKATA,
    "open": "09:15",
    "flatten_at": "15:20",
    "close": "15:30",
}


@pytest.mark.parametrize(
    ("when", "offset", "allowed"),
    [
        ("03:00", 0, False),
        ("09:15", -1, False),
        ("09:15", 0, True),
        ("15:20", -1, True),
        ("15:20", 0, False),
        ("15:30", 0, False),
        ("23:59", 0, False),
    ],
)
def test_kolkata_session_window_for_entries(when, offset, allowed):
    engine, log = make_engine(session=KOLKATA_SESSION)
    probe = local_ns(f"2025-11-21 {when}:00", KOLKATA) + offset
    ticks = Ticks(ts=probe - 3, step=1)
    assert cross_up(ticks) == probe
    run(engine, ticks)
    if allowed:
        assert at(log.records("entry"), probe)
    else:
        [refused] = log.records("refused")
        assert (refused["tick_t"], refused["reason"]) == (probe, "outside_session")
        assert log.records("entry") == []


def test_kolkata_positions_are_flattened_at_flatten_at():
    engine, log = make_engine(session=KOLKATA_SESSION)
    ticks = Ticks(ts=local_ns("2025-11-21 15:00:00", KOLKATA))
    cross_up(ticks)
    flatten_at = local_ns("2025-11-21 15:20:00", KOLKATA)
    ticks.add(101.0, ts=flatten_at - 1)
    run(engine, ticks)
    assert engine.state.positions()
    assert log.trades() == []

    after = Ticks(ts=flatten_at)
    after.add(101.5)
    after.extend([101.25, 101.5, 101.25], start=flatten_at + MINUTE)  # signals, refused
    run(engine, after)
    [trade] = log.trades()
    assert (trade["exit_ts"], trade["exit_reason"], trade["exit_price"]) == (
        flatten_at,
        "eod",
        101.5,
    )
    assert engine.state.positions() == {}
    assert log.records("entry")[-1]["tick_t"] < flatten_at
    assert set(engine.state.refused_entries()) == {"outside_session"}


def test_chicago_session_follows_daylight_saving():
    # DST starts on Sunday 2025-03-09: 08:30 local is 14:30 UTC on Friday, 13:30 UTC on Monday
    engine, log = make_engine(
        session={
            "enabled": True,
            "timezone": CHICAGO,
            "open": "08:30",
            "flatten_at": "14:55",
            "close": "15:00",
        }
    )
    ticks = Ticks(ts=local_ns("2025-03-07 08:29:56", CHICAGO))
    fri_early = cross_up(ticks)  # 08:29:59 CST: refused
    fri_open = ticks.add(100.0)  # 08:30:00 CST = 14:30 UTC: entry (short)
    assert fri_open == local_ns("2025-03-07 14:30:00", "UTC")
    fri_cdt_flatten = ticks.add(100.0, ts=local_ns("2025-03-07 19:55:00", "UTC"))
    fri_flatten = ticks.add(100.0, ts=local_ns("2025-03-07 20:55:00", "UTC"))

    ticks.extend([100.0, 100.0, 100.0], start=local_ns("2025-03-10 08:29:56", CHICAGO))
    mon_early = ticks.add(100.25)  # 08:29:59 CDT: refused
    mon_open = ticks.add(100.0)  # 08:30:00 CDT = 13:30 UTC: entry
    assert mon_open == local_ns("2025-03-10 13:30:00", "UTC")
    mon_before = ticks.add(100.0, ts=local_ns("2025-03-10 19:54:59", "UTC"))
    mon_flatten = ticks.add(100.0, ts=local_ns("2025-03-10 19:55:00", "UTC"))
    run(engine, ticks)

    refused = log.records("refused")
    assert [(r["tick_t"], r["reason"]) for r in refused] == [
        (fri_early, "outside_session"),
        (mon_early, "outside_session"),
    ]
    assert [r["tick_t"] for r in log.records("entry")] == [fri_open, mon_open]
    trades = log.trades()
    assert [(t["exit_ts"], t["exit_reason"]) for t in trades] == [
        (fri_flatten, "eod"),
        (mon_flatten, "eod"),
    ]
    assert fri_cdt_flatten not in [t["exit_ts"] for t in trades]
    assert mon_before not in [t["exit_ts"] for t in trades]


def test_session_disabled_is_always_open_and_never_flattens():
    engine, log = make_engine(session={"enabled": False, "timezone": KOLKATA})
    ticks = Ticks(ts=local_ns("2025-11-21 03:00:00", KOLKATA))
    entry_ts = cross_up(ticks)
    for when in ("15:20:00", "15:30:00", "23:59:59"):
        ticks.add(100.5, ts=local_ns(f"2025-11-21 {when}", KOLKATA))
    ticks.add(100.5, ts=local_ns("2025-11-22 00:00:01", KOLKATA))
    run(engine, ticks)
    assert [r["tick_t"] for r in log.records("entry")] == [entry_ts]
    assert log.trades() == []
    assert engine.state.positions()["AAA"]["side"] == "long"

    late = Ticks(ts=local_ns("2025-11-22 23:59:00", KOLKATA))
    late.add(100.25)  # a crossover down while long: no entry, and no flattening either
    run(engine, late)
    assert log.trades() == []
    assert engine.state.positions()["AAA"]["side"] == "long"
    assert engine.state.refused_entries() == {}


# -- operator controls -----------------------------------------------------------------------


def test_kill_flattens_and_no_entry_is_emitted_until_resume():
    engine, log = make_engine()
    ticks = Ticks()
    cross_up(ticks)
    ticks.add(101.0)
    run(engine, ticks)
    kill_ts = ticks.ts + SECOND
    engine.kill(ts=kill_ts)

    state = engine.state
    [trade] = log.trades()
    assert (trade["exit_ts"], trade["exit_reason"], trade["exit_price"]) == (kill_ts, "kill", 101.0)
    [halt] = log.records("halt")
    assert (halt["tick_t"], halt["reason"]) == (kill_ts, "halted")
    assert state.halt_reason() == "halted"
    assert state.positions() == {}
    seen = len(log.records())

    more = Ticks(ts=kill_ts + SECOND)
    alternate(more, 20, 100.5, 101.0)
    run(engine, more)
    after_kill = log.records()[seen:]
    assert [r for r in after_kill if r["type"] == "entry"] == []
    assert len(after_kill) == 20
    assert {(r["type"], r["reason"]) for r in after_kill} == {("refused", "halted")}
    assert state.refused_entries() == {"halted": 20}

    engine.resume()
    resumed = Ticks(ts=more.ts + SECOND)
    entry_ts = resumed.add(other(more, 100.5, 101.0))
    run(engine, resumed)
    assert at(log.records("entry"), entry_ts)


def test_pause_stops_entries_but_exits_still_run():
    engine, log = make_engine(bracket={"target_ticks": 4})
    ticks = Ticks()
    cross_up(ticks)  # long 100.25, target 101.25
    run(engine, ticks)
    engine.pause()
    assert engine.state.halt_reason() == "paused"

    more = Ticks(ts=ticks.ts + SECOND)
    more.add(100.75)
    target_ts = more.add(101.25)
    alternate(more, 4, 100.75, 101.25)
    run(engine, more)
    [trade] = log.trades()
    assert (trade["exit_ts"], trade["exit_reason"], trade["exit_price"]) == (
        target_ts,
        "target",
        101.25,
    )
    assert len(log.records("entry")) == 1
    assert engine.state.refused_entries() == {"paused": 4}

    engine.resume()
    assert engine.state.halt_reason() is None
    resumed = Ticks(ts=more.ts + SECOND)
    entry_ts = resumed.add(other(more, 100.75, 101.25))
    run(engine, resumed)
    assert at(log.records("entry"), entry_ts)


def test_manual_flatten_closes_at_the_ltp():
    engine, log = make_engine(broker={"slippage_ticks": 2})
    ticks = Ticks()
    cross_up(ticks)  # long at 100.25 + 2 ticks = 100.75
    ticks.add(101.0)
    run(engine, ticks)
    engine.flatten("AAA", ts=ticks.ts + HOUR)
    [trade] = log.trades()
    assert (trade["exit_reason"], trade["entry_price"], trade["exit_price"]) == (
        "manual",
        100.75,
        100.5,
    )
    assert trade["exit_ts"] == ticks.ts + HOUR
    assert engine.state.positions() == {}
    assert engine.state.halt_reason() is None
