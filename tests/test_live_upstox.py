"""Upstox end to end through a real ``run.py``: ticks on the fake v3 feed -> signal -> order at
the fake REST server -> fill seen in the order book -> position -> OCO exit."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.fakes.upstox import TOKEN_ENV, FakeUpstox
from tests.live import LiveEngine

KEY = "NSE_EQ|INE009A01021"


def placed(fake: FakeUpstox, order_type: str | None = None) -> list[dict]:
    return [
        r
        for r in fake.orders
        if r["path"] == "/v2/order/place"
        and r.get("status", 200) == 200
        and (order_type is None or r["json"]["order_type"] == order_type)
    ]


def test_a_signal_trades_through_upstox_and_the_target_cancels_the_stop(tmp_path) -> None:
    with FakeUpstox({KEY: "INFY"}) as fake:
        live = LiveEngine(
            tmp_path,
            env={TOKEN_ENV: fake.access_token},
            instruments=[{"symbol": "INFY", "tick_size": 0.05, "upstox": {"instrument_key": KEY}}],
            bracket={"target_ticks": 20, "stop_ticks": 10},
            broker={"name": "upstox", "base_url": fake.rest_url, "access_token_env": TOKEN_ENV},
            feed={"name": "broker", "stale_after_s": 60},
        )
        try:
            wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
            fake.push_ticks(KEY, [100.0, 100.0, 100.0, 101.0])
            wait_until(lambda: live.http.get("/api/positions").json(), 10)
            wait_until(lambda: len(placed(fake)) == 3, 10)
            entry = placed(fake, "MARKET")[0]
            intent = next(line for line in live.lines() if line["type"] == "order")
            assert entry["json"] == {
                "quantity": 1,
                "product": "I",
                "validity": "DAY",
                "price": 0,
                "tag": intent["tag"],
                "instrument_token": KEY,
                "order_type": "MARKET",
                "transaction_type": "BUY",
                "disclosed_quantity": 0,
                "trigger_price": 0,
                "is_amo": False,
            }
            assert entry["headers"]["authorization"] == f"Bearer {fake.access_token}"
            [position] = live.http.get("/api/positions").json()
            assert (position["side"], position["qty"]) == ("long", 1)
            [target] = placed(fake, "LIMIT")
            [stop] = placed(fake, "SL-M")
            assert target["json"]["price"] == pytest.approx(102.0)
            assert stop["json"]["trigger_price"] == pytest.approx(100.5)

            fake.push_ticks(KEY, [101.5, 102.0])
            wait_until(lambda: live.http.get("/api/positions").json() == [], 10)
            wait_until(lambda: any(r["path"] == "/v2/order/cancel" for r in fake.orders), 10)
            fills = [line for line in live.lines() if line["type"] == "fill"]
            assert [(f["action"], f.get("reason")) for f in fills] == [
                ("entry", None),
                ("exit", "target"),
            ]
            assert fills[1]["pnl"] == pytest.approx(1.0)
        finally:
            assert live.stop() == 0
