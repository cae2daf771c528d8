"""Live mode of the kernels: intents instead of fills, the pending mark, the broker's fills."""

from __future__ import annotations

import time

from engine.core import Engine
from kernels import layout
from tests.conftest import EventLog, Ticks, make_config, run

LIVE = {
    "broker": {"name": "kite"},
    "feed": {"name": "broker"},
    "instruments": [
        {
            "symbol": "AAA",
            "tick_size": 0.25,
            "kite": {"instrument_token": 408065, "tradingsymbol": "AAA"},
        }
    ],
    "bracket": {"target_ticks": 8, "stop_ticks": 4},
}


def live_engine(**sections) -> tuple[Engine, EventLog]:
    engine = Engine(make_config(**{**LIVE, **sections}))
    log = EventLog(engine.state.symbols)
    engine.sinks.append(log)
    return engine, log


def kinds(log: EventLog) -> list[str]:
    return [record["type"] for record in log.records()]


def test_an_entry_signal_leaves_as_one_intent_and_fills_nothing() -> None:
    engine, log = live_engine()
    # fast=1, slow=2: the rise after the warm-up crosses up, the later ticks keep signalling
    run(engine, Ticks().extend([100, 100, 100, 101, 102, 103, 104, 100, 99, 104]))
    intents = [r for r in log.records() if r["type"] == "intent"]
    assert len(intents) == 1, "a pending entry must block every later signal"
    assert intents[0]["side"] == "buy" and intents[0]["reason"] == "entry"
    assert intents[0]["price"] == 101.0
    assert "entry" not in kinds(log) and "exit" not in kinds(log)
    book = engine.state.book
    assert book[0, layout.I_SIDE] == layout.FLAT
    assert book[0, layout.I_PENDING] == layout.LONG


def test_the_broker_fill_opens_the_position_with_the_bracket_around_its_own_price() -> None:
    engine, log = live_engine()
    run(engine, Ticks().extend([100, 100, 100, 101]))
    ts = Ticks().ts + 10
    engine.broker_fill(0, layout.LONG, 1, 101.5, layout.R_NONE, ts, tag="T1", order_id="9")
    entry = [r for r in log.records() if r["type"] == "entry"][0]
    assert entry["price"] == 101.5
    assert entry["target"] == 101.5 + 8 * 0.25 and entry["stop"] == 101.5 - 4 * 0.25
    position = engine.state.positions()["AAA"]
    assert position["qty"] == 1 and position["side"] == "long"


def test_a_bracket_touch_sends_nothing_live_while_the_broker_holds_the_stop() -> None:
    engine, log = live_engine()
    run(engine, Ticks().extend([100, 100, 100, 101]))
    engine.broker_fill(0, layout.LONG, 1, 101.0, layout.R_NONE, Ticks().ts)
    engine.state.book[0, layout.I_PENDING] = 0
    engine.state.book[0, layout.I_STOP_RESTING] = 1
    run(engine, Ticks(ts=Ticks().ts + 10 * 10**9).extend([110, 90]))  # past target, then stop
    assert "exit" not in kinds(log)
    assert [r for r in log.records() if r["type"] == "intent"][1:] == []
    assert engine.state.book[0, layout.I_SIDE] == layout.LONG
    # the stop's fill arrives from the broker and closes it with its reason
    pnl = engine.broker_fill(0, layout.SHORT, 1, 100.0, layout.R_STOP, Ticks().ts + 20 * 10**9)
    exit_ = [r for r in log.records() if r["type"] == "exit"][0]
    assert exit_["reason"] == "stop" and pnl == -1.0
    assert engine.state.positions() == {}


def test_a_price_through_the_stop_with_no_stop_resting_exits_at_market_once() -> None:
    engine, log = live_engine()
    run(engine, Ticks().extend([100, 100, 100, 101]))
    engine.broker_fill(0, layout.LONG, 1, 101.0, layout.R_NONE, Ticks().ts)
    engine.state.book[0, layout.I_PENDING] = 0
    # past the target with no stop resting: the broker's target (or none) decides, no intent
    run(engine, Ticks(ts=Ticks().ts + 10 * 10**9).extend([110]))
    assert [r for r in log.records() if r["type"] == "intent"][1:] == []
    run(engine, Ticks(ts=Ticks().ts + 20 * 10**9).extend([90, 89, 88]))
    exits = [r for r in log.records() if r["type"] == "intent"][1:]
    assert [(r["side"], r["qty"], r["reason"]) for r in exits] == [("sell", 1, "stop")]
    assert engine.state.book[0, layout.I_PENDING] == layout.PENDING_EXIT
    assert engine.state.book[0, layout.I_SIDE] == layout.LONG, "the broker's fill closes it"


def test_flatten_sends_one_exit_intent_and_not_a_second_while_it_is_pending() -> None:
    engine, log = live_engine()
    run(engine, Ticks().extend([100, 100, 100, 101]))
    engine.broker_fill(0, layout.LONG, 1, 101.0, layout.R_NONE, Ticks().ts)
    engine.state.book[0, layout.I_PENDING] = 0
    engine.flatten("AAA")
    engine.kill()
    exits = [r for r in log.records() if r["type"] == "intent" and r["reason"] != "entry"]
    assert [(r["side"], r["qty"], r["reason"]) for r in exits] == [("sell", 1, "manual")]
    assert engine.state.book[0, layout.I_PENDING] == layout.PENDING_EXIT
    assert engine.state.book[0, layout.I_SIDE] == layout.LONG


def test_paper_mode_is_unchanged_by_the_live_columns() -> None:
    engine = Engine(make_config())
    log = EventLog(engine.state.symbols)
    engine.sinks.append(log)
    run(engine, Ticks().extend([100, 100, 100, 101]))
    assert "entry" in kinds(log) and "intent" not in kinds(log)
    assert engine.state.book[0, layout.I_PENDING] == 0


def test_a_broker_fill_dated_far_ahead_is_booked_at_the_clock_and_keeps_the_day() -> None:
    engine, log = live_engine()
    engine.clock_skew_ns = 30 * 10**9  # as the runtime sets it for a live feed
    now = time.time_ns()
    run(engine, Ticks(ts=now).extend([100, 100, 100, 101]))
    state = engine.state
    day = state.ints[state.ints[state.acct, layout.A_SESSION_ROW], layout.S_DAY_START]
    week = 7 * 86_400 * 10**9
    engine.broker_fill(0, layout.LONG, 1, 101.0, layout.R_NONE, now + week, tag="T1")
    (entry,) = [r for r in log.records() if r["type"] == "entry"]
    assert now <= entry["tick_t"] <= time.time_ns() + engine.clock_skew_ns
    assert state.ints[state.ints[state.acct, layout.A_SESSION_ROW], layout.S_DAY_START] == day
