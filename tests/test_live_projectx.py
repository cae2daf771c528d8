"""ProjectX end to end through a real ``run.py``: trades on the fake market hub -> signal ->
order at the fake gateway -> fill on the user hub -> position -> OCO exit."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.fakes.projectx import FakeProjectX
from tests.live import LiveEngine

CONTRACT = "CON.F.US.MNQ.H25"


def placed(fake: FakeProjectX, order_type: int | None = None) -> list[dict]:
    return [
        r
        for r in fake.orders
        if r["path"].endswith("/Order/place")
        and r.get("response", {}).get("success", True)
        and (order_type is None or r["body"]["type"] == order_type)
    ]


def test_a_signal_trades_through_projectx_and_the_target_cancels_the_stop(tmp_path) -> None:
    with FakeProjectX() as fake:
        live = LiveEngine(
            tmp_path,
            env={"PROJECTX_USERNAME": fake.user_name, "PROJECTX_API_KEY": fake.api_key},
            instruments=[
                {
                    "symbol": "MNQ",
                    "tick_size": 0.25,
                    "point_value": 2.0,
                    "projectx": {"contract_search": "MNQ"},
                }
            ],
            bracket={"target_ticks": 8, "stop_ticks": 4},
            broker={"name": "projectx", "base_url": fake.rest_url, "ws_url": fake.ws_url},
            feed={"name": "broker", "stale_after_s": 60},
        )
        try:
            wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
            fake.push_trades(CONTRACT, [20000.0, 20000.0, 20000.0, 20001.0])
            wait_until(lambda: live.http.get("/api/positions").json(), 10)
            wait_until(lambda: len(placed(fake)) == 3, 10)
            entry = placed(fake, 2)[0]
            intent = next(line for line in live.lines() if line["type"] == "order")
            assert entry["body"] == {
                "accountId": fake.account_id,
                "contractId": CONTRACT,
                "type": 2,
                "side": 0,
                "size": 1,
                "limitPrice": None,
                "stopPrice": None,
                "customTag": intent["tag"],
            }
            assert entry["headers"]["authorization"].startswith("Bearer ")
            [position] = live.http.get("/api/positions").json()
            assert (position["side"], position["qty"]) == ("long", 1)
            [target] = placed(fake, 1)
            [stop] = placed(fake, 4)
            assert target["body"]["side"] == stop["body"]["side"] == 1
            assert target["body"]["limitPrice"] == pytest.approx(20003.0)
            assert stop["body"]["stopPrice"] == pytest.approx(20000.0)

            fake.push_trades(CONTRACT, [20002.0, 20003.0])
            wait_until(lambda: live.http.get("/api/positions").json() == [], 10)
            wait_until(lambda: any(r["path"].endswith("/Order/cancel") for r in fake.orders), 10)
            fills = [line for line in live.lines() if line["type"] == "fill"]
            assert [(f["action"], f.get("reason")) for f in fills] == [
                ("entry", None),
                ("exit", "target"),
            ]
            assert fills[1]["pnl"] == pytest.approx(2.0 * 2.0)
        finally:
            assert live.stop() == 0
