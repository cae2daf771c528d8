"""The fused per-tick pipeline and its batch loop, composed from the twelve kernels."""

import numpy as np

from kernels.indicators import detect_crossover, update_atr, update_ema, update_rsi
from kernels.jit import add_int, entry, get_int, int_bits, kernel, set_int
from kernels.layout import (
    A_CALENDAR_END,
    A_DAY_HALT,
    A_EOD_DONE,
    A_EVENT_CAP,
    A_EVENTS,
    A_HALT,
    A_LIVE,
    A_N_INST,
    A_REFUSED,
    A_SESSION_ROW,
    E_PRICE,
    E_STOP,
    E_TARGET,
    FLAT,
    G_DAILY_LOSS,
    G_HALTED,
    G_OK,
    I_EXIT_TICKS,
    I_LTP_TICKS,
    I_PENDING,
    I_QTY,
    I_SIDE,
    I_SLIPPAGE_TICKS,
    I_STOP,
    I_STOP_KIND,
    I_STOP_RESTING,
    I_TARGET,
    I_TICK_SIZE,
    K_HALT,
    K_INTENT,
    K_REFUSED,
    K_STOP_MOVED,
    PENDING_EXIT,
    R_EOD,
    R_KILL,
    R_NONE,
    R_RISK,
    R_TARGET,
    S_FLATTEN,
)
from kernels.ledger import apply_fill, emit, mark_to_market
from kernels.market import TICK_OK, apply_tick, end_day, tick_code, update_bar
from kernels.orders import bracket_levels, check_bracket, count_order, risk_gate, size_order
from kernels.record import RC_ON, record_batch

#: event rows kept free per tick beyond the instruments: an exit, an entry and a halt
EVENTS_PER_TICK = 4


@entry
def _intent(
    book: np.ndarray, events: np.ndarray, i: int, side: int, qty: float, ts: int, reason: int
) -> None:
    count_order(book, ts)
    book[i, I_PENDING] = side if reason == R_NONE else PENDING_EXIT
    k = emit(book, events, K_INTENT, i, side, qty, ts, reason)
    if k >= 0:
        tick_size = book[i, I_TICK_SIZE]
        events[k, E_PRICE] = int_bits(book[i, I_LTP_TICKS] * tick_size)
        events[k, E_TARGET] = int_bits(book[i, I_TARGET] * tick_size)
        events[k, E_STOP] = int_bits(book[i, I_STOP] * tick_size)


@kernel
def _live(book: np.ndarray) -> bool:
    return get_int(book, book.shape[0] - 1, A_LIVE) != 0


@entry
def flatten_one(book: np.ndarray, events: np.ndarray, i: int, ts: int, reason: int) -> float:
    """Close instrument ``i``'s position with a market order at its LTP; return the P&L.

    The market order fills ``slippage_ticks`` worse than the LTP, like every paper market order.
    With a live broker the order leaves as an exit intent instead (once: an exit already
    awaiting the broker is not sent again) and the P&L arrives with the broker's fill.
    """
    side = book[i, I_SIDE]
    if side == FLAT:
        return 0.0
    if _live(book):
        if book[i, I_PENDING] != PENDING_EXIT:
            _intent(book, events, i, -int(side), book[i, I_QTY], ts, reason)
        return 0.0
    exit_ticks = book[i, I_LTP_TICKS] - side * book[i, I_SLIPPAGE_TICKS]
    count_order(book, ts)
    pnl = apply_fill(book, events, i, -int(side), book[i, I_QTY], exit_ticks, ts, reason)
    mark_to_market(book, i)
    return pnl


@entry
def flatten_all(book: np.ndarray, events: np.ndarray, ts: int, reason: int) -> int:
    """Close every open position at its LTP with ``reason``; return how many were closed."""
    n = get_int(book, book.shape[0] - 1, A_N_INST)
    closed = 0
    for i in range(n):
        if book[i, I_SIDE] != FLAT:
            flatten_one(book, events, i, ts, reason)
            closed += 1
    return closed


@entry
def halt(book: np.ndarray, events: np.ndarray, ts: int, code: int, reason: int) -> None:
    """Flatten everything with exit ``reason`` and stop entries with halt ``code``.

    G_DAILY_LOSS stops entries until the next session day; any other code until the operator
    resumes.
    """
    acct = book.shape[0] - 1
    if code == G_DAILY_LOSS:
        set_int(book, acct, A_DAY_HALT, code)
    else:
        set_int(book, acct, A_HALT, code)
    emit(book, events, K_HALT, -1, 0, 0.0, ts, code)
    flatten_all(book, events, ts, reason)


@kernel
def mark_and_guard(book: np.ndarray, events: np.ndarray, i: int, ts: int) -> None:
    """Mark instrument ``i`` to market and halt, flattening with reason risk, on a breach."""
    breach = mark_to_market(book, i)
    if breach != G_OK:
        halt(book, events, ts, breach, R_RISK)


@entry
def broker_fill(
    book: np.ndarray,
    events: np.ndarray,
    i: int,
    side: int,
    qty: float,
    price: float,
    ts: int,
    reason: int,
) -> float:
    """Apply a live broker's fill of ``qty`` units at ``price`` to instrument ``i``; return P&L.

    A fill that opens a position sets the bracket around its own price (the broker's, not the
    intent's reference), so the entry event carries the levels the resting exit orders use; a
    fill that reduces one is booked with ``reason``. The account is then marked and guarded as
    after any fill. The caller clears ``I_PENDING`` once the order is final.
    """
    price_ticks = price / book[i, I_TICK_SIZE]
    if book[i, I_SIDE] == FLAT:
        bracket_levels(book, i, side, price_ticks)
        reason = R_NONE
    pnl = apply_fill(book, events, i, side, qty, price_ticks, ts, reason)
    mark_and_guard(book, events, i, ts)
    return pnl


@entry
def close_day(book: np.ndarray) -> None:
    """End the account's trading day from Python (a calendar refill past the current day)."""
    end_day(book)


@entry
def kill(book: np.ndarray, events: np.ndarray, ts: int) -> None:
    """Flatten every position and refuse every new entry until the operator resumes."""
    halt(book, events, ts, G_HALTED, R_KILL)


@kernel
def _flatten_at_eod(book: np.ndarray, events: np.ndarray, ts: int) -> None:
    acct = book.shape[0] - 1
    row = get_int(book, acct, A_SESSION_ROW)
    flatten_at = get_int(book, row, S_FLATTEN)
    if ts >= flatten_at and get_int(book, acct, A_EOD_DONE) != flatten_at:
        set_int(book, acct, A_EOD_DONE, flatten_at)
        flatten_all(book, events, ts, R_EOD)


@kernel
def _exit(book: np.ndarray, events: np.ndarray, i: int, ts: int) -> bool:
    stop = book[i, I_STOP]
    reason = check_bracket(book, i)
    if reason != R_NONE:
        if _live(book):
            # the broker's resting stop closes a live position; with none resting there
            # (rejected, cancelled, not yet placed) the price through it closes it at market
            if reason != R_TARGET and book[i, I_STOP_RESTING] == 0.0:
                flatten_one(book, events, i, ts, reason)
            return False
        count_order(book, ts)
        side = int(book[i, I_SIDE])
        apply_fill(book, events, i, -side, book[i, I_QTY], book[i, I_EXIT_TICKS], ts, reason)
        return True
    if book[i, I_STOP] != stop:
        _stop_moved(book, events, i, ts)
    return False


@entry
def _stop_moved(book: np.ndarray, events: np.ndarray, i: int, ts: int) -> None:
    side = int(book[i, I_SIDE])
    k = emit(book, events, K_STOP_MOVED, i, side, book[i, I_QTY], ts, int(book[i, I_STOP_KIND]))
    if k >= 0:
        events[k, E_TARGET] = int_bits(book[i, I_TARGET] * book[i, I_TICK_SIZE])
        events[k, E_STOP] = int_bits(book[i, I_STOP] * book[i, I_TICK_SIZE])


@entry
def _enter(book: np.ndarray, events: np.ndarray, i: int, side: int, ts: int) -> None:
    qty = size_order(book, i)
    gate = risk_gate(book, i, qty, ts)
    if gate != G_OK:
        add_int(book, book.shape[0] - 1, A_REFUSED + gate, 1)
        emit(book, events, K_REFUSED, i, side, qty, ts, gate)
        return
    entry_ticks = book[i, I_LTP_TICKS] + side * book[i, I_SLIPPAGE_TICKS]
    bracket_levels(book, i, side, entry_ticks)
    if _live(book):
        _intent(book, events, i, side, qty, ts, R_NONE)
        return
    count_order(book, ts)
    apply_fill(book, events, i, side, qty, entry_ticks, ts, R_NONE)


@entry
def on_tick(
    book: np.ndarray, events: np.ndarray, i: int, price: float, size: float, ts: int
) -> int:
    """Run one tick of instrument ``i`` through the whole pipeline; return the tick's code.

    Validate and store it, update bars and indicators, check the open bracket, flatten at the
    session's flatten_at, enter on a crossover when flat and the risk gate allows, then mark to
    market and flatten everything when a loss limit is breached. Returns 0, or the reject
    reason (see ``kernels.market``) when the tick was refused.
    """
    code = apply_tick(book, i, price, size, ts)
    if code != TICK_OK:
        return code
    if update_bar(book, i, price, size, ts):
        update_atr(book, i)
        update_rsi(book, i)
    update_ema(book, i, price)
    signal = detect_crossover(book, i)
    if _exit(book, events, i, ts):
        # a loss realized by the exit must stop an entry on this same tick
        mark_and_guard(book, events, i, ts)
    _flatten_at_eod(book, events, ts)
    if signal != 0 and book[i, I_SIDE] == FLAT and book[i, I_PENDING] == 0:
        _enter(book, events, i, signal, ts)
    mark_and_guard(book, events, i, ts)
    return TICK_OK


@entry
def run_ticks(
    book: np.ndarray,
    events: np.ndarray,
    idx: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    ts: np.ndarray,
    codes: np.ndarray,
    rec: np.ndarray,
    rec_ctl: np.ndarray,
    start: int,
    stop: int,
) -> int:
    """Run ticks ``start .. stop-1`` of the scratch arrays through ``on_tick``.

    Each tick's code (0 accepted, else its reject reason, see ``kernels.market``) goes to
    ``codes[k]``, for the consumers of the batch after the kernels (the paper matcher). While
    ``rec_ctl[RC_ON]``, the ticks are first appended to the record buffer ``rec`` (see
    ``kernels.record``); without room nothing runs and -1 comes back.
    Return the index of the first tick not run: ``stop``, or earlier when the event ring is
    nearly full or a tick the kernels would accept lies beyond the session calendar, so the
    caller drains the ring or extends the calendar and calls again from there. Nothing is lost.
    """
    acct = book.shape[0] - 1
    room = get_int(book, acct, A_EVENT_CAP) - get_int(book, acct, A_N_INST) - EVENTS_PER_TICK
    calendar_end = get_int(book, acct, A_CALENDAR_END)
    if rec_ctl[RC_ON] != 0 and not record_batch(
        book, rec, rec_ctl, idx, price, size, ts, start, stop
    ):
        return -1
    for k in range(start, stop):
        if get_int(book, acct, A_EVENTS) > room:
            return k
        # a refused tick never moves the calendar (a far-future one would end the trading day)
        if ts[k] >= calendar_end and tick_code(book, idx[k], price[k], size[k], ts[k]) == TICK_OK:
            return k
        codes[k] = on_tick(book, events, idx[k], price[k], size[k], ts[k])
    return stop
