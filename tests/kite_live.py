"""Helpers of the Kite tests through a real ``run.py``: the instrument, the start, the orders."""

from __future__ import annotations

from tests.conftest import wait_until
from tests.fakes.kite import FakeKite
from tests.live import LiveEngine

INFY = {"tradingsymbol": "INFY", "exchange": "NSE", "instrument_token": 408065}
#: crosses up on the last tick (fast 1, slow 2): one buy at 101
CROSS_UP = [100.0, 100.0, 100.0, 101.0]


def start(
    tmp_path,
    fake: FakeKite,
    bracket: dict | None = None,
    engine: type[LiveEngine] = LiveEngine,
    broker: dict | None = None,
    **sections,
) -> LiveEngine:
    token_file = tmp_path / "kite_token"
    if not token_file.exists():
        token_file.write_text(fake.access_token)
        token_file.chmod(0o600)
    return engine(
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
            **(broker or {}),
        },
        feed={"name": "broker", "stale_after_s": 60},
        **sections,
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
