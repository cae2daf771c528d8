"""The bracket invariants, the watchdog that restores them, and how positions' legs are shown.

Checked after every broker event (each settle refreshes the row) and every :data:`WATCH_S` by
:func:`watch`: while the broker holds a position there is exactly one protective stop resting
for it (the closing side, the position's quantity) or an exit in flight; a leg of a position
that no longer exists is being cancelled and is gone within :data:`GRACE_S`. The watchdog
places what an open position lacks and alerts (``unprotected``) once per breach that outlasts
the grace.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from engine.brokers.routing.brackets import GRACE_S
from kernels import layout

if TYPE_CHECKING:
    from engine.brokers.routing.router import Router

#: seconds between the watchdog's checks of every position's protection
WATCH_S = 0.5


def breaches(router: Router, grace_s: float = GRACE_S) -> dict[tuple[str, str], str]:
    """Return what breaks the invariants now, after ``grace_s`` of leeway.

    Returns
    -------
    dict
        ``(symbol, what)`` -> a message naming the position or the leg and for how long.
    """
    now, out = time.monotonic(), {}
    for i, symbol in enumerate(router.state.symbols):
        side, qty = router.held(i)
        bracket = router.current[i]
        state = router.refresh(i)
        since = now if bracket is None else bracket.unprotected_since
        late = since is not None and (bracket is None or now - since >= grace_s)
        if side != layout.FLAT and state == "unprotected" and late:
            message = f"{symbol}: {qty} held with no stop resting for {now - since:.1f} s"
            out[(symbol, "unprotected")] = message
    for bracket in router.brackets.values():
        if bracket.retired_at is None or now - bracket.retired_at < grace_s:
            continue
        symbol = router.state.symbols[bracket.i]
        for leg in bracket.legs.values():
            if not leg.final:
                message = f"{symbol}: {leg.role} {leg.tag} of a closed position is {leg.status}"
                out[(symbol, leg.tag)] = message
    return out


async def watch(router: Router) -> None:
    """Every :data:`WATCH_S`, place what open positions lack and alert new breaches."""
    alerted: set[tuple[str, str]] = set()
    while True:
        await asyncio.sleep(WATCH_S)
        now = time.monotonic()
        for i in range(router.state.n):
            bracket = router.current[i]
            state = "flat" if bracket is None else router.refresh(i)
            if state == "unprotected" and not router.expired:
                router.spawn(router.protect(i))  # places only what is missing
            since = bracket.unprotected_since if bracket is not None else None
            late = since is not None and now - since >= GRACE_S
            if state == "entering" and late and bracket.entry is not None:
                # an entry still filling after the grace: cut it to what filled and protect that
                router.cancel_later(bracket.entry)
        found = breaches(router)
        for key in sorted(found.keys() - alerted):
            router.alert("unprotected", found[key])
        alerted = set(found)


def legs_view(router: Router, symbol: str) -> dict:
    """Return ``symbol``'s protection state and its resting legs, for the page and API."""
    i = router.state.index[symbol]
    bracket = router.current[i]
    legs = [] if bracket is None else [leg.view() for leg in bracket.legs.values()]
    return {"protection": router.refresh(i), "legs": legs}


def working(router: Router) -> list[dict]:
    """Return the orders sent and not yet final, oldest first."""
    return [
        {**track.view(), "symbol": router.state.symbols[track.i]}
        for track in router.by_tag.values()
        if track.status != "sending" or track.order_id is not None
    ]
