"""Paper-broker kernels: match working operator orders against the ticks of a batch.

The strategy's own entries and brackets fill inside ``run_ticks``; these kernels fill the
orders placed through the broker interface (operator, web API, other code) by the same rules,
from each tick's price on the instrument's grid, ``p = rint(price / tick_size)``:

- market: at once at the LTP plus ``slippage_ticks`` against the order (placement time);
- limit: a buy fills on a tick with ``p <= limit``, at the limit (a sell mirrored), also when
  the tick gaps through it;
- stop (stop-market): a buy triggers on ``p >= stop`` and fills at ``p``, so a gap fills worse,
  with no extra slippage (like the strategy's stop); a sell mirrored;
- stop-limit: a buy triggers on ``p >= stop`` and then rests as a limit at ``limit``; it fills
  on the triggering tick itself when ``p <= limit``.

An order is matched from the tick after the one it became working on: a limit already
marketable at placement fills on the next tick that satisfies it, and bracket exits activated
by their entry's fill wait for the tick after the entry (as ``check_bracket`` does).

Working orders live in a preallocated table of ``ORDER_DTYPE`` rows (aligned records); prices
are ticks on the instrument's grid. Each instrument's working orders form a doubly linked list
in placement order (``LIST_*`` columns), so a tick visits only its instrument's orders, oldest
first. Every state change the kernels make is written to an update ring of ``UPDATE_DTYPE``
rows that the Python side decodes after each call; fills go through ``apply_fill`` with reason
``R_MANUAL`` into the engine's event ring like any other fill.
"""

import numpy as np

from kernels.jit import entry, get_int
from kernels.layout import (
    A_DAY_HALT,
    A_EVENT_CAP,
    A_EVENTS,
    A_HALT,
    A_N_INST,
    G_OK,
    I_LOT_SIZE,
    I_MAX_POSITION,
    I_QTY,
    I_SIDE,
    I_TICK_SIZE,
    R_MANUAL,
)
from kernels.ledger import apply_fill
from kernels.orders import count_order
from kernels.pipeline import EVENTS_PER_TICK, mark_and_guard

# -- order types -------------------------------------------------------------------------------
OT_MARKET = 0  #: fills at once at the LTP plus slippage
OT_LIMIT = 1  #: fills at the limit when a tick reaches it
OT_STOP = 2  #: stop-market: fills at the triggering tick's price
OT_STOP_LIMIT = 3  #: rests as a limit once a tick reaches the stop
#: order type names by code, as the broker interface spells them
ORDER_TYPES = ("market", "limit", "stop", "stop_limit")

# -- order status ------------------------------------------------------------------------------
OS_FREE = 0  #: the slot holds no order
OS_PENDING = 1  #: a bracket exit waiting for its entry to fill
OS_WORKING = 2  #: live and matched against ticks
OS_FILLED = 3  #: filled completely
OS_CANCELLED = 4  #: cancelled (operator, OCO, parent, no position)
OS_REJECTED = 5  #: refused by the risk rules
#: order status names by code
ORDER_STATUSES = ("free", "pending", "working", "filled", "cancelled", "rejected")

# -- bracket legs ------------------------------------------------------------------------------
LEG_NONE = 0  #: a plain order
LEG_ENTRY = 1  #: the entry of a bracket
LEG_TARGET = 2  #: the take-profit limit of a bracket (reduce-only)
LEG_STOP = 3  #: the stop-market of a bracket (reduce-only)
#: leg names by code; a plain order has none
LEGS = ("", "entry", "target", "stop")

# -- update kinds ------------------------------------------------------------------------------
UK_ACCEPTED = 1  #: the order was accepted (working, or pending for bracket exits)
UK_MODIFIED = 2  #: quantity or prices changed
UK_TRIGGERED = 3  #: a stop-limit's stop was reached; it now rests as a limit
UK_ACTIVATED = 4  #: a bracket exit became working when its entry filled
UK_FILLED = 5  #: filled
UK_CANCELLED = 6  #: cancelled
UK_REJECTED = 7  #: refused by the risk rules, at placement or when it would fill
#: update kind names by code
UPDATE_KINDS = (
    "",
    "accepted",
    "modified",
    "triggered",
    "activated",
    "filled",
    "cancelled",
    "rejected",
)

# -- reasons carried by updates ----------------------------------------------------------------
PR_NONE = 0  #: no reason
PR_USER = 1  #: cancelled through the interface
PR_OCO = 2  #: another order of its OCO group filled
PR_PARENT_CANCELLED = 3  #: the bracket's entry was cancelled
PR_PARENT_REJECTED = 4  #: the bracket's entry was refused
PR_HALTED = 5  #: the engine is halted and the order would not only reduce the position
PR_MAX_POSITION = 6  #: the fill would take the position beyond max_position lots
PR_NO_POSITION = 7  #: a bracket exit found no position left to reduce
PR_NO_PRICE = 8  #: a market order on an instrument without an LTP yet
#: reason names by code
ORDER_REASONS = (
    "",
    "user",
    "oco",
    "parent_cancelled",
    "parent_rejected",
    "halted",
    "max_position",
    "no_position",
    "no_price",
)

#: one working or finished order; prices in ticks, quantities in units
ORDER_DTYPE = np.dtype(
    [
        ("id", np.int64),  # numeric order id, unique per broker
        ("inst", np.int64),  # instrument row of the book
        ("side", np.int64),  # LONG buys, SHORT sells
        ("qty", np.int64),  # units
        ("otype", np.int64),  # OT_*
        ("limit", np.int64),  # limit price, ticks
        ("stop", np.int64),  # stop price, ticks
        ("triggered", np.int64),  # 1 once a stop-limit's stop was reached
        ("oco", np.int64),  # OCO group, 0 = none
        ("status", np.int64),  # OS_*
        ("leg", np.int64),  # LEG_*
        ("parent", np.int64),  # slot of a pending exit's entry, -1 = none
        ("child_target", np.int64),  # slot of an entry's pending target, -1 = none
        ("child_stop", np.int64),  # slot of an entry's pending stop, -1 = none
        ("prv", np.int64),  # previous working order of the instrument, -1 = head
        ("nxt", np.int64),  # next working order of the instrument, -1 = tail
        ("active_seq", np.int64),  # tick sequence number it became working at
        ("filled", np.int64),  # units filled
        ("fill_ticks", np.int64),  # fill price, ticks
        ("fill_ts", np.int64),  # ts of the fill, ns
        ("reason", np.int64),  # PR_* of the last change
    ],
    align=True,
)

#: one state change of an order, decoded into an ``OrderUpdate`` by the Python side
UPDATE_DTYPE = np.dtype(
    [
        ("kind", np.int64),  # UK_*
        ("slot", np.int64),  # row of the order table
        ("id", np.int64),  # order id
        ("status", np.int64),  # OS_* after the change
        ("triggered", np.int64),  # stop-limit triggered after the change
        ("filled", np.int64),  # units filled after the change
        ("fill_ticks", np.int64),  # fill price, ticks
        ("ts", np.int64),  # ts of the causing tick, ns
        ("reason", np.int64),  # PR_*
    ],
    align=True,
)

# -- per-instrument list heads (int64 matrix, one row per instrument) ---------------------------
LIST_HEAD = 0  #: slot of the oldest working order, -1 = none
LIST_TAIL = 1  #: slot of the newest working order, -1 = none
#: width of a list row
N_LIST_COLS = 2

# -- counters (int64 vector) -------------------------------------------------------------------
C_SEQ = 0  #: sequence number of the last tick matched
C_CUR_K = 1  #: batch index of the tick in progress, so a resumed tick is not counted twice
C_UPDATES = 2  #: rows written to the update ring since the last decode
C_UPDATES_LOST = 3  #: updates that found the ring full (the driver keeps this at 0)
#: length of the counter vector
N_COUNTERS = 4

#: update rows one order can write beyond the OCO cancels: trigger, fill, two activations
UPDATES_PER_FILL = 4


@entry
def push_update(
    orders: np.ndarray,
    updates: np.ndarray,
    counters: np.ndarray,
    s: int,
    kind: int,
    ts: int,
    reason: int,
) -> None:
    """Write an update of order slot ``s`` to the update ring, or count it lost when full."""
    k = counters[C_UPDATES]
    if k >= updates.shape[0]:
        counters[C_UPDATES_LOST] += 1
        return
    counters[C_UPDATES] = k + 1
    o = orders[s]
    u = updates[k]
    u.kind = kind
    u.slot = s
    u.id = o.id
    u.status = o.status
    u.triggered = o.triggered
    u.filled = o.filled
    u.fill_ticks = o.fill_ticks
    u.ts = ts
    u.reason = reason


@entry
def link(orders: np.ndarray, lists: np.ndarray, s: int) -> None:
    """Append order slot ``s`` to its instrument's working list (newest last)."""
    i = orders[s].inst
    tail = lists[i, LIST_TAIL]
    orders[s].prv = tail
    orders[s].nxt = -1
    if tail >= 0:
        orders[tail].nxt = s
    else:
        lists[i, LIST_HEAD] = s
    lists[i, LIST_TAIL] = s


@entry
def unlink(orders: np.ndarray, lists: np.ndarray, s: int) -> None:
    """Take order slot ``s`` out of its instrument's working list.

    The slot keeps its own ``nxt`` link, so a scan standing on it can still move on.
    """
    i = orders[s].inst
    prv = orders[s].prv
    nxt = orders[s].nxt
    if prv >= 0:
        orders[prv].nxt = nxt
    else:
        lists[i, LIST_HEAD] = nxt
    if nxt >= 0:
        orders[nxt].prv = prv
    else:
        lists[i, LIST_TAIL] = prv


@entry
def _end_child(
    orders: np.ndarray, updates: np.ndarray, counters: np.ndarray, c: int, ts: int, reason: int
) -> None:
    if c >= 0 and orders[c].status == OS_PENDING:
        orders[c].status = OS_CANCELLED
        orders[c].reason = reason
        push_update(orders, updates, counters, c, UK_CANCELLED, ts, reason)


@entry
def finish(
    orders: np.ndarray,
    updates: np.ndarray,
    lists: np.ndarray,
    counters: np.ndarray,
    s: int,
    status: int,
    ts: int,
    reason: int,
) -> None:
    """End order slot ``s`` with a final ``status`` and write its update.

    A bracket entry that ends unfilled cancels its pending exits (reason parent cancelled or
    rejected). The slot stays in the table until the Python side has decoded the update.
    """
    o = orders[s]
    if o.status == OS_WORKING:
        unlink(orders, lists, s)
    parent = o.parent
    if parent >= 0:
        # a pending exit ending alone: its entry must not activate the slot once reused
        if orders[parent].child_target == s:
            orders[parent].child_target = -1
        if orders[parent].child_stop == s:
            orders[parent].child_stop = -1
        o.parent = -1
    o.status = status
    o.reason = reason
    if status == OS_FILLED:
        kind = UK_FILLED
    elif status == OS_REJECTED:
        kind = UK_REJECTED
    else:
        kind = UK_CANCELLED
    push_update(orders, updates, counters, s, kind, ts, reason)
    if status != OS_FILLED:
        why = PR_PARENT_REJECTED if status == OS_REJECTED else PR_PARENT_CANCELLED
        _end_child(orders, updates, counters, o.child_target, ts, why)
        _end_child(orders, updates, counters, o.child_stop, ts, why)


@entry
def order_gate(book: np.ndarray, i: int, side: int, qty: int, leg: int) -> int:
    """Return PR_NONE when an order of ``qty`` units may fill on instrument ``i`` now, else why not.

    An order that only reduces the position (opposite side, ``qty`` within it) always may.
    Otherwise it is refused while the engine is halted (kill switch, max loss or the day's
    loss limit) and when the resulting position would exceed max_position lots. Bracket exits
    are reduce-only: they need an opposite position to reduce (PR_NO_POSITION otherwise) and
    are cut to its size when they fill.
    """
    acct = book.shape[0] - 1
    pos = book[i, I_SIDE] * book[i, I_QTY]
    opposite = side * pos < 0.0
    if leg in (LEG_TARGET, LEG_STOP):
        return PR_NONE if opposite else PR_NO_POSITION
    if opposite and qty <= abs(pos):
        return PR_NONE
    if get_int(book, acct, A_HALT) != G_OK or get_int(book, acct, A_DAY_HALT) != G_OK:
        return PR_HALTED
    after = abs(pos + side * qty)
    if after > abs(pos) and after > book[i, I_MAX_POSITION] * book[i, I_LOT_SIZE]:
        return PR_MAX_POSITION
    return PR_NONE


@entry
def _activate(
    orders: np.ndarray,
    updates: np.ndarray,
    lists: np.ndarray,
    counters: np.ndarray,
    c: int,
    ts: int,
) -> None:
    if c >= 0 and orders[c].status == OS_PENDING:
        orders[c].status = OS_WORKING
        orders[c].parent = -1
        orders[c].active_seq = counters[C_SEQ]
        link(orders, lists, c)
        push_update(orders, updates, counters, c, UK_ACTIVATED, ts, PR_NONE)


@entry
def fill_order(
    book: np.ndarray,
    events: np.ndarray,
    orders: np.ndarray,
    updates: np.ndarray,
    lists: np.ndarray,
    counters: np.ndarray,
    s: int,
    price_ticks: int,
    ts: int,
) -> int:
    """Fill working order slot ``s`` at ``price_ticks``, unless the risk rules refuse it now.

    The fill goes through ``apply_fill`` (reason R_MANUAL) and counts against the order rate;
    then the order's OCO siblings are cancelled, a bracket entry's exits become working, the
    instrument is marked to market, and a loss limit breached by the mark halts the engine as
    on a strategy fill. A refused order is rejected (or, for a bracket exit with no position
    left, cancelled). Return the order's final OS_* status.
    """
    o = orders[s]
    i = o.inst
    side = o.side
    gate = order_gate(book, i, side, o.qty, o.leg)
    if gate != PR_NONE:
        status = OS_CANCELLED if gate == PR_NO_POSITION else OS_REJECTED
        finish(orders, updates, lists, counters, s, status, ts, gate)
        return status
    qty = o.qty
    if o.leg == LEG_TARGET or o.leg == LEG_STOP:
        qty = min(qty, np.int64(book[i, I_QTY]))
    count_order(book, ts)
    apply_fill(book, events, i, side, float(qty), float(price_ticks), ts, R_MANUAL)
    o.filled = qty
    o.fill_ticks = price_ticks
    o.fill_ts = ts
    finish(orders, updates, lists, counters, s, OS_FILLED, ts, PR_NONE)
    group = o.oco
    if group != 0:
        for t in range(orders.shape[0]):
            st = orders[t].status
            if t != s and orders[t].oco == group and st in (OS_WORKING, OS_PENDING):
                finish(orders, updates, lists, counters, t, OS_CANCELLED, ts, PR_OCO)
    _activate(orders, updates, lists, counters, o.child_target, ts)
    _activate(orders, updates, lists, counters, o.child_stop, ts)
    mark_and_guard(book, events, i, ts)
    return OS_FILLED


@entry
def _match(
    book: np.ndarray,
    events: np.ndarray,
    orders: np.ndarray,
    updates: np.ndarray,
    lists: np.ndarray,
    counters: np.ndarray,
    s: int,
    p: int,
    ts: int,
) -> None:
    o = orders[s]
    side = o.side
    if o.otype == OT_STOP:
        if side * (p - o.stop) >= 0:
            fill_order(book, events, orders, updates, lists, counters, s, p, ts)
        return
    if o.otype == OT_STOP_LIMIT and o.triggered == 0:
        if side * (p - o.stop) < 0:
            return
        o.triggered = 1
        push_update(orders, updates, counters, s, UK_TRIGGERED, ts, PR_NONE)
    if (o.otype == OT_LIMIT or o.otype == OT_STOP_LIMIT) and side * (p - o.limit) <= 0:
        fill_order(book, events, orders, updates, lists, counters, s, o.limit, ts)


@entry
def match_ticks(
    book: np.ndarray,
    events: np.ndarray,
    orders: np.ndarray,
    updates: np.ndarray,
    lists: np.ndarray,
    counters: np.ndarray,
    idx: np.ndarray,
    price: np.ndarray,
    codes: np.ndarray,
    ts: np.ndarray,
    start: int,
    stop: int,
) -> int:
    """Match the working orders of each tick's instrument, ticks ``start .. stop-1``.

    Only the ticks ``run_ticks`` accepted (``codes[k] == 0``) match. Orders are visited
    oldest first. Return the index of the first tick not finished: ``stop``, or earlier when
    the event ring or the update ring is nearly full, so the caller drains both and calls
    again from there; a tick resumed midway is not counted twice and nothing fills twice.
    """
    acct = book.shape[0] - 1
    n_inst = get_int(book, acct, A_N_INST)
    event_room = get_int(book, acct, A_EVENT_CAP) - n_inst - EVENTS_PER_TICK
    update_room = updates.shape[0] - orders.shape[0] - UPDATES_PER_FILL
    for k in range(start, stop):
        if codes[k] != 0:
            continue
        i = idx[k]
        p = price[k]
        t = ts[k]
        if counters[C_CUR_K] != k:
            counters[C_CUR_K] = k
            counters[C_SEQ] += 1
        seq = counters[C_SEQ]
        p_ticks = np.int64(np.rint(p / book[i, I_TICK_SIZE]))
        s = lists[i, LIST_HEAD]
        while s >= 0:
            nxt = orders[s].nxt
            if orders[s].status == OS_WORKING and orders[s].active_seq != seq:
                if get_int(book, acct, A_EVENTS) > event_room or counters[C_UPDATES] > update_room:
                    return k
                _match(book, events, orders, updates, lists, counters, s, p_ticks, t)
            s = nxt
    return stop
