"""SIGKILL at seeded random moments of live sessions, each followed by a restart that must lose,
repeat and invent nothing (issue 10, fault-injection suite).

The paper session trades a ws feed of two instruments and is killed after a random number of
frames, wherever its loop then is (mid-batch, mid-journal-write). The Kite session trades
against the fake Kite, which lives in the test process and so keeps its order book, fills and
positions across the engine's deaths; it is killed from inside the fake at the moments that
matter: an entry or a leg in flight at the broker, a fill booked at the broker before its
message reached OTrade, an OCO cancel on its way, a poll, and during the start-up
reconciliation; while it is down the resting legs may fill.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter

import orjson
import pytest

from tests.conftest import wait_until
from tests.fakes.kite import FakeKite
from tests.fault_harness import (
    BANKNIFTY,
    NIFTY,
    FeedServer,
    Killable,
    broker_net,
    journal_lines,
    journal_net,
    kite_orders,
    settled,
)
from tests.kite_live import INFY, start

SEED = 20_251_121
PAPER_KILLS = 8
KITE_ROUNDS = 12


# -- paper ---------------------------------------------------------------------------------------


def paper_problems(live: Killable) -> list[str]:
    lines, problems = [], []
    for raw in live.journal.read_bytes().splitlines():
        try:
            lines.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            problems.append(f"a journal line does not parse: {raw[:80]!r}")
    journal = {}
    for line in lines:
        if line["type"] == "fill" and line["action"] == "entry":
            levels = (line["avg_price"], line["target"], line["stop"])
            journal[line["symbol"]] = (line["side"], line["qty"], *(round(x, 2) for x in levels))
        elif line["type"] == "fill":
            journal.pop(line["symbol"], None)
    shown = {}
    for p in live.http.get("/api/positions").json():
        levels = (p["entry_price"], p["target"], p["stop"])
        side = "buy" if p["side"] == "long" else "sell"
        shown[p["symbol"]] = (side, p["qty"], *(round(x, 2) for x in levels))
    if shown != journal:
        problems.append(f"positions: engine {shown}, journal {journal}")
    orders = Counter(line["tag"] for line in lines if line["type"] == "order")
    fills = Counter(line["tag"] for line in lines if line["type"] == "fill")
    if orders != fills or max(orders.values(), default=1) != 1:
        problems.append(f"orders and fills by tag differ: {orders - fills} {fills - orders}")
    realized = sum(line.get("pnl", 0.0) for line in lines if line["type"] == "fill")
    if live.status()["account"]["realized"] != pytest.approx(realized):
        problems.append(f"realized {live.status()['account']['realized']} != journal {realized}")
    return problems


def test_a_paper_session_killed_at_random_frames_restarts_with_what_its_journal_holds(
    tmp_path,
) -> None:
    rng = random.Random(SEED)
    sections = {
        "instruments": [NIFTY, BANKNIFTY],
        "bracket": {"target_ticks": 6, "stop_ticks": 6},
    }
    with FeedServer() as feed:
        sections["feed"] = {"name": "ws", "url": feed.url, "stale_after_s": 5}
        for _ in range(PAPER_KILLS):
            live = Killable(tmp_path, **sections)
            wait_until(lambda: feed.clients == 1, 10)
            # nothing has moved since the restart: what it shows is what the journal restored
            assert paper_problems(live) == []
            feed.stream(rng, rng.randint(100, 1200), then=live.process.kill)
            wait_until(lambda: live.process.poll() is not None, 10)  # noqa: B023
            live.kill()
        live = Killable(tmp_path, **sections)
        try:
            assert paper_problems(live) == []
            lines = journal_lines(live)
            assert sum(line["action"] == "start" for line in lines) == PAPER_KILLS + 1
            assert sum(line["type"] == "fill" for line in lines) >= 2 * PAPER_KILLS, "it traded"
            repaired = [line for line in lines if line["action"] == "start" and "repaired" in line]
            # a kill between a line's bytes is mended at the next start, never appended to
            assert all(line["repaired"] for line in repaired)
        finally:
            assert live.stop() == 0


# -- Kite ------------------------------------------------------------------------------------------


@pytest.fixture
def fake():
    with FakeKite([{**INFY, "last_price": 100.0}]) as kite:
        yield kite


def ltp(fake: FakeKite) -> float:
    return fake._call(lambda: fake.book.ltp["INFY"])


def cross(fake: FakeKite, rng: random.Random) -> None:
    # flat, flat, flat, then a whole rupee up or down: the EMAs cross on the last tick
    price = round(ltp(fake), 2)
    fake.push_ticks("INFY", [price] * 3 + [price + rng.choice((-1.0, 1.0))])


def through_a_leg(fake: FakeKite, rng: random.Random) -> None:
    legs = [o for o in kite_orders(fake) if o["status"] in ("OPEN", "TRIGGER PENDING")]
    if not legs:  # killed before its legs were placed: the price just moves
        fake.push_ticks("INFY", [round(ltp(fake) + rng.choice((-0.2, 0.2)), 2)])
        return
    leg = rng.choice(legs)
    level = leg["trigger_price"] if leg["order_type"] == "SL-M" else leg["price"]
    beyond = {("SL-M", "SELL"): -0.1, ("SL-M", "BUY"): 0.1, ("LIMIT", "SELL"): 0.1}
    step = beyond.get((leg["order_type"], leg["transaction_type"]), -0.1)  # a LIMIT BUY: below
    fake.push_ticks("INFY", [round(level + step, 2)])


def killer(fake: FakeKite, moment: str, process, k: int):
    """Return the request hook and the order-message hook that kill ``process`` at ``moment``."""
    count = itertools.count(1)

    def on_request(entry: dict) -> None:
        kind = entry["form"].get("order_type")
        if (
            (moment == "entry_sent" and entry["method"] == "POST" and kind == "MARKET")
            or (moment == "leg_sent" and entry["method"] == "POST" and kind in ("LIMIT", "SL-M"))
            or (moment == "cancel_sent" and entry["method"] == "DELETE")
            or (moment in ("poll", "start") and next(count) == k)
        ):
            process.kill()

    def on_message(message: dict) -> None:
        data = message["data"]
        kind, filled = data["order_type"], data["status"] == "COMPLETE"
        if (moment == "entry_filled" and filled and kind == "MARKET") or (
            moment == "leg_filled" and filled and kind in ("LIMIT", "SL-M")
        ):
            process.kill()

    return on_request, on_message


def arm(fake: FakeKite, moment: str, process, k: int = 0) -> None:
    on_request, on_message = killer(fake, moment, process, k)
    fake.on_request(on_request)
    fake.on_order_message(on_message)


def disarm(fake: FakeKite) -> None:
    fake.on_request(None)
    fake.on_order_message(None)


def restart(tmp_path, fake: FakeKite, rng: random.Random, kills: Counter) -> Killable:
    """Start again; with some luck the start itself is killed first, mid-reconciliation."""
    if rng.random() < 0.35:
        k = rng.randint(2, 6)  # profile, quote, then the order book, positions, open orders...
        live = start(tmp_path, fake, engine=Killable, on_spawn=lambda p: arm(fake, "start", p, k))
        disarm(fake)  # it answers once reconciled, or it died on the way
        if not live.alive:
            kills["start"] += 1
            live.kill()
        else:
            live.stop()  # the start got through before its k-th request: no kill this time
    live = start(tmp_path, fake, engine=Killable)
    wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
    return live


def test_a_kite_session_killed_at_every_moment_that_matters_loses_and_repeats_nothing(
    tmp_path, fake
) -> None:
    rng = random.Random(SEED)
    kills: Counter[str] = Counter()
    live = start(tmp_path, fake, engine=Killable)
    wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
    try:
        for _ in range(KITE_ROUNDS):
            if broker_net(fake):
                moment = rng.choice(("leg_filled", "cancel_sent", "poll"))
            else:
                moment = rng.choice(("entry_sent", "entry_filled", "leg_sent"))
            arm(fake, moment, live.process, k=rng.randint(1, 3))
            if moment == "poll":
                pass  # the poller asks for the order book every 0.5 s while a leg rests
            elif broker_net(fake):
                through_a_leg(fake, rng)
            else:
                cross(fake, rng)
            wait_until(lambda: live.process.poll() is not None, 10)  # noqa: B023
            disarm(fake)
            kills[moment] += 1
            live.kill()
            if broker_net(fake) and rng.random() < 0.5:
                through_a_leg(fake, rng)  # a resting leg fills while OTrade is down
            live = restart(tmp_path, fake, rng, kills)
            settled(live, fake)
            reconcile = [line for line in live.lines() if line["action"] == "reconcile"][-1]
            assert reconcile["clean"], reconcile
        assert sum(kills.values()) >= KITE_ROUNDS
        assert kills["start"] and kills["entry_sent"] and kills["leg_filled"], kills
        assert sum(1 for line in live.lines() if line["type"] == "fill") >= KITE_ROUNDS // 2
    finally:
        disarm(fake)
        if live.alive:
            assert live.stop() == 0


def test_a_stop_that_never_reached_kite_before_the_kill_is_placed_anew_not_closed_at_market(
    tmp_path, fake
) -> None:
    live = start(tmp_path, fake, engine=Killable)
    wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
    fake.throttle_next_of("SL-M", 5.0)  # the legs wait out a 429 ...
    fake.throttle_next_of("LIMIT", 5.0)
    arm(fake, "leg_sent", live.process)  # ... and OTrade dies meanwhile
    cross(fake, random.Random(SEED))
    wait_until(lambda: not live.alive, 10)
    disarm(fake)
    live.kill()
    assert [o["order_type"] for o in kite_orders(fake)] == ["MARKET"]

    live = start(tmp_path, fake, engine=Killable)
    try:
        settled(live, fake)
        assert broker_net(fake) == {"INFY": 1} == journal_net(journal_lines(live))
        assert [o["order_type"] for o in kite_orders(fake)] == ["MARKET", "SL-M", "LIMIT"]
        assert not [line for line in live.lines() if line["action"] == "close"]
    finally:
        assert live.stop() == 0
