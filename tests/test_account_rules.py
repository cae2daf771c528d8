"""Prop-firm account rules: the maximum loss floor, trailing at the day's end or static."""

from __future__ import annotations

import time
from datetime import date, timedelta

import orjson
import pytest

from engine.core import Engine
from engine.journal import Journal, read_journal, restore
from engine.live import Runtime
from engine.sessions import trading_day
from engine.state import State
from kernels import layout
from tests.conftest import MINUTE, Ticks, free_port, local_ns, make_config, make_engine, run
from tests.live import LiveEngine
from tests.test_sessions import CHICAGO, CME
from web import views

#: a $50,000 account with a $2,000 limit, trading one E-mini-like contract ($50 a point) live,
#: so that the tests book exact P&L through broker fills
TOPSTEP = {
    "broker": {"name": "kite"},
    "feed": {"name": "broker"},
    "session": {**CME, "flatten_at": "15:59"},
    "instruments": [
        {
            "symbol": "ES",
            "tick_size": 0.25,
            "point_value": 50.0,
            "kite": {"instrument_token": 1, "tradingsymbol": "ES"},
        }
    ],
    "risk": {
        "starting_balance": 50_000.0,
        "max_loss_limit": 2_000.0,
        "max_loss_mode": "eod_trailing",
        "max_loss_locks_at_start": True,
        "max_position": 100,
        "max_orders_per_second": 1000,
    },
}


def floor(state: State) -> float:
    return 50_000.0 + state.account(layout.A_FLOOR)


def trade(engine: Engine, day: str, buy: float, sell: float, qty: int = 1) -> None:
    """A round trip at 09:00-09:01 Chicago of trading ``day``, booked as the broker's fills."""
    at = local_ns(f"{day} 09:00", CHICAGO)
    run(engine, Ticks(ts=at).extend([buy]))
    engine.broker_fill(0, layout.LONG, qty, buy, layout.R_NONE, at + 1, tag="in")
    engine.broker_fill(0, layout.SHORT, qty, sell, layout.R_MANUAL, at + MINUTE, tag="out")


def end_of(engine: Engine, day: str) -> None:
    """A tick just after the day's 17:00 open: the next trading day begins."""
    run(
        engine,
        Ticks(ts=local_ns(f"{day} 17:01", CHICAGO)).extend([engine.state.book[0, layout.I_LTP]]),
    )


def test_topsteps_worked_example_trails_the_day_end_balance_and_locks_at_the_start(tmp_path):
    cfg = make_config(**TOPSTEP, journal={"path": str(tmp_path / "journal.jsonl")})
    engine = Engine(cfg)
    journal = Journal(cfg, engine.state.symbols)
    engine.sinks.append(journal)
    state = engine.state
    assert floor(state) == 48_000.0
    trade(engine, "2025-11-24", 5000.0, 5010.0)  # day 1: +$500
    assert floor(state) == 48_000.0  # nothing moves before the day ends
    end_of(engine, "2025-11-24")
    assert floor(state) == 48_500.0
    trade(engine, "2025-11-25", 5010.0, 5004.0)  # day 2: -$300, the floor holds
    end_of(engine, "2025-11-25")
    assert floor(state) == 48_500.0
    trade(engine, "2025-11-26", 5000.0, 5050.0)  # day 3: +$2,500, to a $52,700 balance
    end_of(engine, "2025-11-26")
    assert floor(state) == 50_000.0  # 52,700 - 2,000 = 50,700, held at the starting balance
    assert state.halt_reason() is None
    # day 4: ten contracts at 5000 and the price at 4994.5: equity 52,700 - 2,750 = 49,950
    at = local_ns("2025-11-27 09:00", CHICAGO)
    run(engine, Ticks(ts=at).extend([5000.0]))
    engine.broker_fill(0, layout.LONG, 10, 5000.0, layout.R_NONE, at + 1, tag="in")
    assert state.halt_reason() is None
    run(engine, Ticks(ts=at + MINUTE).extend([4994.5]))
    assert state.halt_reason() == "max_loss"
    journal.close()
    # a restart mid-day finds the same floor from the journal's fills
    restored = State(cfg)
    restore(restored, cfg.journal.path, date(2025, 11, 27))
    assert floor(restored) == 50_000.0 and restored.halt_reason() == "max_loss"


@pytest.mark.parametrize("lock", [False, True])
def test_without_the_lock_the_floor_trails_past_the_starting_balance(lock: bool) -> None:
    risk = {**TOPSTEP["risk"], "max_loss_locks_at_start": lock}
    engine = Engine(make_config(**{**TOPSTEP, "risk": risk}))
    trade(engine, "2025-11-24", 5000.0, 5060.0)  # +$3,000
    end_of(engine, "2025-11-24")
    assert floor(engine.state) == (50_000.0 if lock else 51_000.0)


def test_a_static_floor_never_moves() -> None:
    risk = {**TOPSTEP["risk"], "max_loss_mode": "static"}
    engine = Engine(make_config(**{**TOPSTEP, "risk": risk}))
    trade(engine, "2025-11-24", 5000.0, 5060.0)  # +$3,000
    end_of(engine, "2025-11-24")
    assert floor(engine.state) == 48_000.0
    trade(engine, "2025-11-25", 5060.0, 4980.0)  # -$4,000: balance 49,000, above the floor
    assert engine.state.halt_reason() is None
    trade(engine, "2025-11-25", 5000.0, 4980.0)  # -$1,000 more: 48,000, at the floor
    assert engine.state.halt_reason() == "max_loss"


def test_the_status_shows_the_balance_the_floor_and_what_is_left_to_it(tmp_path) -> None:
    sections = {**TOPSTEP, "broker": {"name": "paper"}, "feed": {"name": "sim"}}
    cfg = make_config(
        **sections, journal={"path": str(tmp_path / "j.jsonl")}, web={"enabled": False}
    )
    runtime = Runtime(cfg, out=open("/dev/null", "w"))  # noqa: SIM115 - a test's lifetime
    trade(runtime.engine, "2025-11-24", 5000.0, 5010.0)  # +$500
    end_of(runtime.engine, "2025-11-24")
    status = views.status(runtime)
    assert status["account"]["balance"] == 50_500.0 == status["account"]["equity"]
    risk = status["risk"]
    assert (risk["max_loss_mode"], risk["max_loss_floor"]) == ("eod_trailing", 48_500.0)
    assert risk["max_loss_remaining"] == 2_000.0
    runtime.journal.close()


def test_the_profit_target_flattens_at_once_and_stops_entries_until_resumed(tmp_path) -> None:
    risk = {**TOPSTEP["risk"], "profit_target": 3_000.0}
    cfg = make_config(**{**TOPSTEP, "risk": risk}, journal={"path": str(tmp_path / "j.jsonl")})
    engine = Engine(cfg)
    journal = Journal(cfg, engine.state.symbols)
    engine.sinks.append(journal)
    state = engine.state
    trade(engine, "2025-11-24", 5000.0, 5050.0)  # +$2,500: short of the target
    assert state.halt_reason() is None
    at = local_ns("2025-11-24 10:00", CHICAGO)
    run(engine, Ticks(ts=at).extend([5050.0]))  # marked at the fills' price
    engine.broker_fill(0, layout.LONG, 2, 5050.0, layout.R_NONE, at, tag="in")
    engine.broker_fill(0, layout.SHORT, 1, 5055.0, layout.R_MANUAL, at + 1, tag="out")  # +$250
    assert state.halt_reason() is None
    engine.broker_fill(0, layout.SHORT, 1, 5056.0, layout.R_MANUAL, at + 2, tag="out")  # +$300
    assert state.halt_reason() == "profit_target"  # realized $3,050: the balance is 53,050
    journal.close()
    halts = [line for line in read_journal(cfg.journal.path) if line["type"] == "risk"]
    assert [line["reason"] for line in halts if line["event"] == "halt"] == ["profit_target"]
    restored = State(cfg)
    restore(restored, cfg.journal.path, date(2025, 11, 24))
    assert restored.halt_reason() == "profit_target"  # a restart keeps the account stopped


def test_max_contracts_counts_the_lots_open_across_every_instrument() -> None:
    engine, log = make_engine(
        instruments=[
            {"symbol": "AAA", "tick_size": 0.25, "lot_size": 1},
            {"symbol": "BBB", "tick_size": 0.25, "lot_size": 2},
        ],
        strategy={"fast": 1, "slow": 2, "quantity": 1},
        risk={"max_contracts": 1, "max_position": 10, "max_orders_per_second": 1000},
    )
    ticks = Ticks()
    for price in (100.0, 100.0, 100.0, 101.0):  # AAA crosses up: one lot long
        ticks.add(price, idx=0)
    for price in (50.0, 50.0, 50.0, 51.0):  # BBB crosses up: a second lot would be too many
        ticks.add(price, idx=1)
    run(engine, ticks)
    assert [r["symbol"] for r in log.records("entry")] == ["AAA"]
    assert engine.state.refused_entries() == {"max_contracts": 1}


def test_a_restart_shows_the_floor_and_the_days_pnl_from_the_journal(tmp_path) -> None:
    session = {"enabled": False, "timezone": "Asia/Kolkata"}
    cfg = make_config(session=session)
    today = trading_day(time.time_ns(), cfg.session)
    lines = []
    for back, pnl in ((2, 500.0), (1, -300.0), (0, 100.0)):  # two days ago, yesterday, today
        day = (today - timedelta(days=back)).isoformat()
        fill = {"symbol": "AAA", "qty": 1, "price": 100.0, "tick_t": 1, "day": day}
        lines.append({"type": "fill", "action": "entry", "side": "buy", "avg_price": 100.0, **fill})
        lines.append({"type": "fill", "action": "exit", "side": "sell", "pnl": pnl, **fill})
    (tmp_path / "journal.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    risk = {**TOPSTEP["risk"], "max_position": 10}
    # a ws feed with no server: no tick moves the restored account while the test reads it
    feed = {"name": "ws", "url": f"ws://127.0.0.1:{free_port()}/"}
    live = LiveEngine(tmp_path, session=session, risk=risk, feed=feed)
    try:
        status = live.status()
        assert status["account"]["balance"] == 50_300.0
        assert status["account"]["day_pnl"] == 100.0
        # the floor moved with the end of two days ago (+500), not with yesterday's or today's
        assert status["risk"]["max_loss_floor"] == 48_500.0
    finally:
        assert live.stop() == 0
