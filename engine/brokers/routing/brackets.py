"""The order-state machine the router keeps for each live position, and its invariants.

A position's life at the broker is ``entering`` (its market entry is on its way) -> ``open``
(a protective stop and a target rest at the broker for it) -> ``exiting`` (its legs are being
cancelled and a market exit is on its way) -> ``done``. :class:`Bracket` holds one position's
orders; every order is a :class:`Track` that names the position it serves by the position's
``key``, the tag of the order that opened it. Tags are never reused, so a leg left over from a
closed position can never stand in for the next position's leg, however late it is placed,
filled or reported.

The invariants (:meth:`Bracket.protection`, checked by the router after every broker event):
while the broker holds a position there is exactly one protective stop resting for it (the
closing side, the position's quantity) or an exit in flight, and a target at most; a leg of a
position that no longer exists is being cancelled.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from kernels import layout

#: a bracket's phases, in order
PHASES = ("entering", "open", "exiting", "done")
#: statuses after which an order changes no more (``dropped``: never reached the broker)
FINAL = frozenset({"filled", "cancelled", "rejected", "dropped"})
#: what :meth:`Bracket.protection` says of a position: the entry or the exit is on its way, a
#: stop rests at the broker for it, or none does (the state that must never last)
PROTECTION = ("flat", "entering", "protected", "unprotected", "exiting")
#: seconds an open position may be without a resting stop (placing it takes ~10 ms) or a dead
#: position's leg may still rest (a cancel takes a round trip) before it is a violation
GRACE_S = 2.0


@dataclass(slots=True, eq=False)
class Track:
    """What the router knows of one order it sent (or found at the broker after a restart)."""

    tag: str
    #: ``entry``, ``exit``, ``target`` or ``stop``
    role: str
    i: int
    side: int
    qty: int
    #: exit reason booked with its fills (``layout.R_*``)
    reason: int
    #: the key of the position it serves (:attr:`Bracket.key`)
    key: str
    #: ``market``, ``limit`` (target) or ``stop``
    order_type: str = "market"
    #: the target's limit or the stop's trigger
    price: float | None = None
    order_id: str | None = None
    #: ``sending``, ``working``, then one of :data:`FINAL`
    status: str = "sending"
    filled: int = 0
    #: sum of price * units filled so far, to price each new fill from the average
    paid: float = 0.0
    #: the router wants it cancelled (its position closed, or an exit needs it gone)
    cancelling: bool = False
    #: set once the order is final
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def final(self) -> bool:
        """Whether the order can change no more."""
        return self.status in FINAL

    @property
    def open_qty(self) -> int:
        """Units still to fill."""
        return self.qty - self.filled

    @property
    def resting(self) -> bool:
        """Whether the broker holds it open and the router still wants it there."""
        return self.status == "working" and not self.cancelling

    def view(self) -> dict:
        """Return the order as the page and ``/api/positions`` show a leg."""
        return {
            "role": self.role,
            "tag": self.tag,
            "order_id": self.order_id,
            "kind": self.order_type,
            "side": "buy" if self.side == layout.LONG else "sell",
            "qty": self.qty,
            "price": self.price if self.order_type == "limit" else None,
            "stop_price": self.price if self.order_type == "stop" else None,
            "status": "cancelling" if self.cancelling and not self.final else self.status,
            "filled_qty": self.filled,
        }


@dataclass(slots=True, eq=False)
class Bracket:
    """One position's orders: the entry that opened it, its legs, the exit that closes it."""

    #: the tag of the order that opened the position: every order of it names this key
    key: str
    i: int
    #: one of :data:`PHASES`
    phase: str = "entering"
    entry: Track | None = None
    #: the current ``stop`` and ``target`` legs
    legs: dict[str, Track] = field(default_factory=dict)
    exit: Track | None = None
    #: monotonic time since when the held position has had no resting stop (or, while its
    #: entry is still filling, none yet), None while it has
    unprotected_since: float | None = None
    #: monotonic time the bracket stopped being its instrument's current one
    retired_at: float | None = None
    #: an exit loop is closing the position
    closing: bool = False

    def stop_resting(self, qty: int) -> bool:
        """Whether a stop for ``qty`` units rests at the broker and is wanted there."""
        stop = self.legs.get("stop")
        return stop is not None and stop.resting and stop.open_qty == qty

    def exiting(self) -> bool:
        """Whether an exit is on its way (sent, or being sent once the legs are gone)."""
        return self.phase == "exiting" or (self.exit is not None and not self.exit.final)

    def protection(self, held_qty: int) -> str:
        """Return the :data:`PROTECTION` state of the position while ``held_qty`` is open."""
        if held_qty == 0:
            return "entering" if self.phase == "entering" else "flat"
        if self.exiting():
            return "exiting"
        if self.phase == "entering":
            return "entering"
        return "protected" if self.stop_resting(held_qty) else "unprotected"

    def tracks(self) -> list[Track]:
        """Return every order of the bracket, oldest role first."""
        orders = [self.entry, *self.legs.values(), self.exit]
        return [track for track in orders if track is not None]

    def note(self, held_qty: int, now: float | None = None) -> str:
        """Update :attr:`unprotected_since` from the position now held; return the state."""
        state = self.protection(held_qty)
        exposed = state == "unprotected" or (state == "entering" and held_qty > 0)
        if not exposed:
            self.unprotected_since = None
        elif self.unprotected_since is None:
            self.unprotected_since = time.monotonic() if now is None else now
        return state
