"""Pure Numba kernels over OTrade's state arrays; they import numpy and numba only.

``KERNELS`` lists the twelve core kernels in pipeline order (DESIGN.md); ``on_tick`` and
``run_ticks`` compose them.
"""

from kernels.indicators import detect_crossover, update_atr, update_ema, update_rsi
from kernels.ledger import apply_fill, mark_to_market
from kernels.market import apply_tick, update_bar
from kernels.orders import bracket_levels, check_bracket, risk_gate, size_order
from kernels.pipeline import (
    broker_fill,
    close_day,
    flatten_all,
    flatten_one,
    halt,
    kill,
    on_tick,
    run_ticks,
)

#: the twelve core kernels, in pipeline order
KERNELS = (
    apply_tick,
    update_bar,
    update_ema,
    update_atr,
    update_rsi,
    detect_crossover,
    risk_gate,
    size_order,
    bracket_levels,
    check_bracket,
    apply_fill,
    mark_to_market,
)

__all__ = [
    "KERNELS",
    "apply_fill",
    "apply_tick",
    "bracket_levels",
    "broker_fill",
    "check_bracket",
    "close_day",
    "detect_crossover",
    "flatten_all",
    "flatten_one",
    "halt",
    "kill",
    "mark_to_market",
    "on_tick",
    "risk_gate",
    "run_ticks",
    "size_order",
    "update_atr",
    "update_bar",
    "update_ema",
    "update_rsi",
]
