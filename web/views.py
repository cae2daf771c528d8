"""Plain JSON views of the live state: what ``/api`` returns and ``/ws`` pushes.

Each view reads the book between batches (the loop runs one thing at a time), so a view is
always a consistent picture of one moment.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import TYPE_CHECKING

import orjson

from engine.config import dump_config
from kernels import layout

if TYPE_CHECKING:
    from engine.live import Runtime
    from engine.state import State

#: config keys whose values are masked in ``/api/config`` (``*_env`` keys only name a variable)
_SECRET_KEY = re.compile(r"(secret|password|passwd|api_key|access_token|private)", re.I)


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def status(runtime: Runtime) -> dict:
    """Return the engine's health: ticks, rate, halts, feed, rejects, latency, P&L, risk."""
    state = runtime.engine.state
    ticks = state.account_int(layout.A_TICKS)
    feed = runtime.feed
    age = None if feed is None else feed.last_tick_age()
    risk = runtime.cfg.risk
    day_pnl = state.account(layout.A_DAY_PNL)
    drawdown = state.account(layout.A_DRAWDOWN)
    return {
        "ticks": ticks,
        "ticks_per_s": round(runtime.rate.sample(ticks), 1),
        "paused": state.paused(),
        "halt": state.halt_reason(),
        "session_open": state.session_open(time.time_ns()),
        "feed": {
            "name": runtime.cfg.feed.name,
            "state": runtime.feed_state(),
            "reconnects": 0 if feed is None else feed.reconnects,
            "last_tick_age_s": None if age is None else round(age, 3),
            "rejected_frames": {} if feed is None else feed.rejected_frames(),
        },
        "broker": {
            "name": runtime.cfg.broker.name,
            "token": None
            if runtime.router is None
            else ("expired" if runtime.router.expired else "ok"),
        },
        "rejected_ticks": state.rejected_ticks(),
        "refused_entries": state.refused_entries(),
        "latency_us": runtime.frame_latency.percentiles_us(),
        "order_latency_us": runtime.order_latency.percentiles_us(),
        "uptime_s": round(time.monotonic() - runtime.started, 3),
        "account": {
            "realized": state.account(layout.A_REALIZED),
            "unrealized": state.account(layout.A_UNREALIZED),
            "balance": risk.starting_balance + state.account(layout.A_REALIZED),
            "equity": risk.starting_balance + state.account(layout.A_EQUITY),
            "day_pnl": day_pnl,
            "drawdown": drawdown,
            "max_drawdown": state.account(layout.A_MAX_DRAWDOWN),
        },
        "risk": {
            "daily_loss_limit": risk.daily_loss_limit,
            "daily_used": _used(-day_pnl, risk.daily_loss_limit),
            "max_loss_limit": risk.max_loss_limit,
            "max_used": _used(drawdown, risk.max_loss_limit),
            "max_loss_mode": risk.max_loss_mode,
            **_floor(state, risk.max_loss_limit, risk.starting_balance),
        },
        "clients": 0 if runtime.web is None else runtime.web.hub.client_count(),
        "journal": {"written": runtime.journal.writable, "error": runtime.journal.error},
        "record": None if runtime.recorder is None else runtime.recorder.status(),
    }


def _floor(state: State, limit: float | None, start: float) -> dict:
    # the balance at or below which the maximum loss limit is breached, and what is left to it
    if limit is None:
        return {"max_loss_floor": None, "max_loss_remaining": None}
    if state.account_int(layout.A_MAX_LOSS_MODE) == layout.ML_INTRADAY_TRAILING:
        floor = state.account(layout.A_PEAK) - limit
    else:
        floor = state.account(layout.A_FLOOR)
    remaining = state.account(layout.A_EQUITY) - floor
    return {"max_loss_floor": start + floor, "max_loss_remaining": remaining}


def _used(loss: float, limit: float | None) -> float | None:
    return None if limit is None else round(max(loss, 0.0) / limit, 4)


def instruments(state: State) -> list[dict]:
    """Return each instrument's LTP, EMAs, signal, ATR, RSI, VWAP and current bar."""
    out = []
    for i, symbol in enumerate(state.symbols):
        row = state.book[i]
        out.append(
            {
                "symbol": symbol,
                "ltp": _number(row[layout.I_LTP]),
                "ema_fast": _number(row[layout.I_EMA_FAST]),
                "ema_slow": _number(row[layout.I_EMA_SLOW]),
                "signal": int(row[layout.I_SIGNAL]),
                "atr": _number(row[layout.I_ATR]),
                "rsi": _number(row[layout.I_RSI]),
                "vwap": _number(state.vwap(i)),
                "ticks": int(row[layout.I_TICKS]),
                "last_ts": max(int(state.ints[i, layout.I_LAST_TS]), 0),
                "bar": {
                    "open": _number(row[layout.I_BAR_OPEN]),
                    "high": _number(row[layout.I_BAR_HIGH]),
                    "low": _number(row[layout.I_BAR_LOW]),
                    "close": _number(row[layout.I_BAR_CLOSE]),
                    "volume": _number(row[layout.I_BAR_VOLUME]),
                },
            }
        )
    return out


def positions(runtime: Runtime) -> list[dict]:
    """Return the open positions with their bracket levels and, live, their resting legs.

    ``protection`` is ``engine`` in paper mode (the kernels keep the bracket); live it is the
    router's word (``entering``, ``protected``, ``unprotected``, ``exiting``) and ``legs`` are
    the stop and target resting at the broker for the position, as the broker last reported.
    """
    router = runtime.router
    out = []
    for symbol, held in runtime.engine.state.positions().items():
        guard = {"protection": "engine", "legs": []} if router is None else router.legs_view(symbol)
        out.append({"symbol": symbol, **held, **guard})
    return out


async def orders(runtime: Runtime) -> dict:
    """Return the broker's open orders and the strategy's recent orders, newest last."""
    if runtime.router is not None:
        working = runtime.router.working()
    else:
        working = [dataclasses.asdict(order) for order in await runtime.engine.paper.open_orders()]
    return {
        "open": working,
        "recent": list(runtime.orders),
    }


def trades(runtime: Runtime) -> list[dict]:
    """Return the recent closed trades, newest last."""
    return list(runtime.trades)


def performance(runtime: Runtime) -> dict:
    """Return the backtest report's summary fields for this run's closed trades."""
    max_drawdown = runtime.engine.state.account(layout.A_MAX_DRAWDOWN)
    return runtime.stats.summary(max_drawdown)


def config(runtime: Runtime) -> dict:
    """Return the running configuration with secret-looking values masked."""
    return _mask(orjson.loads(dump_config(runtime.cfg)))


def _mask(node):
    if isinstance(node, dict):
        return {
            key: "***" if _SECRET_KEY.search(key) and not key.endswith("_env") else _mask(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_mask(value) for value in node]
    return node


def snapshot(runtime: Runtime) -> dict:
    """Return the periodic WebSocket push: status, instruments and positions."""
    state = runtime.engine.state
    return {
        "type": "snapshot",
        "ts": time.time_ns(),
        "status": status(runtime),
        "instruments": instruments(state),
        "positions": positions(runtime),
    }
