"""Live brackets through a real ``run.py`` against the fake Kite: one test per way a position was
once left without its stop (issue 9), each from the broker's side of the story."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.fakes.kite import FakeKite
from tests.kite_live import CROSS_UP, INFY, open_long, placed, start
from tests.live import LiveEngine


@pytest.fixture
def fake():
    with FakeKite([{**INFY, "last_price": 100.0}]) as kite:
        yield kite


def leg_ids(live: LiveEngine) -> dict[str, str]:
    """Return the order ids of the legs the journal shows placed, by role (the latest wins)."""
    return {
        line["role"]: line["order_id"]
        for line in live.lines()
        if line["type"] == "order" and line["action"] in ("placed", "adopted")
        if line["role"] in ("stop", "target")
    }


def wait_legs(live: LiveEngine) -> dict[str, str]:
    return wait_until(lambda: (ids := leg_ids(live)) and len(ids) == 2 and ids, 10)


def exits(live: LiveEngine) -> list[tuple[str, float]]:
    return [
        (line["reason"], line["price"])
        for line in live.lines()
        if line["type"] == "fill" and line["action"] == "exit"
    ]


def flat_at_kite(fake: FakeKite) -> bool:
    return all(row["quantity"] == 0 for row in fake.positions())


def kill(live: LiveEngine) -> None:
    live.process.kill()
    live.process.wait(10)


def test_after_a_restart_a_fill_of_an_adopted_leg_is_booked_and_cancels_its_sibling(
    tmp_path, fake
) -> None:
    live = start(tmp_path, fake)
    open_long(live, fake)
    legs = wait_legs(live)
    kill(live)

    live = start(tmp_path, fake)
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        fake.push_ticks("INFY", [101.5, 102.0])  # the adopted target fills
        wait_until(lambda: live.http.get("/api/positions").json() == [], 10)
        wait_until(lambda: fake.order(legs["stop"])["status"] == "CANCELLED", 10)
        assert exits(live) == [("target", pytest.approx(102.0))]
        assert live.status()["account"]["realized"] == pytest.approx(1.0)
        assert flat_at_kite(fake) and len(placed(fake)) == 3
    finally:
        assert live.stop() == 0


def test_a_cancel_refused_with_403_is_sent_again_once_the_token_is_renewed(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        open_long(live, fake)
        legs = wait_legs(live)
        fake.expire_token()
        fake.push_ticks("INFY", [100.4])  # the stop fills at Kite, its message on the ticker
        wait_until(lambda: live.http.get("/api/positions").json() == [], 10)

        def cancels() -> list[int]:
            path = f"/orders/regular/{legs['target']}"
            return [
                r["status"] for r in fake.orders if r["method"] == "DELETE" and r["path"] == path
            ]

        wait_until(lambda: 403 in cancels(), 10)
        assert fake.order(legs["target"])["status"] == "OPEN"
        (tmp_path / "kite_token").write_text("renewed-token")
        fake.set_token("renewed-token")
        wait_until(lambda: fake.order(legs["target"])["status"] == "CANCELLED", 15)
        assert cancels()[0] == 403 and cancels()[-1] == 200
        assert exits(live) == [("stop", pytest.approx(100.4))]
    finally:
        assert live.stop() == 0


def test_a_leftover_target_that_fills_anyway_is_closed_at_once(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        open_long(live, fake)
        legs = wait_legs(live)
        for _ in range(30):  # the target cannot be cancelled: Kite answers 503 to every try
            fake.fail_next("DELETE", 503)
        fake.push_ticks("INFY", [100.4])  # the stop fills
        wait_until(lambda: live.http.get("/api/positions").json() == [], 10)
        wait_until(lambda: any(r["status"] == 503 for r in fake.orders), 10)
        fake.set_ltp("INFY", 102.0)  # ... and then the leftover target sells one
        assert fake.order(legs["target"])["status"] == "COMPLETE"

        def closed_by_market_buy() -> bool:
            buys = [r for r in placed(fake, "MARKET") if r["form"]["transaction_type"] == "BUY"]
            return len(buys) == 2 and flat_at_kite(fake)

        wait_until(closed_by_market_buy, 10)
        wait_until(lambda: [r for r, _ in exits(live)] == ["stop", "orphan"], 10)
        assert live.http.get("/api/positions").json() == []
        assert [line for line in live.lines() if line["action"] == "orphan_fill"]
    finally:
        assert live.stop() == 0


def test_a_rejected_stop_leg_closes_the_position_at_market_at_once(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        message = "Trigger price for stoploss sell orders should be lower than LTP."
        fake.reject_next_of("SL-M", message)
        fake.push_ticks("INFY", CROSS_UP)
        wait_until(lambda: len(placed(fake, "MARKET")) == 2 and flat_at_kite(fake), 10)
        exit_order = placed(fake, "MARKET")[1]
        assert exit_order["form"]["transaction_type"] == "SELL"
        stops = [r for r in fake.orders if r["form"].get("order_type") == "SL-M"]
        assert [r["status"] for r in stops] == [400], "the refused stop is not sent again"
        wait_until(lambda: live.http.get("/api/positions").json() == [], 10)
        assert [reason for reason, _ in exits(live)] == ["stop"]
        [close] = [line for line in live.lines() if line["action"] == "close"]
        assert message in close["message"] and close["reason"] == "stop"
    finally:
        assert live.stop() == 0


def test_legs_queued_behind_the_rate_limit_are_dropped_once_their_position_closed(
    tmp_path, fake
) -> None:
    live = start(tmp_path, fake)
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        # both legs meet a 429 that holds every order for 2 s
        fake.throttle_next_of("SL-M", 2.0)
        fake.throttle_next_of("LIMIT", 2.0)
        fake.push_ticks("INFY", CROSS_UP)
        wait_until(lambda: len([r for r in fake.orders if r["status"] == 429]) == 2, 10)
        fake.push_ticks("INFY", [100.4])  # through the stop, none resting: exit at market
        wait_until(lambda: len(placed(fake, "MARKET")) == 2 and flat_at_kite(fake), 10)
        wait_until(lambda: live.http.get("/api/positions").json() == [], 10)
        assert placed(fake, "SL-M") == [] and placed(fake, "LIMIT") == [], "never sent"

        fake.push_ticks("INFY", [100.4, 101.0])  # crosses up again: the next position
        wait_until(lambda: len(placed(fake)) == 5, 10)
        assert [r["form"]["quantity"] for r in placed(fake, "SL-M")] == ["1"]
        dropped = [line for line in live.lines() if line["action"] == "dropped"]
        assert sorted(line["role"] for line in dropped) == ["stop", "target"]
        entries = [line for line in live.lines() if line.get("role") == "entry"]
        legs = [line for line in live.lines() if line["action"] == "placed" and "L" in line["tag"]]
        assert {line["position"] for line in legs} == {entries[-1]["tag"]}
        assert not {line["tag"] for line in legs} & {line["tag"] for line in dropped}
    finally:
        assert live.stop() == 0


def test_a_stop_filled_while_otrade_was_down_is_booked_at_its_price(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    open_long(live, fake)
    legs = wait_legs(live)
    kill(live)
    fake.push_ticks("INFY", [100.4])  # the resting stop fills while OTrade is down

    live = start(tmp_path, fake)
    try:
        reconcile = [line for line in live.lines() if line["action"] == "reconcile"][-1]
        assert reconcile["clean"] and reconcile["mismatched"] == []
        assert reconcile["booked"]["trades"] == 1
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        assert live.status()["halt"] is None
        assert live.http.get("/api/positions").json() == []
        [trade] = live.http.get("/api/trades").json()
        assert (trade["exit_reason"], trade["exit_price"]) == ("stop", pytest.approx(100.4))
        kite_pnl = sum(row["pnl"] for row in fake.positions())
        assert live.status()["account"]["realized"] == pytest.approx(kite_pnl) == -0.6
        wait_until(lambda: fake.order(legs["target"])["status"] == "CANCELLED", 10)
    finally:
        assert live.stop() == 0


def test_positions_show_the_resting_legs_and_say_when_no_stop_rests(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        fake.throttle_next_of("SL-M", 3.0)  # the stop is held back 3 s by a 429
        fake.push_ticks("INFY", CROSS_UP)

        def protection() -> str | None:
            held = live.http.get("/api/positions").json()
            return held[0]["protection"] if held else None

        wait_until(lambda: protection() == "unprotected", 10)
        # past the grace the watchdog says so in the journal and on the page
        wait_until(lambda: any(line["action"] == "unprotected" for line in live.lines()), 10)
        wait_until(lambda: protection() == "protected", 10)
        [position] = live.http.get("/api/positions").json()
        legs = {leg["role"]: leg for leg in position["legs"]}
        assert legs["stop"]["status"] == legs["target"]["status"] == "working"
        assert legs["stop"]["stop_price"] == pytest.approx(100.5)
        assert legs["target"]["price"] == pytest.approx(102.0)
        assert {leg["order_id"] for leg in legs.values()} == set(leg_ids(live).values())
    finally:
        assert live.stop() == 0


def test_an_entry_still_filling_after_the_grace_is_cut_to_what_filled_and_protected(
    tmp_path, fake
) -> None:
    live = start(tmp_path, fake, strategy={"quantity": 2})
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        fake.set_fill_size("INFY", 1)  # one unit per price: the entry fills 1 of 2, then waits
        fake.push_ticks("INFY", CROSS_UP)
        [entry] = wait_until(lambda: placed(fake, "MARKET"), 10)
        wait_until(lambda: live.http.get("/api/positions").json(), 10)
        assert live.http.get("/api/positions").json()[0]["protection"] == "entering"
        # the watchdog cancels the rest of the entry and protects the unit that filled
        wait_until(lambda: any(r["method"] == "DELETE" for r in fake.orders), 10)
        wait_until(lambda: placed(fake, "SL-M"), 10)
        assert [r["form"]["quantity"] for r in placed(fake, "SL-M")] == ["1"]
        wait_until(lambda: live.http.get("/api/positions").json()[0]["protection"] == "protected")
        [position] = live.http.get("/api/positions").json()
        assert position["qty"] == 1 and entry["form"]["quantity"] == "2"
    finally:
        assert live.stop() == 0
