"""After a restart, put the router's brackets back from the journal before asking the broker.

The journal holds every order the router sent (``order placed``, with the key of the position it
serves), every order that became final (``order filled|cancelled|rejected|dropped``), every
intent and every fill with its order's tag. From these :func:`rebuild` makes a
:class:`~engine.brokers.routing.brackets.Track` of each order not known final, with what the journal
booked of it, and puts each in its position's bracket; the bracket of each position the journal
holds open becomes its instrument's current one, every other bracket is retired (its legs are
then cancelled). :func:`~engine.brokers.routing.reconcile.reconcile` then hands the broker's
view of the day's orders to the router, which books the fills that happened while OTrade was
down at their real prices and settles what finished.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.brokers.routing.brackets import FINAL, Bracket, Track
from engine.brokers.routing.legs import LEG_REASONS
from engine.brokers.routing.router import Router
from engine.journal import FILL, ORDER, read_journal
from kernels import layout


def rebuild(router: Router, path: str | Path) -> set[str]:
    """Rebuild ``router``'s open orders and brackets from the journal at ``path``.

    Returns
    -------
    set of str
        The tags of the orders put back (to be found at the broker, else dropped).
    """
    index = router.state.index
    sent: dict[str, dict] = {}
    intents: dict[str, dict] = {}
    final: set[str] = set()
    booked: dict[str, list[float]] = {}
    #: symbol -> (signed units held, key of the position)
    held: dict[str, tuple[int, str]] = {}
    for line in read_journal(path):
        kind, action, tag = line.get("type"), line.get("action"), line.get("tag")
        if not tag or line.get("symbol") not in index:
            continue
        if kind == ORDER and action in FINAL:
            final.add(tag)
        elif kind == ORDER and action in ("sending", "placed", "adopted") and "position" in line:
            sent[tag] = {**sent.get(tag, {}), **line}
        elif kind == ORDER and action in ("entry", "exit") and "seq" in line:
            intents[tag] = line  # an intent from before ``sending`` lines were written
        elif kind == FILL:
            units = int(line["qty"])
            got = booked.setdefault(tag, [0, 0.0])
            got[0] += units
            got[1] += units * float(line["price"])
            before, key = held.get(line["symbol"], (0, tag))
            signed = units if line["side"] == "buy" else -units
            held[line["symbol"]] = (before + signed, tag if before == 0 else key)
    for tag, line in intents.items():
        # placed lines carry the intent's fields; an intent with fills was placed (or paper)
        if tag in sent:
            sent[tag] = {**line, **sent[tag]}
        elif tag not in booked:
            sent[tag] = line
    now = time.monotonic()
    back: set[str] = set()
    for tag, line in sent.items():
        if tag in final:
            continue
        i = index[line["symbol"]]
        role = line.get("role") or line["action"]
        opened = held.get(line["symbol"], (0, ""))
        key = line.get("position") or (tag if role == "entry" else opened[1])
        if not key:
            continue
        track = _track(router, line, tag, role, i, key, booked.get(tag, (0, 0.0)))
        bracket = router.brackets.get(key)
        if bracket is None:
            bracket = router.brackets[key] = Bracket(key, i, "done", retired_at=now)
        if role == "entry":
            bracket.entry = track
        elif role == "exit":
            bracket.exit = track
        else:
            bracket.legs[role] = track
        back.add(tag)
    for symbol, (signed, key) in held.items():
        i = index[symbol]
        if signed == 0 or router.state.book[i, layout.I_SIDE] == layout.FLAT:
            continue
        bracket = router.brackets.get(key) or Bracket(key, i)
        router.brackets[key] = router.current[i] = bracket
        bracket.retired_at = None
        bracket.phase = "exiting" if bracket.exit is not None else "open"
    for bracket in router.brackets.values():
        i = bracket.i
        entering = bracket.entry is not None and router.current[i] is None
        if entering and router.state.book[i, layout.I_SIDE] == layout.FLAT:
            # an entry on its way when OTrade stopped: the broker says whether it filled
            router.current[i], bracket.phase, bracket.retired_at = bracket, "entering", None
    return back


def _track(router: Router, line: dict, tag: str, role: str, i: int, key: str, got) -> Track:
    side = layout.LONG if line["side"] == "buy" else layout.SHORT
    if role == "entry":
        reason = layout.R_NONE
    elif role == "exit":
        reason = layout.EXIT_REASONS.index(line.get("reason") or "manual")
    else:
        reason = LEG_REASONS[role]
    order_type = line.get("order_type") or "market"
    price = line.get("limit_price") if order_type == "limit" else line.get("stop_price")
    order_id = line.get("order_id")
    track = router.track(tag, role, i, side, line["qty"], reason, key, order_type, price, order_id)
    track.filled, track.paid = int(got[0]), float(got[1])
    return track
