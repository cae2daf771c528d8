"""Restart reconciliation: the journal's positions against the broker's, before any trading.

The journal is replayed first (:func:`engine.journal.restore`), and the router's brackets with it
(:func:`~engine.brokers.routing.rebuild.rebuild`). Then the broker's view of the day's OTrade orders
goes through the router as any order update would: what filled while OTrade was down is booked at
the broker's prices (P&L and loss limits follow the broker), and what finished is settled (a filled
stop's target is cancelled). Then the broker's positions and open orders are fetched. A position the
same at both is adopted with its resting target and stop; one without them gets new ones. OTrade's
own orders that protect nothing are cancelled, since a resting order for a position that is not
there could open one. Anything else (a different position, an order OTrade did not place on a traded
instrument) is journaled, shown on the page, and stops entries (``PAUSE_RECONCILE``) until the
operator acts: ``reconcile`` checks again after they fixed it at the broker, ``adopt`` makes the
engine take the broker's positions as they are.
"""

from __future__ import annotations

import time

from engine.brokers.base import OrderState
from engine.brokers.routing.legs import LEG_REASONS
from engine.brokers.routing.rebuild import rebuild
from engine.brokers.routing.router import Router
from engine.journal import TAG_PREFIX
from engine.state import PAUSE_RECONCILE
from kernels import layout


def _held(position: dict | None) -> tuple[str, int] | None:
    return None if position is None else (position["side"], int(position["qty"]))


def _summary(order: OrderState) -> dict:
    return {
        "order_id": order.order_id,
        "tag": order.tag,
        "symbol": order.symbol,
        "side": order.side,
        "qty": order.qty,
        "type": order.type,
    }


async def reconcile(router: Router) -> dict:
    """Compare the broker with the engine; adopt what matches, halt entries on the rest.

    The first call (at start) rebuilds the router's brackets from the journal; every call
    then books what the broker filled of OTrade's orders that the journal has not (fills while
    OTrade was down), at the broker's prices, and settles the orders that finished meanwhile.

    Returns
    -------
    dict
        ``matched`` symbols, ``mismatched`` positions (journal vs broker), ``foreign_orders``,
        ``cancelled`` stray orders of OTrade's, ``unconfigured`` broker positions, ``booked``
        fills of orders that filled while OTrade was down, and ``clean``: whether entries may
        run.
    """
    state, adapter = router.state, router.adapter
    back = set() if router.rebuilt else rebuild(router, router.journal.path)
    router.rebuilt = True
    realized = state.account(layout.A_REALIZED)
    trades = int(state.book[: state.n, layout.I_TRADES].sum())
    seen = set()
    for order in await adapter.day_orders(TAG_PREFIX):
        seen.add(order.tag)
        router.on_order(order)
    for tag in back - seen:
        track = router.by_tag.get(tag)
        if track is not None:
            # sent when OTrade died: a stop or target is placed anew for the position it
            # protects (closing the position for it would trade on a crash, not a signal)
            router.drop(track, "not at the broker: it never reached it", retry=True)
    stale = router.cancel_stale()
    router.resume_exits()
    broker_positions = await adapter.positions()
    open_orders = await adapter.open_orders()
    held = state.positions()
    report: dict = {
        "matched": [],
        "mismatched": [],
        "foreign_orders": [],
        "cancelled": stale,
        "unconfigured": sorted(set(broker_positions) - set(state.index)),
        "booked": {
            "trades": int(state.book[: state.n, layout.I_TRADES].sum()) - trades,
            "realized_pnl": state.account(layout.A_REALIZED) - realized,
        },
    }
    for symbol in state.symbols:
        mine, theirs = _held(held.get(symbol)), _held(broker_positions.get(symbol))
        if mine != theirs:
            report["mismatched"].append({"symbol": symbol, "journal": mine, "broker": theirs})
        elif mine is not None:
            report["matched"].append(symbol)
    for order in open_orders:
        if order.symbol not in state.index or order.tag in router.by_tag:
            continue
        if not (order.tag or "").startswith(TAG_PREFIX):
            report["foreign_orders"].append(_summary(order))
        elif order.symbol not in report["matched"] or not _adopt_leg(router, order, held):
            await adapter.cancel(order.order_id)
            report["cancelled"].append(_summary(order))
    for symbol in report["matched"]:
        await router.protect(router.hold(state.index[symbol]))
    report["clean"] = not (report["mismatched"] or report["foreign_orders"])
    state.set_pause(PAUSE_RECONCILE, not report["clean"])
    for i in range(state.n):
        router.refresh(i)
    router.journal.line("broker", "reconcile", **report)
    router.publish({"type": "reconcile", **report})
    return report


def _adopt_leg(router: Router, order: OrderState, held: dict) -> bool:
    position = held.get(order.symbol)
    role = {"limit": "target", "stop": "stop"}.get(order.type)
    if position is None or role is None:
        return False
    closing = "sell" if position["side"] == "long" else "buy"
    i = router.state.index[order.symbol]
    bracket = router.current[router.hold(i)]
    if order.side != closing or order.qty != position["qty"] or role in bracket.legs:
        return False
    side = layout.SHORT if closing == "sell" else layout.LONG
    price = order.limit_price if role == "target" else order.stop_price
    leg = router.track(
        order.tag or "", role, i, side, order.qty, LEG_REASONS[role], bracket.key, order.type,
        price, order.order_id,
    )  # fmt: skip
    bracket.legs[role] = leg
    router.record("adopted", leg, status=order.status)
    return True


async def adopt(router: Router) -> dict:
    """Make the engine's positions the broker's, journaled as fills, then reconcile again.

    A position the engine holds but the broker does not is closed at its own entry price (no
    P&L); one the broker holds is opened at the broker's average price with a fresh bracket.
    """
    state, engine = router.state, router.engine
    broker_positions = await router.adapter.positions()
    held = state.positions()
    now = time.time_ns()
    for symbol in state.symbols:
        mine, theirs = held.get(symbol), broker_positions.get(symbol)
        if _held(mine) == _held(theirs):
            continue
        i = state.index[symbol]
        # journaled as fills of the router's own tags: close the engine's, open the broker's
        if mine is not None:
            closing = layout.SHORT if mine["side"] == "long" else layout.LONG
            price, reason = mine["entry_price"], layout.R_MANUAL
            engine.broker_fill(i, closing, mine["qty"], price, reason, now, tag=router.new_tag())
        if theirs is not None:
            opening = layout.LONG if theirs["side"] == "long" else layout.SHORT
            price, reason = theirs["entry_price"], layout.R_NONE
            engine.broker_fill(i, opening, theirs["qty"], price, reason, now, tag=router.new_tag())
    return await reconcile(router)
