"""The Kite adapter against the fake Kite: the official SDK keeps the fake honest, then
KiteBroker places, changes and follows orders there over real sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import kiteconnect
import pytest
from kiteconnect import KiteConnect

from engine.brokers import live_base
from engine.brokers.base import OrderError, OrderRequest
from engine.brokers.kite.login import write_token
from engine.brokers.live_base import BrokerError, RateLimited, TokenExpired
from engine.config_errors import ConfigError
from tests.aio import run_async, until
from tests.fakes.kite import FakeKite
from tests.kite_harness import FAKE_INSTRUMENTS, INFY, INSTRUMENTS, NIFTY_FUT, Harness, order, polls


@pytest.fixture
def fake():
    with FakeKite(FAKE_INSTRUMENTS) as server:
        yield server


@pytest.fixture
def env(fake, monkeypatch, tmp_path) -> Path:
    """Credentials as the adapter reads them: the key from the environment, the token file."""
    monkeypatch.setenv("KITE_API_KEY", fake.api_key)
    monkeypatch.delenv("KITE_ACCESS_TOKEN", raising=False)
    token_file = tmp_path / "kite_token"
    write_token(token_file, fake.access_token)
    return token_file


# -- the official SDK against the fake -----------------------------------------------------------


def test_the_official_sdk_logs_in_places_lists_modifies_and_cancels_at_the_fake(fake) -> None:
    kite = KiteConnect(fake.api_key, root=fake.rest_url)
    with pytest.raises(kiteconnect.exceptions.TokenException, match="checksum"):
        kite.generate_session(fake.request_token, "not the secret")
    session = kite.generate_session(fake.request_token, fake.api_secret)
    assert session["access_token"] == fake.access_token
    assert session["user_id"] == kite.profile()["user_id"]

    fills = kite.place_order(
        variety=kite.VARIETY_REGULAR, exchange="NSE", tradingsymbol="INFY",
        transaction_type=kite.TRANSACTION_TYPE_BUY, quantity=3, product=kite.PRODUCT_MIS,
        order_type=kite.ORDER_TYPE_MARKET, market_protection=kite.MARKET_PROTECTION_AUTO,
        tag="sdk1",
    )  # fmt: skip
    rests = kite.place_order(
        variety=kite.VARIETY_REGULAR, exchange="NSE", tradingsymbol="INFY",
        transaction_type=kite.TRANSACTION_TYPE_SELL, quantity=1, product=kite.PRODUCT_MIS,
        order_type=kite.ORDER_TYPE_LIMIT, price=1600.0, tag="sdk2",
    )  # fmt: skip
    by_id = {o["order_id"]: o for o in kite.orders()}
    assert by_id[fills]["status"] == kite.STATUS_COMPLETE
    assert (by_id[fills]["filled_quantity"], by_id[fills]["average_price"]) == (3, 1500.0)
    assert by_id[rests]["status"] == "OPEN" and by_id[rests]["tag"] == "sdk2"
    assert kite.modify_order(kite.VARIETY_REGULAR, rests, quantity=2, price=1610.0) == rests
    assert {"quantity": 2, "price": 1610.0}.items() <= kite.order_history(rests)[-1].items()
    assert kite.cancel_order(kite.VARIETY_REGULAR, rests) == rests
    assert kite.order_history(rests)[-1]["status"] == kite.STATUS_CANCELLED
    net = kite.positions()["net"]
    assert [(p["tradingsymbol"], p["quantity"], p["average_price"]) for p in net] == [
        ("INFY", 3, 1500.0)
    ]
    with pytest.raises(kiteconnect.exceptions.InputException, match="market protection"):
        kite.place_order(
            variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
            quantity=1, product="MIS", order_type="MARKET",
        )  # fmt: skip
    fake.expire_token()
    with pytest.raises(kiteconnect.exceptions.TokenException):
        kite.orders()


# -- placing ---------------------------------------------------------------------------------------


@run_async
async def test_a_place_sends_exactly_the_documented_fields_and_headers(fake, env, tmp_path) -> None:
    async with Harness(fake, tmp_path) as h:
        await h.broker.place(order("m1"))
        await h.broker.place(order("l1", side="sell", type="limit", limit_price=1600.1))
        await h.broker.place(order("s1", type="stop", stop_price=1550.05))
        state = await h.broker.place(
            OrderRequest("NIFTY", "sell", 150, "stop_limit", 23900.0, 23910.3, "sl1")
        )
    assert state.status == "working" and h.broker.tags["sl1"] == state.order_id
    base = {"exchange": "NSE", "tradingsymbol": "INFY", "product": "MIS", "validity": "DAY"}
    expected = [
        {**base, "transaction_type": "BUY", "order_type": "MARKET", "quantity": "1",
         "market_protection": "-1", "tag": "m1"},
        {**base, "transaction_type": "SELL", "order_type": "LIMIT", "quantity": "1",
         "price": "1600.10", "tag": "l1"},
        {**base, "transaction_type": "BUY", "order_type": "SL-M", "quantity": "1",
         "trigger_price": "1550.05", "market_protection": "-1", "tag": "s1"},
        {"exchange": "NFO", "tradingsymbol": "NIFTY25DECFUT", "product": "MIS",
         "validity": "DAY", "transaction_type": "SELL", "order_type": "SL", "quantity": "150",
         "price": "23900.0", "trigger_price": "23910.3", "tag": "sl1"},
    ]  # fmt: skip
    sent = fake.orders
    assert [(r["method"], r["path"]) for r in sent] == [("POST", "/orders/regular")] * 4
    assert [r["form"] for r in sent] == expected
    for request in sent:
        assert request["headers"]["x-kite-version"] == "3"
        assert request["headers"]["authorization"] == f"token {fake.api_key}:{fake.access_token}"
        assert request["headers"]["content-type"] == "application/x-www-form-urlencoded"


@run_async
async def test_malformed_orders_raise_order_error_and_send_nothing(fake, env, tmp_path) -> None:
    async with Harness(fake, tmp_path) as h:
        for bad, field in (
            (order("x1", type="limit", limit_price=1500.03), "limit_price"),
            (OrderRequest("NIFTY", "buy", 70, tag="x2"), "qty"),
            (order("x3", symbol="TCS"), "symbol"),
            (order(None), "tag"),
        ):
            with pytest.raises(OrderError) as caught:
                await h.broker.place(bad)
            assert caught.value.field == field
    assert fake.orders == []


@run_async
async def test_a_refused_order_is_rejected_with_the_brokers_own_message(fake, env, tmp_path):
    message = "Insufficient funds. Required margin is 95417.84 but available margin is 74251.80."
    async with Harness(fake, tmp_path) as h:
        fake.reject_next(message)
        state = await h.broker.place(order("r1"))
        update = await h.next()
    assert (state.status, state.reason, state.tag) == ("rejected", message, "r1")
    assert (update.seq, update.kind, update.reason, update.order) == (0, "rejected", message, state)
    assert "r1" not in h.broker.tags


@run_async
async def test_a_lost_answer_is_never_resent_the_order_is_found_by_its_tag(fake, env, tmp_path):
    async with Harness(fake, tmp_path, timeout_s=0.3) as h:
        fake.stall_next(1.0)
        state = await h.broker.place(order("lost1", type="limit", limit_price=1400.0))
        assert state.status == "working" and h.broker.tags["lost1"] == state.order_id
        again = await h.broker.place(order("lost1", type="limit", limit_price=1400.0))
        assert again.order_id == state.order_id
        fake.stall_next(1.0, place=False)
        with pytest.raises(BrokerError) as caught:
            await h.broker.place(order("lost2", type="limit", limit_price=1400.0))
        assert caught.value.status == 0
    posts = [r["form"]["tag"] for r in fake.orders]
    assert posts == ["lost1", "lost2"]


# -- errors, expiry, rate limits -----------------------------------------------------------------


@run_async
async def test_an_expired_token_alerts_once_and_renew_takes_the_new_token(fake, env, tmp_path):
    async with Harness(fake, tmp_path) as h:
        fake.expire_token()
        for _ in range(2):
            with pytest.raises(TokenExpired, match="access_token"):
                await h.broker.positions()
        with pytest.raises(TokenExpired):
            await h.broker.place(order("t1"))
        assert h.codes() == ["token_expired"]
        assert h.alerts[0][1] == "Incorrect `api_key` or `access_token`."
        assert await h.broker.renew() is False  # the token file still holds the old token
        fake.set_token("renewedtoken")
        write_token(env, "renewedtoken")
        assert await h.broker.renew() is True
        assert h.codes() == ["token_expired", "token_renewed"]
        assert await h.broker.positions() == {}
        assert fake.requests[-1]["headers"]["authorization"] == f"token {fake.api_key}:renewedtoken"
        fake.expire_token()  # a second expiry is alerted again
        with pytest.raises(TokenExpired):
            await h.broker.positions()
        assert h.codes() == ["token_expired", "token_renewed", "token_expired"]


@run_async
async def test_429s_back_off_and_succeed_and_persistent_ones_raise(
    fake, env, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(live_base, "BACKOFF_429_S", 0.05)  # first pause; doubles per 429
    async with Harness(fake, tmp_path) as h:
        fake.throttle(2)
        state = await h.broker.place(order("q1", type="limit", limit_price=1400.0))
        assert state.status == "working"
        assert [r["status"] for r in fake.orders] == [429, 429, 200]
        stamps = [r["ts"] for r in fake.orders]
        assert stamps[1] - stamps[0] >= 0.05 and stamps[2] - stamps[1] >= 0.1
        assert h.codes() == ["rate_limited", "rate_limited"]
        fake.throttle(100)
        with pytest.raises(RateLimited):
            await h.broker.place(order("q2", type="limit", limit_price=1400.0))
        fake.throttle(0)
        assert [o.tag for o in await h.broker.open_orders()] == ["q1"]


@run_async
async def test_orders_leave_at_most_10_per_second_after_a_burst_of_10(fake, env, tmp_path):
    async with Harness(fake, tmp_path) as h:
        orders = [order(f"b{k}", type="limit", limit_price=1400.0) for k in range(25)]
        await asyncio.gather(*(h.broker.place(o) for o in orders))
    stamps = sorted(r["ts"] for r in fake.orders)
    assert len(stamps) == 25
    # a bucket of 10 refilling at 10/s lets at most 10 + 10 * t orders out in any t seconds
    for first in range(len(stamps)):
        for last in range(first, len(stamps)):
            window = stamps[last] - stamps[first]
            assert last - first + 1 <= 10 + 10 * window + 1, (first, last, window)
    assert stamps[9] - stamps[0] < 0.5  # the burst itself is not held back
    assert 1.3 < stamps[-1] - stamps[0] < 3.0


# -- start-up ------------------------------------------------------------------------------------


@run_async
async def test_start_stops_on_a_mapping_kite_does_not_resolve(fake, env, tmp_path) -> None:
    wrong_token = [INSTRUMENTS[0], {**INSTRUMENTS[1], "kite": {**NIFTY_FUT, "instrument_token": 7}}]
    with pytest.raises(ConfigError) as caught:
        await Harness(fake, tmp_path, instruments=wrong_token).broker.start()
    assert caught.value.path == "instruments[1].kite"
    assert "NFO:NIFTY25DECFUT" in str(caught.value) and "13368834" in str(caught.value)
    unknown = [{**INSTRUMENTS[0], "kite": {**INFY, "tradingsymbol": "INFX"}}, INSTRUMENTS[1]]
    with pytest.raises(ConfigError) as caught:
        await Harness(fake, tmp_path, instruments=unknown).broker.start()
    assert caught.value.path == "instruments[0].kite" and "NSE:INFX" in str(caught.value)
    quotes = [r for r in fake.requests if r["path"] == "/quote/ltp"]
    assert [r["query"]["i"] for r in quotes] == [
        ["NSE:INFY", "NFO:NIFTY25DECFUT"],
        ["NSE:INFX", "NFO:NIFTY25DECFUT"],
    ]


@run_async
async def test_start_without_any_token_says_to_log_in(fake, env, tmp_path) -> None:
    env.unlink()
    with pytest.raises(ConfigError, match="python run.py login kite"):
        await Harness(fake, tmp_path).broker.start()
    assert fake.requests == []


# -- orders, positions and the update stream -----------------------------------------------------


@run_async
async def test_partial_fills_stream_once_with_cumulative_qty_and_average_price(
    fake, env, tmp_path
) -> None:
    ticks: list[tuple[int, float]] = []

    def deliver(batch, n, recv_ns) -> None:
        ticks.extend(zip(batch.idx[:n].tolist(), batch.price[:n].tolist(), strict=True))

    async with Harness(fake, tmp_path) as h:
        feed = h.broker.market_feed({"INFY": 0, "NIFTY": 1}, deliver, lambda state: None)
        running = asyncio.create_task(feed.run())
        await until(lambda: fake.subscribed().get(INFY["instrument_token"]) is not None)
        fake.set_fill_size("INFY", 2)
        state = await h.broker.place(order("p1", qty=5))  # 2 fill at once at 1500
        fake.push_ticks("INFY", [1502.0])  # 2 more
        fake.push_ticks("INFY", [1504.0])  # the last one
        updates = [await h.next() for _ in range(3)]
        await until(lambda: len(fake.order_messages) == 3)
        # both sources have reported every change; replaying them all changes nothing
        for message in fake.order_messages:
            h.broker._on_ticker_order(message["data"])
        assert polls(fake) >= 1  # the poller ran alongside the ticker
        feed.stop()
        await asyncio.wait_for(running, 5)
    assert [u.seq for u in updates] == [0, 1, 2]
    assert [u.kind for u in updates] == ["filled"] * 3
    assert [u.order.filled_qty for u in updates] == [2, 4, 5]
    assert [u.order.fill_price for u in updates] == pytest.approx([1500.0, 1501.0, 1501.6])
    assert [u.order.status for u in updates] == ["working", "working", "filled"]
    assert all(u.order.order_id == state.order_id and u.order.tag == "p1" for u in updates)
    assert h.broker._tracker.stream.queued == 0
    assert (0, 1502.0) in ticks and (0, 1504.0) in ticks


@run_async
async def test_polling_alone_reports_our_orders_and_ignores_others(fake, env, tmp_path) -> None:
    kite = KiteConnect(fake.api_key, access_token=fake.access_token, root=fake.rest_url)
    async with Harness(fake, tmp_path) as h:
        resting = await h.broker.place(order("own0", type="limit", limit_price=1000.0))
        assert (await h.next()).order.order_id == resting.order_id  # it keeps the poller going
        state = await h.broker.place(order("own1", type="limit", limit_price=1490.0, qty=3))
        accepted = await h.next()
        foreign = kite.place_order(
            variety="regular", exchange="NSE", tradingsymbol="TCS", transaction_type="SELL",
            quantity=2, product="MIS", order_type="MARKET", market_protection=-1, tag="manual",
        )  # fmt: skip
        fake.set_ltp("INFY", 1489.0)
        filled = await h.next()
        kite.place_order(
            variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
            quantity=1, product="MIS", order_type="LIMIT", price=1000.0,
        )  # fmt: skip
        seen = polls(fake)
        await until(lambda: polls(fake) >= seen + 1)  # a poll that saw both others
        assert h.broker._tracker.stream.queued == 0  # nothing about the others
        open_orders = await h.broker.open_orders()
        positions = await h.broker.positions()
        assert await h.broker.order_by_tag("nope") is None
        found = await h.broker.order_by_tag("manual")
    assert (accepted.kind, accepted.order.status, accepted.order.qty) == ("accepted", "working", 3)
    assert (filled.kind, filled.order.filled_qty, filled.order.fill_price) == ("filled", 3, 1490.0)
    assert filled.order.order_id == state.order_id and filled.order.status == "filled"
    assert [(o.symbol, o.limit_price, o.tag) for o in open_orders] == [
        ("INFY", 1000.0, "own0"),
        ("INFY", 1000.0, None),
    ]
    assert positions == {
        "INFY": {"side": "long", "qty": 3, "entry_price": 1490.0},
        "TCS": {"side": "short", "qty": 2, "entry_price": 4000.0},
    }
    assert found is not None and found.order_id == foreign and h.broker.tags["manual"] == foreign


@run_async
async def test_modify_trigger_and_cancel_each_stream_one_update(fake, env, tmp_path) -> None:
    async with Harness(fake, tmp_path) as h:
        stop = await h.broker.place(
            order("sl1", side="sell", type="stop_limit", stop_price=1480.0, limit_price=1470.0)
        )
        assert (await h.next()).kind == "accepted"
        changed = await h.broker.modify(stop.order_id, qty=4, stop_price=1475.0)
        assert (changed.qty, changed.stop_price, changed.limit_price) == (4, 1475.0, 1470.0)
        modified = await h.next()
        fake.set_ltp("INFY", 1465.0)  # triggers; a sell limit of 1470 rests above 1465
        triggered = await h.next()
        with pytest.raises(OrderError, match="limit_price"):
            await h.broker.modify(stop.order_id, limit_price=1470.03)  # off the 0.05 grid
        cancelled = await h.broker.cancel(stop.order_id)
        final = await h.next()
        with pytest.raises(OrderError, match="not open"):
            await h.broker.cancel(stop.order_id)
        with pytest.raises(OrderError, match="not open"):
            await h.broker.modify(stop.order_id, qty=2)
    assert fake.orders[1]["method"] == "PUT"
    assert fake.orders[1]["path"] == f"/orders/regular/{stop.order_id}"
    assert fake.orders[1]["form"] == {
        "order_type": "SL",
        "quantity": "4",
        "price": "1470.00",
        "trigger_price": "1475.00",
    }
    assert fake.orders[2]["method"] == "DELETE"
    assert (modified.kind, modified.order.qty, modified.order.stop_price) == ("modified", 4, 1475.0)
    assert (triggered.kind, triggered.order.triggered) == ("triggered", True)
    assert (final.kind, final.order.status) == ("cancelled", "cancelled")
    assert cancelled.status == "cancelled" and cancelled.order_id == stop.order_id
    assert [u.seq for u in (modified, triggered, final)] == [1, 2, 3]


@run_async
async def test_cancelling_an_order_that_just_filled_is_an_order_error(fake, env, tmp_path) -> None:
    async with Harness(fake, tmp_path) as h:
        state = await h.broker.place(order("race1", type="limit", limit_price=1490.0))
        fake.set_ltp("INFY", 1489.0)  # fills at Kite; the adapter may not have seen it yet
        with pytest.raises(OrderError, match="not open"):
            await h.broker.cancel(state.order_id)
        first = await h.next()  # a poll may have seen it open before the fill, or not
        kinds = [first.kind] if first.kind == "filled" else [first.kind, (await h.next()).kind]
    assert kinds in (["filled"], ["accepted", "filled"])
    assert [r["method"] for r in fake.orders] in (["POST"], ["POST", "DELETE"])
