"""Helpers for the Upstox adapter tests: instrument keys, brokers at the fake, the official SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import upstox_client

from engine.brokers.upstox.broker import UpstoxBroker
from tests.fakes.upstox import TOKEN_ENV, FakeUpstox, upstox_config

#: instrument keys the fake knows (SBIN is not in the broker's config)
INFY, RELIANCE, SBIN = "NSE_EQ|INE009A01021", "NSE_EQ|INE002A01018", "NSE_EQ|INE062A01020"
#: the broker's instruments: INFY and RELIANCE
INSTRUMENTS = [
    {"symbol": "INFY", "tick_size": 0.05, "upstox": {"instrument_key": INFY}},
    {"symbol": "RELIANCE", "tick_size": 0.05, "upstox": {"instrument_key": RELIANCE}},
]


def broker_factory(
    fake: FakeUpstox, tmp_path: Path, alerts: list[tuple[str, str]]
) -> Callable[..., UpstoxBroker]:
    """Return a maker of brokers trading :data:`INSTRUMENTS` at ``fake``, alerting to ``alerts``.

    The maker's keyword arguments are ``broker`` settings; the token must already be in the
    environment (``TOKEN_ENV``).
    """

    def make(**broker) -> UpstoxBroker:
        cfg = upstox_config(fake, tmp_path, INSTRUMENTS, **broker)
        return UpstoxBroker(cfg, lambda code, message: alerts.append((code, message)))

    return make


class Updates:
    """Collect a broker's update stream in a background task."""

    def __init__(self, broker: UpstoxBroker) -> None:
        self.seen: list = []
        self.task = asyncio.create_task(self._follow(broker))

    async def _follow(self, broker: UpstoxBroker) -> None:
        async for update in broker.updates():
            self.seen.append(update)

    def kinds(self) -> list[str]:
        """Return the kinds of the updates seen so far."""
        return [update.kind for update in self.seen]


def sdk_client(fake: FakeUpstox) -> upstox_client.ApiClient:
    """Return an official SDK client of ``fake`` (REST and order host) with its token."""
    conf = upstox_client.Configuration()
    conf.host = conf.order_host = fake.rest_url
    conf.access_token = fake.access_token
    return upstox_client.ApiClient(conf)


def sdk_order(**fields) -> upstox_client.PlaceOrderRequest:
    """Return the SDK's place request: an intraday DAY market buy of one INFY unless told."""
    request = {
        "quantity": 1,
        "product": "I",
        "validity": "DAY",
        "price": 0.0,
        "instrument_token": INFY,
        "order_type": "MARKET",
        "transaction_type": "BUY",
        "disclosed_quantity": 0,
        "trigger_price": 0.0,
        "is_amo": False,
    }
    return upstox_client.PlaceOrderRequest(**(request | fields))


# -- fixtures of the broker tests (loaded with ``pytest_plugins``) -----------------------------


@pytest.fixture
def fake():
    with FakeUpstox({INFY: "INFY", RELIANCE: "RELIANCE", SBIN: "SBIN"}) as server:
        yield server


@pytest.fixture
def alerts() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def make_broker(fake, tmp_path, monkeypatch, alerts):
    monkeypatch.setenv(TOKEN_ENV, fake.access_token)
    return broker_factory(fake, tmp_path, alerts)


@pytest.fixture
def broker(make_broker) -> UpstoxBroker:
    return make_broker()
