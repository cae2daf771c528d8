"""Kite end to end through a real ``run.py``: ticks on the fake ticker -> signal -> order at the
fake REST server -> fill on the ticker's order messages -> position -> OCO exit; and token
expiry, 429 and restart reconciliation."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.fakes.kite import FakeKite
from tests.live import LiveEngine

INFY = {"tradingsymbol": "INFY", "exchange": "NSE", "instrument_token": 408065}
#: crosses up on the last tick (fast 1, slow 2): one buy at 101
CROSS_UP = [100.0, 100.0, 100.0, 101.0]


@pytest.fixture
def fake():
    with FakeKite([{**INFY, "last_price": 100.0}]) as kite:
        yield kite


def start(tmp_path, fake: FakeKite, bracket: dict | None = None) -> LiveEngine:
    token_file = tmp_path / "kite_token"
    if not token_file.exists():
        token_file.write_text(fake.access_token)
        token_file.chmod(0o600)
    return LiveEngine(
        tmp_path,
        env={"KITE_API_KEY": fake.api_key, "KITE_API_SECRET": fake.api_secret},
        instruments=[{"symbol": "INFY", "tick_size": 0.05, "kite": INFY}],
        bracket=bracket or {"target_ticks": 20, "stop_ticks": 10},
        broker={
            "name": "kite",
            "base_url": fake.rest_url,
            "ws_url": fake.ws_url,
            "token_path": str(token_file),
            "access_token_env": "OTRADE_TEST_UNSET_KITE_TOKEN",
        },
        feed={"name": "broker", "stale_after_s": 60},
    )


def placed(fake: FakeKite, order_type: str | None = None) -> list[dict]:
    return [
        r
        for r in fake.orders
        if r["method"] == "POST"
        and r["status"] == 200
        and (order_type is None or r["form"]["order_type"] == order_type)
    ]


def open_long(live: LiveEngine, fake: FakeKite) -> None:
    wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
    fake.push_ticks("INFY", CROSS_UP)
    wait_until(lambda: live.http.get("/api/positions").json(), 10)
    # the resting target and stop follow the entry's fill
    wait_until(lambda: len(placed(fake)) == 3, 10)


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
        stop_id = next(
            line["order_id"]
            for line in live.lines()
            if line["action"] == "placed" and line.get("role") == "stop"
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

    # while OTrade is down the stop fills: the journal's long is gone at the broker
    fake.push_ticks("INFY", [100.4])
    live = start(tmp_path, fake)
    try:
        reconcile = [line for line in live.lines() if line["action"] == "reconcile"][-1]
        assert reconcile["mismatched"] == [
            {"symbol": "INFY", "journal": ["long", 1], "broker": None}
        ]
        assert live.status()["halt"] == "reconcile"
        # the target left behind would open a short: it was cancelled
        assert [c["type"] for c in reconcile["cancelled"]] == ["limit"]
        assert live.post("/api/control/adopt").status_code == 200
        wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
        assert live.status()["halt"] is None
        assert live.http.get("/api/positions").json() == []
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
