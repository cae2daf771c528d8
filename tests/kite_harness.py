"""Helpers for the Kite adapter tests: the instruments, a started KiteBroker and its alerts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.brokers.base import OrderRequest
from engine.brokers.kite.broker import KiteBroker
from tests.conftest import make_config
from tests.fakes.kite import FakeKite

#: Kite's ids of an NSE equity and an NFO future
INFY = {"tradingsymbol": "INFY", "exchange": "NSE", "instrument_token": 408065}
NIFTY_FUT = {"tradingsymbol": "NIFTY25DECFUT", "exchange": "NFO", "instrument_token": 13368834}
#: known to the fake but not configured: positions in it keep Kite's name
TCS = {"tradingsymbol": "TCS", "exchange": "NSE", "instrument_token": 2953217}
#: what the fake Kite knows, with last prices
FAKE_INSTRUMENTS = [
    {**INFY, "last_price": 1500.0},
    {**NIFTY_FUT, "last_price": 24000.0},
    {**TCS, "last_price": 4000.0},
]
#: the engine's instruments: INFY (row 0) and the future as NIFTY (row 1, lots of 75)
INSTRUMENTS = [
    {"symbol": "INFY", "tick_size": 0.05, "lot_size": 1, "kite": INFY},
    {"symbol": "NIFTY", "tick_size": 0.1, "lot_size": 75, "kite": NIFTY_FUT},
]


class Harness:
    """A started KiteBroker, its alerts and its update stream."""

    def __init__(self, fake: FakeKite, tmp_path: Path, instruments=INSTRUMENTS, **broker):
        self.alerts: list[tuple[str, str]] = []
        settings = {
            "name": "kite",
            "base_url": fake.rest_url,
            "ws_url": fake.ws_url,
            "token_path": str(tmp_path / "kite_token"),
            **broker,
        }
        self.cfg = make_config(
            instruments=instruments,
            broker=settings,
            feed={"name": "broker"},
            journal={"path": str(tmp_path / "journal.jsonl")},
        )
        self.broker = KiteBroker(self.cfg, lambda code, msg: self.alerts.append((code, msg)))
        self.stream = self.broker.updates()

    async def __aenter__(self) -> Harness:
        await self.broker.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.broker.close()

    async def next(self, timeout: float = 5.0):
        return await asyncio.wait_for(anext(self.stream), timeout)

    def codes(self) -> list[str]:
        return [code for code, _ in self.alerts]


def order(tag: str, **fields) -> OrderRequest:
    """Return a market buy of 1 INFY tagged ``tag``, with ``fields`` changed."""
    return OrderRequest(**{"symbol": "INFY", "side": "buy", "qty": 1, "tag": tag, **fields})


def polls(fake: FakeKite) -> int:
    """Return how many times ``GET /orders`` reached ``fake``."""
    return sum(1 for r in fake.requests if r["method"] == "GET" and r["path"] == "/orders")
