"""Broker faults against a real ``run.py`` trading the fake Kite (issue 10): a placement met by a
5xx, a timeout or a connection cut mid-answer, acted on or not; order updates repeated and out of
order; a fill update for an order OTrade never placed. Each is journaled with what the broker
said, none stops the loop, none places an order twice."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import wait_until
from tests.fakes.kite import FakeKite
from tests.fault_harness import broker_net, engine_net, journal_net, kite_orders, kite_problems
from tests.kite_live import CROSS_UP, INFY, open_long, start
from tests.live import LiveEngine

#: seconds OTrade waits for Kite's answer in these tests (the stalls below outlast it)
TIMEOUT_S = 1.0


@pytest.fixture
def fake():
    with FakeKite([{**INFY, "last_price": 100.0}]) as kite:
        yield kite


def broker_lines(live: LiveEngine) -> list[dict]:
    return [line for line in live.lines() if line["type"] == "broker"]


def fills(live: LiveEngine) -> list[dict]:
    return [line for line in live.lines() if line["type"] == "fill"]


def manual_order(fake: FakeKite, side: str, tag: str) -> str:
    """Place a market order on the account as another app would; return its order id."""
    headers = {"X-Kite-Version": "3", "Authorization": f"token {fake.api_key}:{fake.access_token}"}
    form = {
        "tradingsymbol": "INFY",
        "exchange": "NSE",
        "transaction_type": side,
        "order_type": "MARKET",
        "quantity": "1",
        "product": "MIS",
        "market_protection": "-1",
        "tag": tag,
    }
    answer = httpx.post(f"{fake.rest_url}/orders/regular", data=form, headers=headers)
    return answer.raise_for_status().json()["data"]["order_id"]


def entries_at_kite(fake: FakeKite) -> list[dict]:
    return [o for o in kite_orders(fake) if o["order_type"] == "MARKET"]


FAULTS = {
    # name: (how the next placement fails, whether Kite placed it, what the broker said)
    "503": (lambda f: f.fail_next("POST", 503), False, "Something went wrong"),
    "503 after placing": (lambda f: f.fail_next("POST", 503, act=True), True, "went wrong"),
    "timeout": (lambda f: f.stall_next(2 * TIMEOUT_S, place=False), False, "Timeout"),
    "timeout after placing": (lambda f: f.stall_next(2 * TIMEOUT_S), True, "Timeout"),
    "reset": (lambda f: f.cut_next("POST", act=False), False, "POST /orders/regular"),
    "reset after placing": (lambda f: f.cut_next("POST"), True, "POST /orders/regular"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_placement_that_fails_in_transit_is_journaled_and_never_sent_twice(
    tmp_path, fake, fault
) -> None:
    inject, at_kite, said = FAULTS[fault]
    live = start(tmp_path, fake, broker={"timeout_s": TIMEOUT_S})
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        inject(fake)
        fake.push_ticks("INFY", CROSS_UP)
        [sent] = wait_until(lambda: [r for r in fake.orders if r["method"] == "POST"], 10)
        tag = sent["form"]["tag"]

        def settled() -> bool:
            final = {"filled", "dropped", "rejected"}
            return any(line.get("tag") == tag and line["action"] in final for line in live.lines())

        wait_until(settled, 10)
        # the fault is on the journal in the broker's (or the transport's) words, also when
        # the order's fill came on the ticker before the failed answer did
        wait_until(lambda: [ln for ln in broker_lines(live) if said in ln.get("message", "")], 5)
        assert [o["tag"] for o in kite_orders(fake)].count(tag) == int(at_kite)
        assert [r["form"]["tag"] for r in fake.orders if r["form"].get("tag") == tag] == [tag]
        wait_until(lambda: not kite_problems(live, fake), 10)
        assert engine_net(live) == ({"INFY": 1} if at_kite else {})
        assert [f["qty"] for f in fills(live)] == ([1] if at_kite else [])

        # the loop trades on: out through the stop (or never in), then the next cross enters
        if at_kite:
            fake.push_ticks("INFY", [100.4])
            wait_until(lambda: engine_net(live) == {}, 10)
        fake.push_ticks("INFY", [101.4 if at_kite else 100.0])
        wait_until(lambda: engine_net(live) == ({"INFY": 1} if at_kite else {"INFY": -1}), 10)
        wait_until(lambda: not kite_problems(live, fake), 10)
        assert len(entries_at_kite(fake)) == (2 if at_kite else 1), "each entry placed once"
    finally:
        assert live.stop() == 0


def test_repeated_and_out_of_order_order_updates_book_each_fill_once(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        open_long(live, fake)
        wait_until(lambda: not kite_problems(live, fake), 10)
        sent = len(fake.orders)
        for back in (1, 1, 2, 3):  # the last update twice more, then older ones after it
            fake.resend_order_message(back)
        fake.push_ticks("INFY", [101.5, 102.0])  # the target fills: the OCO cancels the stop
        wait_until(lambda: engine_net(live) == {} and not kite_problems(live, fake), 10)
        messages = len(fake.order_messages)
        for back in range(1, messages + 1):  # every update again, newest first
            fake.resend_order_message(back)
        wait_until(lambda: len(fake.order_messages) == 2 * messages, 10)
        fake.push_ticks("INFY", [102.0])  # a tick after them: the loop has read them all
        wait_until(lambda: live.status()["ticks"] == len(CROSS_UP) + 3, 10)
        assert [(f["action"], f["qty"]) for f in fills(live)] == [("entry", 1), ("exit", 1)]
        assert len(fake.orders) == sent + 1, "only the cancel of the stop"
        assert kite_problems(live, fake) == [] and engine_net(live) == {}
    finally:
        assert live.stop() == 0


def test_a_fill_update_for_an_unknown_order_is_journaled_and_trades_nothing(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        # another OTrade's order and a manual one on the same account: both fill at once
        ids = [manual_order(fake, "BUY", "OTsomeoneelse1"), manual_order(fake, "SELL", "")]

        def journaled() -> list[str]:
            return [
                order_id
                for order_id in ids
                for line in broker_lines(live)
                if line["action"] == "unknown_order" and order_id in line["message"]
            ]

        assert wait_until(journaled, 10) == ids
        assert broker_net(fake) == {} == engine_net(live) == journal_net(live.lines())
        assert fills(live) == [] and len(fake.orders) == 2, "OTrade placed nothing"

        def rechecked_clean() -> bool:  # each unknown fill has the broker checked again
            checks = [line for line in broker_lines(live) if line["action"] == "reconcile"]
            return len(checks) >= 2 and checks[-1]["clean"] and live.status()["halt"] is None

        wait_until(rechecked_clean, 10)
        fake.push_ticks("INFY", CROSS_UP)  # the loop trades on
        wait_until(lambda: engine_net(live) == {"INFY": 1} == broker_net(fake), 10)
        wait_until(lambda: len(fake.orders) == 2 + 3, 10)  # the entry, its stop and target
    finally:
        assert live.stop() == 0


def test_an_unknown_fill_that_moves_the_broker_position_stops_entries(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        manual_order(fake, "BUY", "")  # the account is now long 1 INFY that OTrade never bought
        wait_until(lambda: live.status()["halt"] == "reconcile", 10)
        assert broker_net(fake) == {"INFY": 1} and engine_net(live) == {}
        reconciles = [line for line in broker_lines(live) if line["action"] == "reconcile"]
        assert reconciles[-1]["clean"] is False
        fake.push_ticks("INFY", [100.0, 100.0, 100.0, 100.1])  # a crossing, inside the bracket
        wait_until(lambda: live.status()["refused_entries"].get("paused"), 10)  # entries stopped
        assert len(entries_at_kite(fake)) == 1  # the manual one only
        assert live.post("/api/control/adopt").status_code == 200  # take the broker's position
        wait_until(lambda: engine_net(live) == {"INFY": 1} and live.status()["halt"] is None, 10)
    finally:
        assert live.stop() == 0
