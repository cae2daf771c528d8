"""The monitoring page in a real browser against a real engine process (`python run.py`).

Headless Debian chromium driven by Playwright; the page's DOM ids and ``window.otrade`` hooks
are the contract (see web/static/app.js).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import wait_until
from tests.fakes.kite import FakeKite
from tests.kite_live import CROSS_UP, INFY, start

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
expect = sync_api.expect

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# background networking off: this machine refuses outside connections and chromium's own
# (updates, sync, field trials) would otherwise stall or fail the launch
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: milliseconds Playwright waits for the page to reach a state
UI_TIMEOUT_MS = 15_000


@dataclass
class EngineProcess:
    url: str
    token: str
    process: subprocess.Popen
    log: Path

    def status(self) -> dict:
        return httpx.get(f"{self.url}api/status", timeout=5).json()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _install_chromium() -> None:
    if CHROMIUM.exists():
        return
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip(f"{CHROMIUM} is missing and apt-get is unavailable to install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "chromium"]
    if subprocess.run(install, env=env, capture_output=True, timeout=1800).returncode != 0:
        subprocess.run([apt, "update"], env=env, capture_output=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, f"apt-get install chromium failed:\n{result.stderr}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    _install_chromium()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Iterator[EngineProcess]:
    """`run.py` on a fast sim feed with a short EMA cross, so trades come within seconds."""
    work = tmp_path_factory.mktemp("engine")
    port = _free_port()
    config = {
        "feed": {"name": "sim", "ticks_per_second": 2000},
        "session": {"enabled": False},
        "strategy": {"fast": 3, "slow": 8},
        "journal": {"path": str(work / "journal.jsonl")},
        "web": {"port": port},
    }
    (work / "config.json").write_bytes(orjson.dumps(config))
    token = secrets.token_urlsafe(16)
    log = work / "engine.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), "--config", str(work / "config.json")],
            cwd=work,
            env={**os.environ, "OTRADE_TOKEN": token},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = EngineProcess(f"http://127.0.0.1:{port}/", token, process, log)

    def answering() -> bool:
        assert process.poll() is None, f"the engine exited early:\n{running.output()}"
        try:
            return running.status()["ticks"] >= 0
        except httpx.TransportError:
            return False

    try:
        wait_until(answering, timeout=120, interval=0.1)  # the first run compiles the kernels
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"the engine ignored SIGTERM:\n{running.output()}")
    assert process.returncode == 0, running.output()


def _open(browser: sync_api.Browser, url: str) -> tuple[sync_api.Page, list[str]]:
    """A fresh context (its own sessionStorage) on ``url``; page errors collect in the list."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    return page, errors


def test_the_page_shows_the_engine_live_and_pauses_it(browser, engine, tmp_path):
    dialogs: list[str] = []

    def confirm(dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()

    page, errors = _open(browser, f"{engine.url}#token={engine.token}")
    page.on("dialog", confirm)
    conn, halt = page.locator("#conn"), page.locator("#halt")
    expect(conn).to_have_text("connected", timeout=UI_TIMEOUT_MS)
    assert "token" not in page.url  # taken from the fragment, then cleared from it
    assert page.evaluate("sessionStorage.getItem('otrade.token')") == engine.token
    # two points: the chart keeps advancing, it did not just draw the connect snapshot
    page.wait_for_function("window.otrade.points('NIFTY') > 1", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#chart-NIFTY")).to_be_visible()
    expect(halt).to_have_text("running")
    expect(page.locator("#feed-state")).to_contain_text("running")
    assert int(page.locator("#ticks").inner_text().replace(",", "")) > 0

    page.click("#btn-pause")
    expect(halt).to_have_text("paused", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#banner")).to_be_visible()
    assert engine.status()["paused"] is True
    assert dialogs and dialogs[-1].startswith("confirm: Pause")

    page.click("#btn-resume")
    expect(halt).to_have_text("running", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#banner")).to_be_hidden()
    assert engine.status()["paused"] is False
    assert len(dialogs) == 2

    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert errors == []
    page.context.close()


def test_a_wrong_token_shows_unauthorized(browser, engine):
    page, errors = _open(browser, f"{engine.url}#token=not-{engine.token}")
    expect(page.locator("#conn")).to_have_text("unauthorized", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#token-dialog")).to_be_visible()  # asks for the token again
    assert errors == []
    page.context.close()


def test_a_live_position_shows_its_legs_at_the_broker_and_when_it_is_unprotected(browser, tmp_path):
    with FakeKite([{**INFY, "last_price": 100.0}]) as fake:
        live = start(tmp_path, fake)
        try:
            page, errors = _open(browser, f"http://127.0.0.1:{live.port}/#token={live.token}")
            expect(page.locator("#conn")).to_have_text("connected", timeout=UI_TIMEOUT_MS)
            wait_until(lambda: live.status()["feed"]["state"] == "connected", 30)
            fake.throttle_next_of("SL-M", 3.0)  # no stop rests for 3 s
            fake.push_ticks("INFY", CROSS_UP)
            positions = page.locator("#positions")
            expect(positions).to_contain_text("UNPROTECTED", timeout=UI_TIMEOUT_MS)
            expect(positions.locator(".alarm")).to_be_visible()
            expect(positions).to_contain_text("protected", timeout=UI_TIMEOUT_MS)
            expect(positions).to_contain_text(re.compile(r"stop 100\.50? working"))
            expect(positions).to_contain_text(re.compile(r"target 102(\.00?)? working"))
            expect(positions.locator(".alarm")).to_have_count(0)
            page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
            assert errors == []
            page.context.close()
        finally:
            assert live.stop() == 0
