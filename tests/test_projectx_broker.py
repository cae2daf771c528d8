"""The ProjectX adapter against the fake gateway on 127.0.0.1 (REST and SignalR hubs).

The official SDK, project-x-py, is pointed at the same fake first: it must place, list and
cancel an order there, which keeps the fake's shapes honest. Token expiry, rate limits and lost
answers are in ``test_projectx_recovery.py``.
"""

from __future__ import annotations

import pytest
import uvloop
from project_x_py import ProjectX
from project_x_py.event_bus import EventBus
from project_x_py.models import ProjectXConfig
from project_x_py.order_manager import OrderManager

from engine.brokers.base import OrderError, OrderRequest
from engine.config_errors import ConfigError
from tests.aio import run_async, until
from tests.fakes.projectx import DEFAULT_CONTRACTS, FakeProjectX
from tests.projectx_harness import (
    NQ,
    NQ_SEARCH,
    next_updates,
    polls,
    px_config,
    running,
    start_and_close,
)

#: the fixture fake (the gateway, its credentials in the environment)
pytest_plugins = ("tests.projectx_harness",)


# -- the SDK keeps the fake honest ---------------------------------------------------------------


@run_async
async def test_the_official_sdk_places_lists_and_cancels_on_the_fake(fake) -> None:
    hubs = fake.ws_url.replace("ws://", "http://")
    config = ProjectXConfig(
        api_url=f"{fake.rest_url}/api",
        user_hub_url=f"{hubs}/user",
        market_hub_url=f"{hubs}/market",
    )
    async with ProjectX(username=fake.user_name, api_key=fake.api_key, config=config) as client:
        await client.authenticate()
        assert client.account_info.id == fake.account_id
        orders = OrderManager(client, EventBus())
        placed = await orders.place_order(
            NQ, order_type=1, side=0, size=2, limit_price=19000.25, custom_tag="sdk1"
        )
        assert placed.success
        listed = await orders.search_open_orders()
        assert [(o.id, o.customTag, o.size, o.limitPrice) for o in listed] == [
            (placed.orderId, "sdk1", 2, 19000.25)
        ]
        assert await orders.cancel_order(placed.orderId)
        assert await orders.search_open_orders() == []
    assert fake.book[placed.orderId]["status"] == 3


# -- start-up ------------------------------------------------------------------------------------


@run_async
async def test_contract_search_resolves_the_active_front_month(fake, tmp_path) -> None:
    instruments = [
        NQ_SEARCH,
        {"symbol": "MNQ", "tick_size": 0.25, "projectx": {"contract_id": "CON.F.US.MNQ.H25"}},
    ]
    async with running(px_config(fake, tmp_path, instruments)) as broker:
        assert broker.account_id == fake.account_id
        assert broker.contracts["NQ"]["id"] == NQ  # not the expired Z24, not the micro
        assert broker.contracts["NQ"]["tickValue"] == 5.0
        assert broker.contracts["MNQ"]["tickValue"] == 0.5
    searches = [r["body"] for r in fake.requests if r["path"] == "/api/Contract/search"]
    assert searches == [{"live": False, "searchText": "NQ"}]


@pytest.mark.parametrize(
    ("contracts", "instrument", "path"),
    [
        ([{**DEFAULT_CONTRACTS[0]}], NQ_SEARCH, "instruments[1].projectx"),
        (DEFAULT_CONTRACTS, {**NQ_SEARCH, "projectx": {"contract_id": "CON.F.US.EP.H25"}},
         "instruments[1].projectx"),
        (DEFAULT_CONTRACTS, {**NQ_SEARCH, "tick_size": 0.5}, "instruments[1].tick_size"),
    ],
    ids=["no-active-contract", "unknown-contract-id", "tick-size-differs"],
)  # fmt: skip
def test_an_instrument_that_does_not_resolve_stops_the_start(
    monkeypatch, tmp_path, contracts, instrument, path
) -> None:
    mnq = {"symbol": "MNQ", "tick_size": 0.25, "projectx": {"contract_id": "CON.F.US.MNQ.H25"}}
    contracts = [*contracts, DEFAULT_CONTRACTS[2]]
    with FakeProjectX(contracts=contracts) as fake:
        monkeypatch.setenv("PROJECTX_USERNAME", fake.user_name)
        monkeypatch.setenv("PROJECTX_API_KEY", fake.api_key)
        cfg = px_config(fake, tmp_path, [mnq, {**instrument, "symbol": "NQ1"}])
        with pytest.raises(ConfigError) as caught:
            uvloop.run(start_and_close(cfg))
    assert caught.value.path == path
    assert "NQ1" in caught.value.message


def test_several_accounts_need_broker_account_id(monkeypatch, tmp_path) -> None:
    accounts = [
        {"id": 11, "name": "EVAL-11", "balance": 1.0, "canTrade": True, "isVisible": True,
         "simulated": True},
        {"id": 12, "name": "EVAL-12", "balance": 1.0, "canTrade": True, "isVisible": True,
         "simulated": True},
    ]  # fmt: skip
    with FakeProjectX(accounts=accounts) as fake:
        monkeypatch.setenv("PROJECTX_USERNAME", fake.user_name)
        monkeypatch.setenv("PROJECTX_API_KEY", fake.api_key)
        with pytest.raises(ConfigError) as caught:
            uvloop.run(start_and_close(px_config(fake, tmp_path)))
        assert caught.value.path == "broker.account_id"
        assert "11 (EVAL-11)" in caught.value.message and "12 (EVAL-12)" in caught.value.message

        async def pick() -> int:
            async with running(px_config(fake, tmp_path, account_id=12)) as broker:
                return broker.account_id

        assert uvloop.run(pick()) == 12


def test_refused_credentials_stop_the_start_with_the_gateway_message(
    fake, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("PROJECTX_API_KEY", "wrong")
    with pytest.raises(ConfigError, match="Invalid user name or API key"):
        uvloop.run(start_and_close(px_config(fake, tmp_path)))


# -- orders --------------------------------------------------------------------------------------


@run_async
async def test_place_sends_the_documented_json_and_headers(fake, tmp_path) -> None:
    async with running(px_config(fake, tmp_path)) as broker:
        requests = [
            OrderRequest("NQ", "buy", 2, "limit", limit_price=19000.25, tag="L1"),
            OrderRequest("NQ", "sell", 1, "stop", stop_price=18990.0, tag="S1"),
            OrderRequest("NQ", "sell", 1, "stop_limit", limit_price=18989.0, stop_price=18990.0,
                         tag="SL1"),
            OrderRequest("NQ", "buy", 1, "market", tag="M1"),
        ]  # fmt: skip
        states = [await broker.place(request) for request in requests]
        token = broker.rest.headers["Authorization"].removeprefix("Bearer ")
    places = [r for r in fake.orders if r["path"] == "/api/Order/place"]
    expected = [(1, 0, 2, 19000.25, None), (4, 1, 1, None, 18990.0),
                (3, 1, 1, 18989.0, 18990.0), (2, 0, 1, None, None)]  # fmt: skip
    for sent, request, (kind, side, size, limit, stop) in zip(
        places, requests, expected, strict=True
    ):
        assert sent["body"] == {
            "accountId": fake.account_id,
            "contractId": NQ,
            "type": kind,
            "side": side,
            "size": size,
            "limitPrice": limit,
            "stopPrice": stop,
            "customTag": request.tag,
        }
        assert sent["headers"]["authorization"] == f"Bearer {token}"
        assert sent["headers"]["content-type"] == "application/json"
    assert [s.status for s in states] == ["working", "working", "working", "working"]
    assert broker.tags == {s.tag: s.order_id for s in states}
    assert {str(o["id"]) for o in fake.book.values()} == {s.order_id for s in states}


@run_async
async def test_a_refused_order_is_rejected_with_the_gateway_message(fake, tmp_path) -> None:
    async with running(px_config(fake, tmp_path)) as broker:
        fake.reject_next("Insufficient buying power.")
        state = await broker.place(OrderRequest("NQ", "buy", 1, "market", tag="R1"))
        assert (state.status, state.reason) == ("rejected", "Insufficient buying power.")
        [update] = await next_updates(broker, 1)
    assert (update.seq, update.kind, update.reason) == (0, "rejected", "Insufficient buying power.")
    assert fake.book == {}


@run_async
async def test_the_fake_refuses_a_second_order_with_a_used_custom_tag(fake, tmp_path) -> None:
    async with running(px_config(fake, tmp_path)) as broker:
        first = await broker.place(
            OrderRequest("NQ", "buy", 1, "limit", limit_price=100.0, tag="D1")
        )
        second = await broker.place(
            OrderRequest("NQ", "buy", 1, "limit", limit_price=100.0, tag="D1")
        )
    assert first.status == "working"
    assert second.status == "rejected" and "custom tag 'D1'" in second.reason
    assert [o["customTag"] for o in fake.book.values()] == ["D1"]


@run_async
async def test_requests_off_the_grid_or_unknown_are_refused_before_sending(fake, tmp_path) -> None:
    async with running(px_config(fake, tmp_path)) as broker:
        with pytest.raises(OrderError, match="limit_price"):
            await broker.place(OrderRequest("NQ", "buy", 1, "limit", limit_price=100.1, tag="G1"))
        with pytest.raises(OrderError, match="symbol"):
            await broker.place(OrderRequest("ES", "buy", 1, tag="G2"))
    assert fake.orders == []


@run_async
async def test_fills_stream_cumulative_quantity_and_average_price_once(fake, tmp_path) -> None:
    async with running(px_config(fake, tmp_path)) as broker:
        await until(lambda: fake.clients("user") == 1)
        state = await broker.place(
            OrderRequest("NQ", "buy", 3, "limit", limit_price=100.0, tag="F1")
        )
        # the stream and the poll of the open orders both see every step: each is streamed once
        await until(lambda: polls(fake) >= 1)
        fake.fill(int(state.order_id), 1, 100.0)
        polled = polls(fake)
        await until(lambda: polls(fake) > polled)
        fake.fill(int(state.order_id), 2, 99.5)
        updates = await next_updates(broker, 3)
        assert broker._stream.queued == 0
        position = (await broker.positions())["NQ"]
    assert position == {"side": "long", "qty": 3, "entry_price": pytest.approx(299.0 / 3)}
    assert [u.seq for u in updates] == [0, 1, 2]
    assert [(u.kind, u.order.status, u.order.filled_qty) for u in updates] == [
        ("accepted", "working", 0),
        ("filled", "working", 1),
        ("filled", "filled", 3),
    ]
    assert updates[1].order.fill_price == 100.0
    assert updates[2].order.fill_price == pytest.approx((100.0 + 2 * 99.5) / 3)


@run_async
async def test_modify_cancel_and_open_orders(fake, tmp_path) -> None:
    async with running(px_config(fake, tmp_path)) as broker:
        state = await broker.place(
            OrderRequest("NQ", "sell", 1, "limit", limit_price=101.0, tag="C1")
        )
        moved = await broker.modify(state.order_id, limit_price=102.5, qty=2)
        assert (moved.limit_price, moved.qty) == (102.5, 2)
        assert [(s.order_id, s.limit_price) for s in await broker.open_orders()] == [
            (state.order_id, 102.5)
        ]
        cancelled = await broker.cancel(state.order_id)
        assert (cancelled.status, cancelled.reason) == ("cancelled", "Cancelled")
        assert await broker.open_orders() == []
        with pytest.raises(OrderError, match="order_id"):
            await broker.cancel(state.order_id)
        updates = await next_updates(broker, 3)
    assert [u.kind for u in updates] == ["accepted", "modified", "cancelled"]
    modify = next(r["body"] for r in fake.orders if r["path"] == "/api/Order/modify")
    assert modify == {"accountId": fake.account_id, "orderId": int(state.order_id), "size": 2,
                      "limitPrice": 102.5}  # fmt: skip


@run_async
async def test_positions_and_close_contract(fake, tmp_path) -> None:
    async with running(px_config(fake, tmp_path)) as broker:
        fake.set_price(NQ, 19000.0)
        await broker.place(OrderRequest("NQ", "sell", 2, "market", tag="P1"))
        assert await broker.positions() == {
            "NQ": {"side": "short", "qty": 2, "entry_price": 19000.0}
        }
        await broker.close_contract("NQ")
        assert await broker.positions() == {}
        found = await broker.order_by_tag("P1")  # filled: found through Order/search
        assert (found.status, found.filled_qty, found.fill_price) == ("filled", 2, 19000.0)
        assert await broker.order_by_tag("nope") is None


@run_async
async def test_the_poll_reports_a_fill_the_user_hub_missed(fake, tmp_path) -> None:
    async with running(px_config(fake, tmp_path)) as broker:
        broker.user_hub.hub.stop()
        await until(lambda: fake.clients("user") == 0)
        state = await broker.place(
            OrderRequest("NQ", "buy", 1, "limit", limit_price=100.0, tag="Q1")
        )
        fake.push_trades(NQ, [99.75])
        updates = await next_updates(broker, 2)
    assert [(u.kind, u.order.status, u.order.fill_price) for u in updates] == [
        ("accepted", "working", None),
        ("filled", "filled", 99.75),
    ]
    assert updates[1].order.order_id == state.order_id
