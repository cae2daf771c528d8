"""Issue 9: whatever the broker, the network or a restart does, a real position keeps its stop.

A hypothesis state machine drives OTrade's live stack (engine, journal, router, adapter; see
:mod:`tests.brackets_harness`) against each broker's fake through random interleavings of:
price moves (a tick, a jump, through the target, through the stop, and bursts of them with no
pause for the router), partial fills of resting legs, a rejection of the next placement (any,
or the next stop or target: a protective leg), token expiry and renewal, 429s, a 5xx on a
place or a cancel (carried out or not), a drop of the broker's streams, a repeated or stale
order update, and a SIGKILL and restart (with or without a price move while OTrade is down).
The fakes also refuse a stop whose trigger the price has already reached, as Kite's risk
checks do.

After every step the system gets a bounded grace to settle, then the invariants must hold,
read from the broker's own book, not from the engine's claims:

- while the broker holds a position, exactly one stop of OTrade's rests to close it (closing
  side, its quantity) or an exit market order is in flight; at most one target, no larger;
- nothing of OTrade's rests for a flat instrument;
- the engine's position and realized P&L are the broker's (P&L from the broker's fills);
- ``router.violations()`` (where the router has it) is empty, and no entry or exit intent of
  the engine still awaits the broker (``I_PENDING``).

The grace is 3 s after a step, 5 s after a token renewal, plus the back-off 429s impose.
While an expired token is not yet renewed nothing can be fixed, so nothing is checked.

Beside the machine: a plain bracket trade through the same harness (the harness sees what it
must), and the step sequences the machine found breaking an invariant, replayed as they were.

Generation is derandomized: every run draws the same steps as long
as the outcomes are the same (a race the timing decides can fail one run and not the next,
and what hypothesis draws after a failure differs). Examples, steps and shrinking are set by
``OTRADE_BRACKET_EXAMPLES``, ``OTRADE_BRACKET_STEPS`` and ``OTRADE_BRACKET_SHRINK`` (off by
default: a failure prints its whole step sequence at once); ``OTRADE_BRACKET_TRACE`` prints
each step and how long it took to settle; a failed check looks on for
``OTRADE_BRACKET_LATE_S`` (3) seconds more to say whether it recovered late or never.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from engine.brokers.live_base import BACKOFF_429_S
from tests.bracket_drivers import DRIVERS, BrokerDriver
from tests.brackets_harness import (
    BRACKET,
    STOP_KINDS,
    STRATEGY,
    LoopThread,
    Session,
    broker_violations,
    engine_violations,
)
from tests.conftest import wait_until

#: seconds the system gets to settle after a step, and after a token renewal or an expiry the
#: adapter renews by itself (the router tries to renew once a second, then retries what
#: failed a second later); a step after 429s were armed also gets their back-off
SETTLE_S, RENEW_S = 3.0, 5.0
#: seconds between two looks at the broker and the engine while settling
LOOK_S = 0.02
#: seconds a failed check goes on looking, to tell a late recovery from none (failures only)
LATE_S = float(os.environ.get("OTRADE_BRACKET_LATE_S", "3"))
#: price moves in ticks; ``target`` and ``stop`` go one tick through the resting leg's price
STEPS = {"up": 1, "down": -1, "jump_up": 3, "jump_down": -3}
MOVES = (*STEPS, "target", "stop")
MOVE = st.sampled_from(MOVES)
#: the market move right after a fault (none: the fault waits for a later step)
THEN = st.sampled_from((*MOVES, None))
#: the lowest price the walk goes to, in ticks
FLOOR_TICKS = 100

#: print each step's settling time and the broker's book (to tune the settings)
TRACE = bool(os.environ.get("OTRADE_BRACKET_TRACE"))
EXAMPLES = int(os.environ.get("OTRADE_BRACKET_EXAMPLES", "8"))
STEP_COUNT = int(os.environ.get("OTRADE_BRACKET_STEPS", "16"))
PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
if os.environ.get("OTRADE_BRACKET_SHRINK"):
    PHASES.append(Phase.shrink)
SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEP_COUNT,
    deadline=None,
    derandomize=True,
    database=None,
    phases=PHASES,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
    report_multiple_bugs=False,
)


class BracketMachine(RuleBasedStateMachine):
    """OTrade trading one instrument at one broker's fake; see the module's docstring."""

    #: set per broker by the test
    broker = ""
    workdir: Path
    monkeypatch: pytest.MonkeyPatch

    def __init__(self) -> None:
        super().__init__()
        self.loop = LoopThread()
        directory = Path(tempfile.mkdtemp(dir=self.workdir))
        self.driver: BrokerDriver = DRIVERS[self.broker](directory, self.monkeypatch)
        self.driver.__enter__()
        self.session = Session(self.driver.config())
        self.at = self.driver.ticks(self.driver.start_price)
        self.expired = False
        self.started = False
        #: the last thing that ran was a passing check
        self.clean = False
        self.grace = SETTLE_S
        #: extra seconds of grace for the next checks: the back-off of armed 429s
        self.backoff: list[float] = []
        #: the broker's book and the engine's claims at the last look
        self._seen: tuple = ()

    # -- steps ---------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        """Start OTrade at the broker and warm its EMAs up at the opening price."""
        self.loop.run(self.session.start())
        self.started = True
        for _ in range(3):  # warm the EMAs up: the next move either way is a signal
            self._tick(self.at)

    @rule(move=MOVE)
    def change_price(self, move: str) -> None:
        """Move the price (at the broker, then one tick into the engine)."""
        self._begin("change_price", move=move)
        self._move(move)

    @rule(moves=st.lists(MOVE, min_size=2, max_size=4), gap_ms=st.sampled_from((0, 5, 20)))
    def burst(self, moves: list[str], gap_ms: int) -> None:
        """Move the price several times ``gap_ms`` apart, not waiting for the router."""
        self._begin("burst", moves=moves, gap_ms=gap_ms)
        for k, move in enumerate(moves):
            if k and gap_ms:
                time.sleep(gap_ms / 1000)  # the market's pace, not a wait for the router
            self._move(move)

    @rule(role=st.sampled_from(("target", "stop")), units=st.integers(1, 2), then=THEN)
    def partial_fill(self, role: str, units: int, then: str | None) -> None:
        """Fill ``units`` of OTrade's resting target or stop, fewer than it has open."""
        self._begin("partial_fill", role=role, units=units, then=then)
        kinds = ("limit",) if role == "target" else STOP_KINDS
        for order in self.driver.truth().resting:
            if order.ours and order.kind in kinds and order.open_qty > units:
                self.driver.fill_part(order, units)
                break
        self._move(then)

    @rule(role=st.sampled_from(("stop", "target", "any")), then=THEN)
    def reject_next(self, role: str, then: str | None) -> None:
        """Have the broker reject its next placement (of a stop, of a target, of any order)."""
        self._begin("reject_next", role=role, then=then)
        self.driver.reject_next(role)
        self._move(then)

    @precondition(lambda self: not self.expired)
    @rule(announced=st.booleans(), then=THEN)
    def expire_token(self, announced: bool, then: str | None) -> None:
        """Expire the session token at the broker, announced on its streams or not (ProjectX's
        adapter logs in again by itself)."""
        self._begin("expire_token", announced=announced, then=then)
        self.driver.expire_token(announced)
        if self.driver.manual_renewal:
            self.expired = True
        else:
            self.grace = RENEW_S
        self._move(then)

    @precondition(lambda self: self.expired)
    @rule()
    def renew_token(self) -> None:
        """Put a new token in place, as the operator does after ``login``."""
        self._begin("renew_token")
        self.driver.renew_token()
        self.expired = False
        self.grace = RENEW_S

    @rule(n=st.integers(1, 3), then=THEN)
    def throttle(self, n: int, then: str | None) -> None:
        """Answer the next ``n`` order requests (ProjectX: any requests) with HTTP 429."""
        self._begin("throttle", n=n, then=then)
        self.driver.throttle(n)
        # the back-off the 429s impose, allowed in this step and the next (an armed 429 may
        # hit a later request)
        self.backoff = [BACKOFF_429_S * (2**n - 1)] * 2
        self._move(then)

    @rule(what=st.sampled_from(("place", "cancel")), acted=st.booleans(), then=THEN)
    def server_error(self, what: str, acted: bool, then: str | None) -> None:
        """Answer the next place or cancel with a 5xx, carried out first when ``acted``."""
        self._begin("server_error", what=what, acted=acted, then=then)
        self.driver.server_error(what, acted)
        self._move(then)

    @rule(then=THEN)
    def drop_stream(self, then: str | None) -> None:
        """Close the broker's streams from its side (ticker, user hub, market feed)."""
        self._begin("drop_stream", then=then)
        self.driver.drop_stream()
        self._move(then)

    @rule(back=st.integers(1, 3), then=THEN)
    def replay_update(self, back: int, then: str | None) -> None:
        """Deliver an order update again: the last one, or an older one after newer ones."""
        self._begin("replay_update", back=back, then=then)
        self.driver.replay_update(back)
        self._move(then)

    @precondition(lambda self: not self.expired)
    @rule(while_down=THEN)
    def restart(self, while_down: str | None) -> None:
        """SIGKILL OTrade and start it again on its journal, the market moving meanwhile."""
        self._begin("restart", while_down=while_down)
        self.loop.run(self.session.kill())
        if while_down is not None:  # the broker's market goes on while OTrade is down
            self.at = self._destination(while_down)
            self.driver.set_price(self.driver.price(self.at))
        self.loop.run(self.session.start())

    # -- the invariants ------------------------------------------------------------------------

    @invariant()
    def bracket_invariants_hold(self) -> None:
        """Let the system settle (a bounded grace), then check the broker's book and the
        engine against each other; skipped while an expired token awaits its renewal."""
        if not self.started or self.expired:
            return
        grace, self.grace = self.grace + (self.backoff.pop() if self.backoff else 0.0), SETTLE_S
        started = time.monotonic()
        self._settle(grace)
        if TRACE:
            truth = self.driver.truth()
            rests = ", ".join(f"{o.kind} {o.side:+d}x{o.open_qty}" for o in truth.resting)
            print(f"  settled in {time.monotonic() - started:.3f} s: {truth.net:+d} [{rests}]")
        self.driver.before_step()
        self.clean = True

    def teardown(self) -> None:
        """Renew a token left expired and check once more; stop OTrade and the fake."""
        try:
            if self.started and self.clean and self.expired:
                self.driver.renew_token()
                self.expired = False
                self._settle(RENEW_S)
        finally:
            try:
                if self.started:
                    self.loop.run(self.session.kill())
            finally:
                self.loop.close()
                self.driver.__exit__(None, None, None)

    # -- helpers -------------------------------------------------------------------------------

    def _begin(self, step: str, **args) -> None:
        self.clean = False
        if TRACE:
            print(f"{self.broker}: {step}({', '.join(f'{k}={v!r}' for k, v in args.items())})")

    def _move(self, move: str | None) -> None:
        if move is not None:
            self._tick(self._destination(move))

    def _tick(self, at: int) -> None:
        self.at = at
        price = self.driver.price(at)
        self.driver.set_price(price)
        self.loop.call(self.session.tick, price)

    def _destination(self, move: str) -> int:
        if move in STEPS:
            return max(FLOOR_TICKS, self.at + STEPS[move])
        truth = self.driver.truth()
        if truth.net == 0:
            return max(FLOOR_TICKS, self.at + (1 if move == "target" else -1))
        long = truth.net > 0
        kinds = ("limit",) if move == "target" else STOP_KINDS
        levels = [
            o.price
            for o in truth.resting
            if o.ours and o.kind in kinds and o.side == (-1 if long else 1) and o.price
        ]
        if levels:
            level = self.driver.ticks(levels[0])
        else:  # no leg rests: the bracket around the broker's average price
            entry = self.driver.ticks(truth.avg)
            away = BRACKET["target_ticks"] if move == "target" else -BRACKET["stop_ticks"]
            level = entry + (away if long else -away)
        beyond = 1 if (move == "target") == long else -1
        return max(FLOOR_TICKS, level + beyond)

    def _settle(self, grace: float) -> None:
        started = time.monotonic()
        problems = self._look_until(started + grace)
        if problems:
            seen = self._seen
            # how late: a slow recovery and a stuck one need different fixes
            late = self._look_until(time.monotonic() + LATE_S)
            after = time.monotonic() - started
            if late:
                verdict = f"still broken {after:.1f} s after the step"
            else:
                verdict = f"it all held {after:.1f} s after the step"
            raise AssertionError(self._report(problems, seen, grace, verdict))

    def _look_until(self, deadline: float) -> list:
        while True:
            truth = self.driver.truth()
            claims = self.loop.call(self.session.snapshot)
            symbol = self.driver.symbol
            problems = broker_violations(symbol, truth) + engine_violations(symbol, truth, claims)
            if not problems or time.monotonic() >= deadline:
                self._seen = truth, claims
                return problems
            time.sleep(LOOK_S)  # polling the broker and the engine until the deadline

    def _report(self, problems: list[str], seen: tuple, grace: float, verdict: str) -> str:
        truth, claims = seen
        lines = [f"{self.broker}: after {grace:g} s ({verdict}):", *(f"  {p}" for p in problems)]
        lines.append(
            f"  broker: net {truth.net:+d} @ {truth.avg:.10g}, realized {truth.realized:.10g}"
        )
        lines += [f"    rests: {o.describe()}" for o in truth.resting]
        lines.append(f"  engine: {claims['positions']}, realized {claims['realized']:.10g}")
        lines.append(f"  halt: {claims['halt']}; price {self.driver.price(self.at):.10g}")
        lines += [f"    alert {code}: {message}" for code, message in self.session.alerts]
        return "\n".join(lines)


def machine_for(broker: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> type:
    """Return the state machine class trading at ``broker``'s fake."""
    return type(
        f"Brackets_{broker}",
        (BracketMachine,),
        {"broker": broker, "workdir": workdir, "monkeypatch": monkeypatch},
    )


@pytest.mark.parametrize("broker", sorted(DRIVERS))
def test_the_harness_sees_a_plain_bracket_trade_at_the_broker(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the harness itself: an entry, its two legs, the target's fill and the stop's cancel, a
    # restart that adopts the legs, all seen at the broker and holding the invariants
    machine = machine_for(broker, tmp_path, monkeypatch)()
    driver = machine.driver
    qty, tick = STRATEGY["quantity"], driver.tick_size
    try:
        machine.start()
        machine.bracket_invariants_hold()
        machine.change_price("up")
        machine.bracket_invariants_hold()
        wait_until(lambda: len([o for o in driver.truth().resting if o.ours]) == 2)
        truth = driver.truth()
        assert truth.net == qty and truth.realized == 0.0
        legs = sorted((o.kind, o.side, o.open_qty) for o in truth.resting)
        assert legs == [("limit", -1, qty), ("stop", -1, qty)]
        machine.restart(None)
        machine.bracket_invariants_hold()
        assert sorted(o.order_id for o in driver.truth().resting) == sorted(
            o.order_id for o in truth.resting
        ), "the restart adopted both legs"
        machine.change_price("target")
        machine.bracket_invariants_hold()
        truth = driver.truth()
        assert truth.net == 0 and truth.resting == ()
        # a target limit fills at its price or better (ProjectX's fake fills at the print)
        assert truth.realized >= BRACKET["target_ticks"] * tick * qty * driver.point_value - 1e-6
    finally:
        machine.teardown()


#: step sequences the machine once found breaking an invariant, replayed as they were
KNOWN = {
    # the stop is still sized for the whole position when the price goes through it: the
    # broker flips to the other side by the target's fill
    "partial_target_fill_then_through_the_stop": [
        ("change_price", "up"),
        ("partial_fill", "target", 1, "jump_down"),
    ],
    # ProjectX: the entry's first Order/place gets a 401, the session logs in again and sends it
    # once more; that answer is lost (5xx) though the order was placed
    "unannounced_expiry_then_a_lost_answer_to_the_entry": [
        ("expire_token", False, None),
        ("server_error", "place", True, "up"),
        ("renew_token",),
    ],
}


@pytest.mark.parametrize("name", sorted(KNOWN))
@pytest.mark.parametrize("broker", sorted(DRIVERS))
def test_interleavings_found_before_still_hold_the_invariants(
    broker: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = machine_for(broker, tmp_path, monkeypatch)()
    try:
        machine.start()
        machine.bracket_invariants_hold()
        for step, *args in KNOWN[name]:
            getattr(machine, step)(*args)
            machine.bracket_invariants_hold()
    finally:
        machine.teardown()


@pytest.mark.parametrize("broker", sorted(DRIVERS))
def test_a_position_at_the_broker_is_never_left_without_its_stop(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_state_machine_as_test(machine_for(broker, tmp_path, monkeypatch), settings=SETTINGS)
