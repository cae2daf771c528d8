"""The ProjectX adapter's recovery on the fake gateway: token expiry, rate limits, lost answers."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.brokers.base import OrderRequest
from engine.brokers.live_base import RateLimited
from tests.aio import run_async, until
from tests.projectx_harness import NQ, Alerts, px_config, running

#: the fixture fake (the gateway, its credentials in the environment)
pytest_plugins = ("tests.projectx_harness",)


@run_async
async def test_a_401_renews_the_token_and_retries_the_call(fake, tmp_path) -> None:
    alerts = Alerts()
    async with running(px_config(fake, tmp_path), alerts) as broker:
        fake.expire_token(logout=False)
        assert await broker.positions() == {}
        fake.expire_token(logout=False)
        state = await broker.place(
            OrderRequest("NQ", "buy", 1, "limit", limit_price=99.0, tag="T1")
        )
    assert state.status == "working"
    assert alerts.codes() == ["token_expired", "token_renewed"] * 2
    assert fake.logins == 3
    paths = [r["path"].removeprefix("/api/") for r in fake.requests]
    # the refused place is looked up by its tag before it is sent again
    assert paths[-6:] == ["Order/place", "Auth/validate", "Auth/loginKey", "Order/searchOpen",
                          "Order/search", "Order/place"]  # fmt: skip
    assert [o["customTag"] for o in fake.book.values()] == ["T1"]


@run_async
async def test_gateway_logout_alerts_renews_and_both_hubs_reconnect(fake, tmp_path) -> None:
    alerts = Alerts()
    async with running(px_config(fake, tmp_path), alerts) as broker:
        feed = broker.market_feed({"NQ": 0}, lambda batch, n, recv_ns: None, lambda state: None)
        task = asyncio.create_task(feed.run())
        trades = ("SubscribeContractTrades", [NQ])
        # connected is not yet subscribed: expiring now could cut the first subscription off
        orders = ("SubscribeOrders", [fake.account_id])
        await until(lambda: fake.invocations["market"].count(trades) == 1)
        await until(lambda: fake.invocations["user"].count(orders) == 1)
        fake.expire_token()
        await until(lambda: "token_renewed" in alerts.codes())
        await until(lambda: fake.handshakes == {"market": 2, "user": 2})
        await until(lambda: fake.clients("user") == 1 and fake.clients("market") == 1)
        # the resubscription follows the handshake: wait for it to reach the fake
        await until(lambda: fake.invocations["market"].count(trades) >= 2)
        assert await broker.positions() == {}
        feed.stop()
        await task
    assert alerts.codes() == ["token_expired", "token_renewed"]
    assert "GatewayLogout" in alerts[0][1]
    market = fake.invocations["market"]
    assert market.count(("SubscribeContractTrades", [NQ])) == 2  # resubscribed
    assert fake.invocations["user"].count(("SubscribeOrders", [fake.account_id])) == 2


@run_async
async def test_429_backs_off_and_persistent_429s_raise(fake, tmp_path) -> None:
    alerts = Alerts()
    async with running(px_config(fake, tmp_path), alerts) as broker:
        fake.throttle(2)
        started = time.monotonic()
        assert await broker.positions() == {}
        assert time.monotonic() - started >= 0.25 + 0.5  # RestClient's doubling back-off
        assert alerts.codes() == ["rate_limited", "rate_limited"]
        fake.throttle(100)
        with pytest.raises(RateLimited):
            await broker.positions()


@run_async
async def test_a_lost_place_answer_is_resolved_by_looking_up_its_tag(fake, tmp_path) -> None:
    async with running(px_config(fake, tmp_path, timeout_s=0.2)) as broker:
        fake.stall_next(0.6)
        state = await broker.place(
            OrderRequest("NQ", "buy", 1, "limit", limit_price=98.0, tag="N1")
        )
    assert (state.status, state.tag) == ("working", "N1")
    assert [o["customTag"] for o in fake.book.values()] == ["N1"]
    assert sum(r["path"] == "/api/Order/place" for r in fake.requests) == 1
