"""Running the ProjectX adapter against the fake gateway in tests: config, start, alerts."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from engine.brokers.projectx.broker import ProjectXBroker
from tests.conftest import make_config
from tests.fakes.projectx import FakeProjectX

#: the active E-mini contract of the fake
NQ = "CON.F.US.ENQ.H25"
#: an instrument resolving to :data:`NQ` by ``contract_search``
NQ_SEARCH = {"symbol": "NQ", "tick_size": 0.25, "projectx": {"contract_search": "NQ"}}


def polls(fake: FakeProjectX) -> int:
    """Return the ``Order/searchOpen`` requests the fake received."""
    return sum(r["path"] == "/api/Order/searchOpen" for r in fake.requests)


def px_config(fake: FakeProjectX, tmp_path, instruments=(NQ_SEARCH,), **broker):
    """Return a config trading ``instruments`` through ``fake`` (``broker`` adds fields)."""
    return make_config(
        instruments=list(instruments),
        broker={"name": "projectx", "base_url": fake.rest_url, "ws_url": fake.ws_url, **broker},
        feed={"name": "broker"},
        journal={"path": str(tmp_path / "journal.jsonl")},
    )


class Alerts(list):
    """An alert callback recording ``(code, message)`` pairs."""

    def __call__(self, code: str, message: str) -> None:
        self.append((code, message))

    def codes(self) -> list[str]:
        """Return the codes alerted, in order."""
        return [code for code, _ in self]


@contextlib.asynccontextmanager
async def running(cfg, alerts: Alerts | None = None):
    """Start a ProjectXBroker on ``cfg``, yield it, close it."""
    broker = ProjectXBroker(cfg, alerts if alerts is not None else Alerts())
    await broker.start()
    try:
        yield broker
    finally:
        await broker.close()


async def start_and_close(cfg) -> None:
    """Start a ProjectXBroker on ``cfg`` (raising what start raises) and close it."""
    broker = ProjectXBroker(cfg, Alerts())
    try:
        await broker.start()
    finally:
        await broker.close()


async def next_updates(broker: ProjectXBroker, n: int) -> list:
    """Return the next ``n`` updates of ``broker``, each within 3 s."""
    stream = broker.updates()
    return [await asyncio.wait_for(anext(stream), 3) for _ in range(n)]


# -- fixtures of the broker tests (loaded with ``pytest_plugins``) -----------------------------


@pytest.fixture
def fake(monkeypatch):
    with FakeProjectX() as server:
        monkeypatch.setenv("PROJECTX_USERNAME", server.user_name)
        monkeypatch.setenv("PROJECTX_API_KEY", server.api_key)
        yield server
