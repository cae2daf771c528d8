"""Keeping a live position protected and closing it: its legs placed, trailed and cancelled.

:class:`LegKeeper` is mixed into :class:`~engine.brokers.routing.router.Router` and works on its
brackets: :meth:`LegKeeper.protect` places what a position lacks of its stop and target (the
stop first), a trail is one modify of the resting stop, and a leg that must go is cancelled
again and again (after a token renewal, after a 429 or a 5xx) until the broker reports it final.
An exit cancels the position's legs, then closes what is left at market, until it is flat.
"""

from __future__ import annotations

import asyncio
import contextlib

from engine.brokers.base import OrderError
from engine.brokers.live_base import BrokerError, TokenExpired
from engine.brokers.routing.brackets import Bracket, Track
from kernels import layout

#: seconds between attempts to resend a failed exit or cancel
RETRY_S = 1.0
#: seconds an exit waits for its position's legs to be cancelled before it is sent anyway
CANCEL_WAIT_S = 2.0
#: exit reasons of the resting legs
LEG_REASONS = {"target": layout.R_TARGET, "stop": layout.R_STOP}
#: order types of the resting legs
LEG_TYPES = {"target": "limit", "stop": "stop"}


class LegKeeper:
    """The router's side that keeps each position's legs (a mix-in of ``Router``)."""

    def cancel_stale(self) -> list[dict]:
        """Retire the brackets of flat rows and cancel every leg of a retired bracket.

        Returns
        -------
        list of dict
            The legs being cancelled, as :meth:`Track.view` shows them.
        """
        for i, bracket in enumerate(self.current):
            if bracket is not None and bracket.phase != "entering" and not self.held(i)[1]:
                self._retire(i)
        stale = []
        for bracket in list(self.brackets.values()):
            if bracket is self.current[bracket.i]:
                continue
            for leg in bracket.legs.values():
                if not leg.final:
                    stale.append({**leg.view(), "symbol": self.state.symbols[leg.i]})
                    self.cancel_later(leg)
        return stale

    async def _exit(self, bracket: Bracket) -> None:
        """Close ``bracket``'s position: cancel its legs, then sell (buy) at market, until flat."""
        if bracket.closing:
            return  # one loop per position closes it
        bracket.closing = True
        try:
            await self._close(bracket)
        finally:
            bracket.closing = False

    async def _close(self, bracket: Bracket) -> None:
        i = bracket.i
        while self.current[i] is bracket:
            side, qty = self.held(i)
            if side == layout.FLAT:
                break
            track = bracket.exit
            if track is None or track.final:
                await self._pause()
                side, qty = self.held(i)
                if side == layout.FLAT or self.current[i] is not bracket:
                    break
                reason = track.reason if track is not None else layout.R_MANUAL
                tag = self.new_tag()
                bracket.exit = track = self.track(tag, "exit", i, -side, qty, reason, bracket.key)
            legs = list(bracket.legs.values())
            if bracket.entry is not None and not bracket.entry.final:
                legs.append(bracket.entry)  # what it has not filled yet is not wanted
            for leg in legs:
                self.cancel_later(leg)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_WAIT_S):
                    for leg in legs:
                        await leg.settled.wait()
            side, qty = self.held(i)
            if track.order_id is None and side == layout.FLAT:
                # a leg filled first: nothing left to close
                self._finish(track, "dropped", "the position closed before the exit left")
                break
            if track.order_id is None:  # else it is at the broker already (a restart)
                track.qty, track.side = qty, -side
                await self._send(track)
            await track.settled.wait()
        if self.current[i] is bracket and self.held(i)[0] == layout.FLAT:
            self._retire(i)
        self.refresh(i)

    def resume_exits(self) -> None:
        """Carry on the exits that were on their way when OTrade stopped (after a restart)."""
        for bracket in self.current:
            if bracket is not None and bracket.phase == "exiting":
                self.spawn(self._exit(bracket))

    async def _pause(self) -> None:
        await asyncio.sleep(RETRY_S)
        await self._renewed.wait()

    def cancel_later(self, track: Track, force: bool = False) -> None:
        """Have ``track`` cancelled, retrying until the broker reports it final."""
        if track.final or (track.cancelling and not force):
            return
        track.cancelling = True
        self.refresh(track.i)
        if track.order_id is not None:  # else _placed cancels it, or the guard drops it
            self.spawn(self._cancel(track))

    async def _cancel(self, track: Track) -> None:
        alerted = False
        while not track.final:
            try:
                order = await self.adapter.cancel(track.order_id or "")
            except OrderError:
                return  # not open any more: its final state is on the update stream
            except TokenExpired:
                await self._pause()  # a second, then until the token is renewed
                continue
            except BrokerError as error:
                if not alerted:
                    self.alert("broker_error", f"cancel {track.role} {track.tag}: {error.message}")
                    alerted = True
                await asyncio.sleep(RETRY_S)
                continue
            self.on_order(order)
            if not track.final:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RETRY_S):
                        await track.settled.wait()

    async def protect(self, i: int) -> None:
        """Place the missing stop and target of row ``i``'s position at its bracket levels."""
        book, bracket = self.state.book, self.current[i]
        side, qty = self.held(i)
        if bracket is None or bracket.phase != "open" or side == layout.FLAT:
            return
        if book[i, layout.I_STOP_KIND] == layout.R_NONE:
            return
        tick = book[i, layout.I_TICK_SIZE]
        levels = {"target": book[i, layout.I_TARGET], "stop": book[i, layout.I_STOP]}
        await self.fit(i)
        side, qty = self.held(i)
        if self.current[i] is not bracket or bracket.phase != "open" or side == layout.FLAT:
            return
        sends = []
        for role in ("stop", "target"):
            leg = bracket.legs.get(role)
            if (leg is not None and not leg.cancelling) or levels[role] <= 0:
                continue
            price = float(round(levels[role]) * tick)
            leg = self.track(
                self.new_tag(), role, i, -side, qty, LEG_REASONS[role], bracket.key,
                LEG_TYPES[role], price,
            )  # fmt: skip
            bracket.legs[role] = leg
            sends.append(self._send(leg))
        self.refresh(i)
        await asyncio.gather(*sends)

    async def fit(self, i: int) -> None:
        """Make what row ``i``'s legs have still to fill the position's size (after a partial
        fill of one of them, an adopt): a modify of the quantity, else a fresh leg."""
        bracket = self.current[i]
        if bracket is None or i in self._fitting:
            return
        self._fitting.add(i)
        try:
            for role, leg in list(bracket.legs.items()):
                side, qty = self.held(i)
                if leg.final or leg.cancelling or (leg.open_qty, leg.side) == (qty, -side):
                    continue
                if leg.order_id is not None and leg.side == -side and qty:
                    try:
                        await self.adapter.modify(leg.order_id, qty=leg.filled + qty)
                    except OrderError:
                        continue  # it finished meanwhile: the update stream says how
                    except BrokerError as error:
                        self.alert("broker_error", f"resize {leg.tag}: {error.message}")
                    else:
                        leg.qty = leg.filled + qty
                        self.journal.line("order", "modified", tag=leg.tag, qty=leg.qty)
                        continue
                # the wrong side, not placed yet, or not to be changed: replace it
                self.cancel_later(leg)
                if bracket.legs.get(role) is leg:
                    del bracket.legs[role]
        finally:
            self._fitting.discard(i)
            self.refresh(i)

    async def _move_stop(self, i: int) -> None:
        self._moving.add(i)
        try:
            sent = None
            while (stop := self.wanted_stop.get(i)) != sent:
                bracket = self.current[i]
                leg = bracket.legs.get("stop") if bracket is not None else None
                if leg is None or not leg.resting or leg.order_id is None:
                    return
                try:
                    order = await self.adapter.modify(leg.order_id, stop_price=stop)
                except OrderError:
                    return  # filled or gone meanwhile: the update stream says which
                except TokenExpired:
                    await self._pause()
                    continue
                except BrokerError as error:
                    self.alert("broker_error", f"move stop {leg.tag}: {error.message}")
                    if 400 <= error.status < 500:
                        # refused: the new stop is through the price; close as the stop would
                        self.close_position(
                            i, int(self.state.book[i, layout.I_STOP_KIND]), error.message
                        )
                    return
                sent = leg.price = stop
                self.journal.line("order", "modified", tag=leg.tag, stop_price=stop)
                self.on_order(order)
        finally:
            self._moving.discard(i)

    def close_position(self, i: int, reason: int, message: str) -> None:
        """Close row ``i``'s position at market at once with exit ``reason``, saying why."""
        symbol = self.state.symbols[i]
        self.journal.line("broker", "close", symbol=symbol, reason=layout.EXIT_REASONS[reason],
                          message=message)  # fmt: skip
        self.publish({"type": "alert", "code": "close", "message": f"{symbol}: {message}"})
        self.refresh(i)  # the pending mark of a retired bracket's exit must not hold this one
        self.engine.close(i, reason)
