"""Kite end to end through a real ``run.py``: ticks on the fake ticker -> signal -> order at the
fake REST server -> fill on the ticker's order messages -> position -> OCO exit; and token
expiry, 429 and restart reconciliation."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import wait_until
from tests.fakes.kite import FakeKite
from tests.kite_live import CROSS_UP, INFY, open_long, placed, start


@pytest.fixture
def fake():
    with FakeKite([{**INFY, "last_price": 100.0}]) as kite:
        yield kite


def test_a_signal_trades_through_kite_and_the_target_cancels_the_stop(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        open_long(live, fake)
        entry = placed(fake, "MARKET")[0]
        intent = next(line for line in live.lines() if line["type"] == "order")
        assert entry["form"] == {
            "tradingsymbol": "INFY",
            "exchange": "NSE",
            "transaction_type": "BUY",
            "order_type": "MARKET",
            "quantity": "1",
            "product": "MIS",
            "validity": "DAY",
            "tag": intent["tag"],
            "market_protection": "-1",
        }
        assert entry["headers"]["x-kite-version"] == "3"
        assert entry["headers"]["authorization"] == f"token {fake.api_key}:{fake.access_token}"
        [position] = live.http.get("/api/positions").json()
        assert (position["symbol"], position["side"], position["qty"]) == ("INFY", "long", 1)
        assert position["entry_price"] == pytest.approx(101.0)
        [target] = placed(fake, "LIMIT")
        [stop] = placed(fake, "SL-M")
        assert target["form"]["transaction_type"] == stop["form"]["transaction_type"] == "SELL"
        assert float(target["form"]["price"]) == pytest.approx(102.0)
        assert float(stop["form"]["trigger_price"]) == pytest.approx(100.5)

        fake.push_ticks("INFY", [101.5, 102.0])
        wait_until(lambda: live.http.get("/api/positions").json() == [], 10)
        wait_until(lambda: any(r["method"] == "DELETE" for r in fake.orders), 10)
        fills = [line for line in live.lines() if line["type"] == "fill"]
        assert [(f["action"], f["side"], f.get("reason")) for f in fills] == [
            ("entry", "buy", None),
            ("exit", "sell", "target"),
        ]
        assert fills[0]["tag"] == intent["tag"] and fills[1]["price"] == pytest.approx(102.0)
        assert fills[1]["pnl"] == pytest.approx(1.0)
        assert len(placed(fake)) == 3, "nothing is placed twice"
    finally:
        assert live.stop() == 0


def test_a_trailing_stop_moves_the_resting_stop_at_kite(tmp_path, fake) -> None:
    live = start(tmp_path, fake, {"target_ticks": 40, "stop_ticks": 10, "trail_ticks": 5})
    try:
        open_long(live, fake)
        [stop_id] = wait_until(
            lambda: [
                line["order_id"]
                for line in live.lines()
                if line["action"] == "placed" and line.get("role") == "stop"
            ],
            5,
        )
        fake.push_ticks("INFY", [101.6])
        wait_until(lambda: any(r["method"] == "PUT" for r in fake.orders), 10)
        [move] = [r for r in fake.orders if r["method"] == "PUT"]
        assert move["path"] == f"/orders/regular/{stop_id}"
        assert float(move["form"]["trigger_price"]) == pytest.approx(101.35)
        assert live.http.get("/api/positions").json()[0]["stop"] == pytest.approx(101.35)
    finally:
        assert live.stop() == 0


def test_token_expiry_pauses_entries_and_retries_the_exit_once_renewed(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        open_long(live, fake)
        fake.expire_token()
        assert live.post("/api/control/flatten").status_code == 200
        wait_until(lambda: live.status()["halt"] == "broker_token", 10)
        assert live.status()["broker"]["token"] == "expired"
        assert live.http.get("/api/positions").json(), "nothing closes without a token"

        (tmp_path / "kite_token").write_text("renewed-token")
        fake.set_token("renewed-token")
        wait_until(lambda: live.http.get("/api/positions").json() == [], 15)
        wait_until(lambda: live.status()["halt"] is None, 5)
        broker_lines = [line["action"] for line in live.lines() if line["type"] == "broker"]
        assert "token_expired" in broker_lines and "token_renewed" in broker_lines
        exit_order = placed(fake, "MARKET")[-1]
        assert exit_order["form"]["transaction_type"] == "SELL"
        assert exit_order["headers"]["authorization"].endswith(":renewed-token")
    finally:
        assert live.stop() == 0


def test_a_429_backs_off_and_the_order_is_placed_once(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        fake.throttle(2)
        fake.push_ticks("INFY", CROSS_UP)
        wait_until(lambda: live.http.get("/api/positions").json(), 15)
        entries = [r for r in fake.orders if r["form"].get("order_type") == "MARKET"]
        assert [r["status"] for r in entries] == [429, 429, 200]
        assert len({r["form"]["tag"] for r in entries}) == 1
        assert any(
            line["type"] == "broker" and line["action"] == "rate_limited" for line in live.lines()
        )
    finally:
        assert live.stop() == 0


def test_a_restart_adopts_matching_orders_and_halts_on_a_mismatch(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    open_long(live, fake)
    live.process.kill()
    live.process.wait(10)

    # same position at the broker: adopted with its resting orders, nothing new placed
    live = start(tmp_path, fake)
    try:
        reconcile = [line for line in live.lines() if line["action"] == "reconcile"][-1]
        assert reconcile["matched"] == ["INFY"] and reconcile["clean"]
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        assert live.status()["halt"] is None
        assert len(placed(fake)) == 3
    finally:
        live.process.kill()
        live.process.wait(10)

    # while OTrade is down the trader buys one more in Kite's app: the broker holds 2
    outside = {
        "tradingsymbol": "INFY",
        "exchange": "NSE",
        "transaction_type": "BUY",
        "order_type": "MARKET",
        "quantity": "1",
        "product": "MIS",
        "market_protection": "-1",
    }
    headers = {"X-Kite-Version": "3", "Authorization": f"token {fake.api_key}:{fake.access_token}"}
    httpx.post(f"{fake.rest_url}/orders/regular", data=outside, headers=headers).raise_for_status()
    live = start(tmp_path, fake)
    try:
        reconcile = [line for line in live.lines() if line["action"] == "reconcile"][-1]
        assert reconcile["mismatched"] == [
            {"symbol": "INFY", "journal": ["long", 1], "broker": ["long", 2]}
        ]
        assert live.status()["halt"] == "reconcile"
        assert live.post("/api/control/adopt").status_code == 200
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        assert live.status()["halt"] is None
        [position] = live.http.get("/api/positions").json()
        assert (position["side"], position["qty"]) == ("long", 2)
        # the adopted position is protected for all of it: both legs resized to 2 at Kite
        wait_until(lambda: live.http.get("/api/positions").json()[0]["protection"] == "protected")
        resized = [r["form"].get("quantity") for r in fake.orders if r["method"] == "PUT"]
        assert resized == ["2", "2"] and len(placed(fake)) == 4, "the 3 and the trader's"
    finally:
        assert live.stop() == 0


def test_an_expired_token_at_start_stops_it_with_status_2(tmp_path, fake) -> None:
    fake.expire_token()
    with pytest.raises(AssertionError, match="run.py exited 2:"):
        start(tmp_path, fake)
    journal = (tmp_path / "journal.jsonl").read_text()
    assert '"action":"stop"' not in journal and '"type":"order"' not in journal


def test_a_refused_entry_keeps_the_brokers_message_and_trading_goes_on(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        fake.reject_next("Insufficient funds. Required margin is 101.00")
        fake.push_ticks("INFY", CROSS_UP)

        def refusal() -> list[dict]:
            return [
                line
                for line in live.lines()
                if line["type"] == "order" and line["action"] == "rejected"
            ]

        [refused] = wait_until(refusal, 10)
        assert refused["reason"] == "Insufficient funds. Required margin is 101.00"
        assert live.http.get("/api/positions").json() == []
        fake.push_ticks("INFY", [100.0])  # crosses down: the refused entry blocks nothing
        wait_until(lambda: placed(fake, "MARKET"), 10)
        assert placed(fake, "MARKET")[0]["form"]["transaction_type"] == "SELL"
    finally:
        assert live.stop() == 0


def test_the_ticker_reconnects_and_resubscribes_and_trading_goes_on(tmp_path, fake) -> None:
    live = start(tmp_path, fake)
    try:
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        fake.loop.call_soon_threadsafe(fake.ticker.disconnect_all)
        wait_until(lambda: live.status()["feed"]["reconnects"] >= 1, 10)
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 10)
        wait_until(lambda: fake.subscribed() == {INFY["instrument_token"]: "quote"}, 10)
        feed_states = [line["state"] for line in live.lines() if line["action"] == "feed"]
        assert "disconnected" in feed_states
        fake.push_ticks("INFY", CROSS_UP)
        wait_until(lambda: live.http.get("/api/positions").json(), 10)
    finally:
        assert live.stop() == 0
