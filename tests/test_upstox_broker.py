"""UpstoxBroker against the fake Upstox (start-up, token expiry, rate limits), and the official
SDK against the same fake; orders are in test_upstox_orders.py."""

from __future__ import annotations

import time

import pytest
import upstox_client

from engine.brokers.base import OrderError, OrderRequest
from engine.brokers.live_base import BrokerError, RateLimited, TokenExpired
from engine.brokers.upstox.broker import UpstoxBroker
from engine.config_errors import ConfigError
from tests.aio import run_async
from tests.fakes.upstox import TOKEN_ENV, upstox_config
from tests.upstox_harness import INFY, RELIANCE, sdk_client, sdk_order

#: the fixtures fake, alerts, make_broker and broker
pytest_plugins = ("tests.upstox_harness",)


# -- the fake, kept honest by the official SDK --------------------------------------------------


def test_official_sdk_places_lists_and_cancels_at_the_fake(fake):
    client = sdk_client(fake)
    orders = upstox_client.OrderApi(client)
    fake.set_ltp(INFY, 1500.0)
    request = sdk_order(quantity=2, price=1400.0, tag="sdk1", order_type="LIMIT")
    order_id = orders.place_order(request, "2.0").data.order_id
    (entry,) = orders.get_order_book("2.0").data
    assert (entry.order_id, entry.status, entry.tag, entry.price) == (
        order_id,
        "open",
        "sdk1",
        1400,
    )
    assert entry.instrument_token == INFY and entry.transaction_type == "BUY"
    assert orders.cancel_order(order_id, "2.0").data.order_id == order_id
    assert orders.get_order_book("2.0").data[0].status == "cancelled"
    market = sdk_order(quantity=3, tag="sdk2", transaction_type="SELL")
    orders.place_order(market, "2.0")
    (position,) = upstox_client.PortfolioApi(client).get_positions("2.0").data
    assert (position.instrument_token, position.quantity, position.average_price) == (
        INFY,
        -3,
        1500.0,
    )
    quote = upstox_client.MarketQuoteApi(client).ltp(INFY, "2.0").data
    assert quote["NSE_EQ:INFY"].instrument_token == INFY
    feed = upstox_client.WebsocketApi(client).get_market_data_feed_authorize_v3()
    assert feed.data.authorized_redirect_uri.startswith("ws://127.0.0.1:")
    assert upstox_client.UserApi(client).get_profile("2.0").data.user_id == "FAKE01"


def test_official_sdk_sees_the_fake_refuse_a_bad_token(fake):
    client = sdk_client(fake)
    client.configuration.access_token = "not-the-token"
    with pytest.raises(upstox_client.rest.ApiException) as refused:
        upstox_client.UserApi(client).get_profile("2.0")
    assert refused.value.status == 401 and b"UDAPI100050" in refused.value.body


# -- start-up ------------------------------------------------------------------------------------


@run_async
async def test_start_checks_the_token_and_every_instrument_key(broker, fake):
    await broker.start()
    (profile, quote) = fake.requests
    assert profile["path"] == "/v2/user/profile"
    assert profile["headers"]["authorization"] == f"Bearer {fake.access_token}"
    assert quote["path"] == "/v2/market-quote/ltp"
    assert quote["query"] == {"instrument_key": f"{INFY},{RELIANCE}"}
    assert broker.user_id == "FAKE01"
    await broker.close()


@pytest.mark.parametrize("bad_key", ["NSE_EQ|INE000000000", "NSEEQ|X"])
@run_async
async def test_start_stops_naming_an_instrument_that_does_not_resolve(
    fake, tmp_path, monkeypatch, bad_key
):
    monkeypatch.setenv(TOKEN_ENV, fake.access_token)
    instruments = [
        {"symbol": "INFY", "upstox": {"instrument_key": INFY}},
        {"symbol": "GHOST", "upstox": {"instrument_key": bad_key}},
    ]
    broker = UpstoxBroker(upstox_config(fake, tmp_path, instruments), lambda *a: None)
    with pytest.raises(ConfigError, match="GHOST") as refused:
        await broker.start()
    assert refused.value.path == "instruments[1].upstox"
    await broker.close()


@run_async
async def test_token_comes_from_the_token_file_when_the_variable_is_unset(
    fake, tmp_path, monkeypatch
):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    broker = UpstoxBroker(upstox_config(fake, tmp_path), lambda *a: None)
    with pytest.raises(ConfigError, match=f"{TOKEN_ENV}.*upstox_token") as refused:
        await broker.start()
    assert refused.value.path == "broker.access_token_env"
    (tmp_path / "upstox_token").write_text(fake.access_token + "\n")
    await broker.start()
    await broker.close()


# -- token expiry and rate limits ----------------------------------------------------------------


@run_async
async def test_expired_token_raises_alerts_once_and_renew_restores_it(
    broker, fake, alerts, monkeypatch
):
    await broker.start()
    fake.expire_token()
    with pytest.raises(TokenExpired, match="Invalid token") as expired:
        await broker.place(OrderRequest("INFY", "buy", 1, tag="K1"))
    assert expired.value.code == "UDAPI100050" and expired.value.status == 401
    with pytest.raises(TokenExpired):
        await broker.positions()
    assert alerts == [("token_expired", "Invalid token used to access API")]
    assert not await broker.renew()  # the same token still fails, and is not alerted again
    fake.set_token("fresh-token-2")
    monkeypatch.setenv(TOKEN_ENV, "fresh-token-2")
    assert await broker.renew()
    assert [code for code, _ in alerts] == ["token_expired", "token_renewed"]
    assert all("fresh-token-2" not in message for _, message in alerts)
    state = await broker.place(OrderRequest("INFY", "buy", 1, tag="K2"))
    assert fake.orders[-1]["headers"]["authorization"] == "Bearer fresh-token-2"
    assert state.status == "working"
    fake.expire_token()
    with pytest.raises(TokenExpired):
        await broker.positions()
    assert [code for code, _ in alerts][-1] == "token_expired"  # a new expiry, a new alert
    await broker.close()


@run_async
async def test_429_backs_off_and_retries_the_place(broker, fake, alerts):
    await broker.start()
    fake.throttle(2)
    started = time.monotonic()
    state = await broker.place(OrderRequest("INFY", "buy", 1, tag="Q1"))
    assert time.monotonic() - started >= 0.25 + 0.5  # two back-offs: 0.25 s, then 0.5 s
    assert state.status == "working" and len(fake.book) == 1
    assert [r["path"] for r in fake.orders] == ["/v2/order/place"] * 3
    assert [code for code, _ in alerts] == ["rate_limited", "rate_limited"]
    await broker.close()


@run_async
async def test_429_beyond_the_retries_raises_rate_limited(broker, fake):
    await broker.start()
    fake.throttle(10)
    with pytest.raises(RateLimited, match="Too Many Request Sent") as limited:
        await broker.place(OrderRequest("INFY", "buy", 1, tag="Q2"))
    assert limited.value.code == "UDAPI10005"
    assert fake.book == {} and len(fake.orders) == 4
    await broker.close()


@run_async
async def test_other_broker_errors_keep_their_message(broker, fake):
    await broker.start()
    with pytest.raises(BrokerError, match="not open to cancel"):
        await broker.cancel("999")
    with pytest.raises(OrderError, match="symbol"):
        await broker.place(OrderRequest("NOPE", "buy", 1, tag="N1"))
    await broker.close()
