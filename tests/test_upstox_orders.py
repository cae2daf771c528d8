"""UpstoxBroker's orders against the fake Upstox: requests, updates, lookups and positions."""

from __future__ import annotations

import asyncio

import pytest
import upstox_client

from engine.brokers.base import OrderError, OrderRequest
from engine.brokers.live_base import BrokerError
from tests.aio import run_async, until
from tests.upstox_harness import (
    INFY,
    SBIN,
    Updates,
    sdk_client,
    sdk_order,
)

#: the fixtures fake, alerts, make_broker and broker
pytest_plugins = ("tests.upstox_harness",)


# -- orders --------------------------------------------------------------------------------------


@run_async
async def test_place_sends_the_documented_json_and_headers(broker, fake):
    await broker.start()
    order = OrderRequest("INFY", "buy", 5, "limit", limit_price=1400.5, tag="E1a")
    state = await broker.place(order)
    (sent,) = fake.orders
    assert sent["method"] == "POST" and sent["path"] == "/v2/order/place"
    assert sent["json"] == {
        "quantity": 5,
        "product": "I",
        "validity": "DAY",
        "price": 1400.5,
        "tag": "E1a",
        "instrument_token": INFY,
        "order_type": "LIMIT",
        "transaction_type": "BUY",
        "disclosed_quantity": 0,
        "trigger_price": 0,
        "is_amo": False,
    }
    headers = sent["headers"]
    assert headers["authorization"] == f"Bearer {fake.access_token}"
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"
    assert state.status == "working" and state.tag == "E1a"
    assert broker.tags == {"E1a": state.order_id}
    assert fake.order(state.order_id)["tag"] == "E1a"
    await broker.close()


@pytest.mark.parametrize(
    ("kind", "prices", "sent"),
    [
        ("market", {}, ("MARKET", 0, 0)),
        ("limit", {"limit_price": 1490.0}, ("LIMIT", 1490.0, 0)),
        ("stop", {"stop_price": 1510.0}, ("SL-M", 0, 1510.0)),
        ("stop_limit", {"limit_price": 1515.0, "stop_price": 1510.0}, ("SL", 1515.0, 1510.0)),
    ],
)
@run_async
async def test_order_types_map_to_upstox_types(broker, fake, kind, prices, sent):
    await broker.start()
    fake.set_ltp(INFY, 1500.0)
    state = await broker.place(OrderRequest("INFY", "sell", 1, kind, tag="T1", **prices))
    body = fake.orders[0]["json"]
    assert (body["order_type"], body["price"], body["trigger_price"]) == sent
    assert body["transaction_type"] == "SELL"
    assert (state.type, state.limit_price, state.stop_price) == (
        kind,
        prices.get("limit_price"),
        prices.get("stop_price"),
    )
    await broker.close()


@run_async
async def test_refused_order_comes_back_rejected_with_the_brokers_message(broker, fake):
    await broker.start()
    updates = Updates(broker)
    fake.reject_next("Insufficient funds. Required margin is 1500.00")
    state = await broker.place(OrderRequest("INFY", "buy", 1, tag="R1"))
    assert state.status == "rejected"
    assert state.reason == "Insufficient funds. Required margin is 1500.00"
    await until(lambda: updates.seen)
    (update,) = updates.seen
    assert (update.seq, update.kind, update.reason) == (0, "rejected", state.reason)
    assert fake.book == {}
    await broker.close()


@run_async
async def test_exchange_rejection_arrives_as_an_update_with_its_status_message(broker, fake):
    await broker.start()
    updates = Updates(broker)
    fake.reject_next("RMS: Margin exceeds", at="exchange")
    state = await broker.place(OrderRequest("INFY", "buy", 1, "limit", limit_price=1.0, tag="X1"))
    await until(lambda: len(updates.seen) == 2)
    assert updates.kinds() == ["accepted", "rejected"]
    assert updates.seen[1].order.order_id == state.order_id
    assert updates.seen[1].reason == "RMS: Margin exceeds"
    await broker.close()


@run_async
async def test_updates_follow_cumulative_fills_without_duplicates(broker, fake):
    await broker.start()
    updates = Updates(broker)
    fake.set_ltp(INFY, 1500.0)
    state = await broker.place(
        OrderRequest("INFY", "buy", 5, "limit", limit_price=1490.0, tag="F1")
    )
    fake.fill(state.order_id, 2, 1489.0)
    await until(lambda: len(updates.seen) == 2)
    fake.fill(state.order_id, 3, 1490.0)
    await until(lambda: len(updates.seen) == 3)
    accepted, partial, full = updates.seen
    assert [u.seq for u in updates.seen] == [0, 1, 2]
    assert (accepted.kind, partial.kind, full.kind) == ("accepted", "filled", "filled")
    assert (partial.order.status, partial.order.filled_qty, partial.order.fill_price) == (
        "working",
        2,
        1489.0,
    )
    assert (full.order.status, full.order.filled_qty) == ("filled", 5)
    assert full.order.fill_price == pytest.approx((2 * 1489.0 + 3 * 1490.0) / 5)
    assert full.order.fill_ts >= partial.order.fill_ts > 0
    requests = len(fake.requests)
    await asyncio.sleep(0.6)  # a poll's worth: the order is done, nothing more is polled
    assert len(fake.requests) == requests and len(updates.seen) == 3
    await broker.close()


@run_async
async def test_a_stop_limit_reports_its_trigger_then_its_fill(broker, fake):
    await broker.start()
    updates = Updates(broker)
    fake.set_ltp(INFY, 1500.0)
    prices = {"limit_price": 1512.0, "stop_price": 1510.0}
    await broker.place(OrderRequest("INFY", "buy", 2, "stop_limit", **prices, tag="S1"))
    await until(lambda: len(updates.seen) == 1)
    fake.set_ltp(INFY, 1511.0)  # triggers, and the limit at 1512 rests ... then fills
    await until(lambda: len(updates.seen) == 3)
    assert updates.kinds() == ["accepted", "triggered", "filled"]
    assert updates.seen[1].order.triggered and updates.seen[2].order.filled_qty == 2
    await broker.close()


@run_async
async def test_a_stop_market_fills_at_the_tick_that_crosses_its_trigger(broker, fake):
    await broker.start()
    updates = Updates(broker)
    fake.set_ltp(INFY, 1500.0)
    state = await broker.place(OrderRequest("INFY", "sell", 3, "stop", stop_price=1490.0, tag="D1"))
    fake.push_ticks(INFY, [1495.0, 1491.0, 1488.5, 1480.0])
    await until(lambda: len(updates.seen) == 2)
    filled = updates.seen[1]
    assert (filled.kind, filled.order.order_id, filled.order.status) == (
        "filled",
        state.order_id,
        "filled",
    )
    assert (filled.order.filled_qty, filled.order.fill_price) == (3, 1488.5)
    assert not filled.order.triggered  # only a stop-limit rests as triggered
    await broker.close()


@run_async
async def test_modify_and_cancel_send_upstox_requests_and_stream_updates(broker, fake):
    await broker.start()
    updates = Updates(broker)
    fake.set_ltp(INFY, 1500.0)
    state = await broker.place(
        OrderRequest("INFY", "buy", 4, "limit", limit_price=1450.0, tag="M1")
    )
    changed = await broker.modify(state.order_id, qty=6, limit_price=1455.0)
    assert (changed.qty, changed.limit_price, changed.status) == (6, 1455.0, "working")
    modify = fake.orders[1]
    assert (modify["method"], modify["path"]) == ("PUT", "/v2/order/modify")
    assert modify["json"] == {
        "quantity": 6,
        "validity": "DAY",
        "price": 1455.0,
        "order_id": state.order_id,
        "order_type": "LIMIT",
        "disclosed_quantity": 0,
        "trigger_price": 0,
    }
    with pytest.raises(OrderError, match="stop_price"):
        await broker.modify(state.order_id, stop_price=1400.0)
    cancelled = await broker.cancel(state.order_id)
    cancel = fake.orders[2]
    assert (cancel["method"], cancel["query"]) == ("DELETE", {"order_id": state.order_id})
    assert (cancelled.status, cancelled.reason) == ("cancelled", "Cancelled by user")
    await until(lambda: len(updates.seen) >= 3)
    await asyncio.sleep(0.6)  # a poll's worth: the poller reports nothing twice
    assert updates.kinds() == ["accepted", "modified", "cancelled"]
    with pytest.raises(OrderError, match="not open"):
        await broker.cancel(state.order_id)
    await broker.close()


@run_async
async def test_open_orders_include_foreign_ones_and_order_by_tag_finds_ours(broker, fake):
    await broker.start()
    fake.set_ltp(INFY, 1500.0)
    orders = upstox_client.OrderApi(sdk_client(fake))
    foreign = sdk_order(product="D", price=1000.0, order_type="LIMIT")
    foreign_id = orders.place_order(foreign, "2.0").data.order_id
    ours = await broker.place(
        OrderRequest("INFY", "sell", 1, "limit", limit_price=1600.0, tag="O1")
    )
    listed = await broker.open_orders()
    assert [state.order_id for state in listed] == [foreign_id, ours.order_id]
    assert listed[0].tag is None and listed[0].symbol == "INFY"
    assert (await broker.order_by_tag("O1")).order_id == ours.order_id
    assert await broker.order_by_tag("nothere") is None
    await broker.close()


@run_async
async def test_a_lost_place_answer_is_found_by_its_tag_not_sent_twice(make_broker, fake):
    broker = make_broker(timeout_s=0.5)
    await broker.start()
    fake.set_ltp(INFY, 1500.0)
    fake.delay_next_place(1.0)  # beyond the 0.5 s timeout: the answer never arrives
    state = await broker.place(
        OrderRequest("INFY", "buy", 1, "limit", limit_price=1400.0, tag="L1")
    )
    assert [r["path"] for r in fake.orders] == ["/v2/order/place"]
    assert state.status == "working" and state.order_id in fake.book
    assert broker.tags == {"L1": state.order_id}
    await broker.close()


@run_async
async def test_a_server_error_on_place_looks_for_the_tag_then_raises(broker, fake):
    await broker.start()
    fake.fail("/v2/order/place", 1, 503, "Service Unavailable")
    with pytest.raises(BrokerError, match="Service Unavailable") as failed:
        await broker.place(OrderRequest("INFY", "buy", 1, tag="U1"))
    assert failed.value.status == 503 and fake.book == {}
    paths = [r["path"] for r in fake.requests[2:]]  # after the start-up checks
    assert paths == ["/v2/order/place"] + ["/v2/order/retrieve-all"] * 3
    await broker.close()


@run_async
async def test_the_poller_survives_broker_errors_alerting_once(broker, fake, alerts):
    await broker.start()
    updates = Updates(broker)
    fake.set_ltp(INFY, 1500.0)
    state = await broker.place(
        OrderRequest("INFY", "buy", 2, "limit", limit_price=1490.0, tag="B1")
    )
    fake.fail("/v2/order/retrieve-all", 2)
    await until(lambda: "/v2/order/retrieve-all" not in fake._failures, timeout=3)
    fake.fill(state.order_id, 2)
    await until(lambda: len(updates.seen) == 2)
    assert updates.kinds() == ["accepted", "filled"]
    assert alerts == [("broker_error", "Something went wrong")]
    await broker.close()


@run_async
async def test_positions_by_configured_symbol_else_the_brokers_name(broker, fake):
    await broker.start()
    fake.set_ltp(INFY, 1500.0)
    fake.set_ltp(SBIN, 800.0)
    await broker.place(OrderRequest("INFY", "buy", 3, tag="P1"))
    await broker.place(OrderRequest("INFY", "buy", 1, "limit", limit_price=1504.0, tag="P2"))
    client = sdk_client(fake)
    foreign = sdk_order(quantity=2, product="D", instrument_token=SBIN, transaction_type="SELL")
    upstox_client.OrderApi(client).place_order(foreign, "2.0")
    assert await broker.positions() == {
        "INFY": {"side": "long", "qty": 4, "entry_price": 1500.0},
        "SBIN": {"side": "short", "qty": 2, "entry_price": 800.0},
    }
    await broker.place(OrderRequest("INFY", "sell", 4, tag="P3"))
    assert await broker.positions() == {"SBIN": {"side": "short", "qty": 2, "entry_price": 800.0}}
    await broker.close()
