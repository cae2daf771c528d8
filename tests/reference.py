"""Plain-Python oracle of the pinned ``ema_cross`` + bracket semantics.

This module is the executable specification the Numba kernels are checked against. It is
written for clarity, not speed: one tick at a time, one instrument state object each, every rule
spelled out in the order the spec pins it. Float expressions are written exactly as the kernels
evaluate them (same operands, same order) so trades can be compared with ``==``.

Pinned semantics, per instrument
--------------------------------
* Bad ticks are refused and skipped entirely, counted by the first failing check, in this order:
  ``unknown_symbol``, ``non_finite``, ``non_positive``, ``bad_size``, ``future_timestamp``
  (at or after 2200-01-01 UTC), ``stale_timestamp``, ``price_band`` (more than
  ``price_band_pct`` percent from the instrument's last accepted price; the first is free).
* ``ema <- price`` on the first accepted tick, else ``alpha * price + (1.0 - alpha) * ema`` with
  ``alpha = 2.0 / (n + 1)``. ``diff = ema_fast - ema_slow``; ``prev_diff`` starts at 0.0.
* A signal may fire on accepted tick number ``k > slow``: long when ``prev_diff <= 0 < diff``,
  short when ``prev_diff >= 0 > diff``.
* Levels live on the tick grid: ``p = round(price / tick_size)`` (half to even).
* Per tick: exit check of an open position (target fills at the target, stop fills at ``p``),
  then trailing and breakeven moves of a position that survives, then entry on a signal if flat.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

LONG = 1
SHORT = -1
SIDE_NAMES = {LONG: "long", SHORT: "short"}

# Order matters: a tick is counted under the first check it fails.
REJECT_REASONS = (
    "unknown_symbol",
    "non_finite",
    "non_positive",
    "bad_size",
    "future_timestamp",
    "stale_timestamp",
    "price_band",
)
#: 2200-01-01 UTC in ns: ticks at or after it are refused
TS_HORIZON = 7_258_118_400_000_000_000


@dataclass
class Result:
    """Outcome of a simulation.

    Attributes
    ----------
    trades
        Closed trades in closing order; each a dict with keys ``symbol``, ``side``, ``qty``,
        ``entry_ts``, ``entry_price``, ``exit_ts``, ``exit_price``, ``pnl``, ``exit_reason``.
    positions
        Positions still open at the end: symbol -> ``{side, qty, entry_price, target, stop}``
        with prices in price units (grid ticks times tick size).
    realized_pnl
        Sum of trade pnl in closing order, starting from 0.0.
    rejected
        Reason -> count of refused ticks; only reasons that occurred appear.
    """

    trades: list[dict] = field(default_factory=list)
    positions: dict[str, dict] = field(default_factory=dict)
    realized_pnl: float = 0.0
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass
class _Position:
    side: int  # LONG or SHORT
    qty: int
    entry: int  # grid ticks
    target: int  # grid ticks
    stop: int  # grid ticks
    stop_kind: str  # exit reason if the stop is hit: "stop", "trail" or "breakeven"
    entry_ts: int


@dataclass
class _Instrument:
    symbol: str
    tick_size: float
    lot_size: int
    point_value: float
    count: int = 0  # accepted ticks so far
    last_ts: int | None = None
    last_price: float | None = None
    ema_fast: float = 0.0
    ema_slow: float = 0.0
    prev_diff: float = 0.0
    position: _Position | None = None


def _reject_reason(
    idx: int, price: float, size: float, ts: int, insts: list[_Instrument], band: float
) -> str | None:
    """Name of the first validation rule the tick breaks, or None if it is acceptable."""
    if idx < 0 or idx >= len(insts):
        return "unknown_symbol"
    if not math.isfinite(price):
        return "non_finite"
    if price <= 0:
        return "non_positive"
    if not math.isfinite(size) or size < 0:
        return "bad_size"
    if ts >= TS_HORIZON:
        return "future_timestamp"
    last_ts = insts[idx].last_ts
    if last_ts is not None and ts < last_ts:
        return "stale_timestamp"
    reference = insts[idx].last_price
    if reference is not None and abs(price - reference) > band * reference:
        return "price_band"
    return None


def _update_signal(inst: _Instrument, price: float, fast: int, slow: int) -> int:
    """Advance both EMAs by one accepted tick and return +1 / -1 / 0 for a crossover."""
    inst.count += 1
    if inst.count == 1:
        inst.ema_fast = price
        inst.ema_slow = price
    else:
        alpha = 2.0 / (fast + 1)
        inst.ema_fast = alpha * price + (1.0 - alpha) * inst.ema_fast
        alpha = 2.0 / (slow + 1)
        inst.ema_slow = alpha * price + (1.0 - alpha) * inst.ema_slow
    diff = inst.ema_fast - inst.ema_slow

    signal = 0
    # Before slow+1 ticks the slow EMA is still dominated by its seed, so crossovers are noise.
    if inst.count > slow:
        if inst.prev_diff <= 0 < diff:
            signal = LONG
        elif inst.prev_diff >= 0 > diff:
            signal = SHORT
    inst.prev_diff = diff
    return signal


def _check_exit(pos: _Position, p: int) -> tuple[int, str] | None:
    """Exit (grid ticks, reason) if the bracket is hit at grid price ``p``, else None."""
    if pos.side == LONG:
        if p >= pos.target:
            return pos.target, "target"
        if p <= pos.stop:
            # Stop-market: a gap through the stop fills at the gap price, not at the stop.
            return p, pos.stop_kind
    else:
        if p <= pos.target:
            return pos.target, "target"
        if p >= pos.stop:
            return p, pos.stop_kind
    return None


def _move_stop(pos: _Position, p: int, trail_ticks: int, breakeven_ticks: int) -> None:
    """Apply the trailing rule, then the breakeven rule, to a position that survived ``p``."""
    if trail_ticks > 0:
        if pos.side == LONG:
            candidate = p - trail_ticks
            if candidate > pos.stop:
                pos.stop = candidate
                pos.stop_kind = "trail"
        else:
            candidate = p + trail_ticks
            if candidate < pos.stop:
                pos.stop = candidate
                pos.stop_kind = "trail"
    if breakeven_ticks > 0 and pos.side * (p - pos.entry) >= breakeven_ticks:
        stop_worse_than_entry = pos.stop < pos.entry if pos.side == LONG else pos.stop > pos.entry
        if stop_worse_than_entry:
            pos.stop = pos.entry
            pos.stop_kind = "breakeven"


def _close(inst: _Instrument, exit_ticks: int, reason: str, ts: int) -> dict:
    """Flatten the instrument's position and return the trade record."""
    pos = inst.position
    assert pos is not None
    entry_price = pos.entry * inst.tick_size
    exit_price = exit_ticks * inst.tick_size
    pnl = pos.side * (exit_price - entry_price) * pos.qty * inst.point_value
    inst.position = None
    return {
        "symbol": inst.symbol,
        "side": SIDE_NAMES[pos.side],
        "qty": pos.qty,
        "entry_ts": pos.entry_ts,
        "entry_price": entry_price,
        "exit_ts": ts,
        "exit_price": exit_price,
        "pnl": pnl,
        "exit_reason": reason,
    }


def simulate(
    instruments: list[dict],
    strategy: dict,
    bracket: dict,
    slippage_ticks: int,
    ticks: Iterable[tuple[int, float, float, int]],
    price_band_pct: float | None = 20.0,
) -> Result:
    """Run the pinned EMA-crossover strategy with bracket exits over a tick stream.

    Parameters
    ----------
    instruments
        One dict per instrument: ``symbol``, ``tick_size``, ``lot_size``, ``point_value``.
        A tick's instrument index refers to this list.
    strategy
        ``fast`` and ``slow`` EMA lengths and ``quantity`` in lots.
    bracket
        ``target_ticks``, ``stop_ticks``, ``trail_ticks`` and ``breakeven_ticks`` (0 disables
        trailing / breakeven).
    slippage_ticks
        Ticks added against the trader to every entry price.
    ticks
        ``(instrument index, price, size, ts_ns)`` in arrival order.
    price_band_pct
        The band around the last accepted price, percent; None = no band.

    Returns
    -------
    Result
        Closed trades, open positions, realized pnl and rejected-tick counts.
    """
    insts = [
        _Instrument(
            symbol=spec["symbol"],
            tick_size=spec["tick_size"],
            lot_size=spec["lot_size"],
            point_value=spec["point_value"],
        )
        for spec in instruments
    ]
    fast = strategy["fast"]
    slow = strategy["slow"]
    quantity = strategy["quantity"]
    target_ticks = bracket["target_ticks"]
    stop_ticks = bracket["stop_ticks"]
    trail_ticks = bracket.get("trail_ticks", 0)
    breakeven_ticks = bracket.get("breakeven_ticks", 0)

    band = math.inf if price_band_pct is None else price_band_pct / 100.0
    result = Result()
    for idx, price, size, ts in ticks:
        reason = _reject_reason(idx, price, size, ts, insts, band)
        if reason is not None:
            result.rejected[reason] = result.rejected.get(reason, 0) + 1
            continue

        inst = insts[idx]
        inst.last_ts = ts
        inst.last_price = price
        signal = _update_signal(inst, price, fast, slow)
        p = round(price / inst.tick_size)

        # (1) exits, then stop moves, for a position entered on an earlier tick.
        if inst.position is not None:
            hit = _check_exit(inst.position, p)
            if hit is not None:
                trade = _close(inst, hit[0], hit[1], ts)
                result.trades.append(trade)
                result.realized_pnl += trade["pnl"]
            else:
                _move_stop(inst.position, p, trail_ticks, breakeven_ticks)

        # (2) entries: only when flat, which includes having just exited on this tick.
        if inst.position is None and signal != 0:
            entry = p + signal * slippage_ticks
            inst.position = _Position(
                side=signal,
                qty=quantity * inst.lot_size,
                entry=entry,
                target=entry + signal * target_ticks,
                stop=entry - signal * stop_ticks,
                stop_kind="stop",
                entry_ts=ts,
            )

    for inst in insts:
        pos = inst.position
        if pos is not None:
            result.positions[inst.symbol] = {
                "side": SIDE_NAMES[pos.side],
                "qty": pos.qty,
                "entry_price": pos.entry * inst.tick_size,
                "target": pos.target * inst.tick_size,
                "stop": pos.stop * inst.tick_size,
            }
    return result
