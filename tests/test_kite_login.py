"""``python run.py login kite`` as a real process against the fake Kite, and the token file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from engine.brokers.kite.login import checksum, request_token_from, write_token
from tests.conftest import config_dict
from tests.fakes.kite import FakeKite

ROOT = Path(__file__).resolve().parents[1]
INFY = {"tradingsymbol": "INFY", "exchange": "NSE", "instrument_token": 408065}


@pytest.fixture
def fake():
    with FakeKite([INFY]) as server:
        yield server


def login(fake: FakeKite, tmp_path: Path, typed: str, **broker) -> subprocess.CompletedProcess:
    """Run the login with ``typed`` on stdin; the config points Kite's REST at the fake."""
    data = config_dict(
        instruments=[{"symbol": "INFY", "kite": INFY}],
        broker={"name": "kite", "base_url": fake.rest_url, **broker},
        feed={"name": "broker"},
        journal={"path": str(tmp_path / "var" / "journal.jsonl")},
    )
    config = tmp_path / "engine.json"
    config.write_bytes(orjson.dumps(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITE_")}
    env |= {"KITE_API_KEY": fake.api_key, "KITE_API_SECRET": fake.api_secret}
    command = [sys.executable, str(ROOT / "run.py"), "login", "kite", "--config", str(config)]
    return subprocess.run(
        command, input=typed, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60
    )


def test_login_stores_the_token_0600_from_a_pasted_redirect_url(fake, tmp_path) -> None:
    redirect = (
        f"https://example.com/kite?action=login&status=success&request_token={fake.request_token}"
    )
    done = login(fake, tmp_path, redirect + "\n", token_path=str(tmp_path / "secret" / "kite"))
    assert done.returncode == 0, done.stderr
    token_file = tmp_path / "secret" / "kite"
    assert token_file.read_text() == fake.access_token + "\n"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert f"https://kite.zerodha.com/connect/login?v=3&api_key={fake.api_key}" in done.stdout
    assert str(token_file) in done.stdout
    assert fake.access_token not in done.stdout + done.stderr
    exchange = [r for r in fake.requests if r["path"] == "/session/token"]
    assert [r["form"]["checksum"] for r in exchange] == [
        checksum(fake.api_key, redirect.rsplit("=", 1)[1], fake.api_secret)
    ]


def test_a_bare_token_goes_to_the_default_file_beside_the_journal(fake, tmp_path) -> None:
    done = login(fake, tmp_path, f"  {fake.request_token}  \n")
    assert done.returncode == 0, done.stderr
    token_file = tmp_path / "var" / "kite_token"
    assert token_file.read_text().strip() == fake.access_token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert fake.access_token not in done.stdout + done.stderr


def test_a_bad_request_token_exits_2_with_kites_message_and_writes_nothing(fake, tmp_path):
    done = login(fake, tmp_path, "abc123\n")
    assert done.returncode == 2
    assert done.stderr.strip() == "otrade: kite login failed: Token is invalid or has expired."
    empty = login(fake, tmp_path, "\n")
    assert empty.returncode == 2 and "no request_token" in empty.stderr
    assert not (tmp_path / "var" / "kite_token").exists()
    assert fake.access_token not in done.stdout + done.stderr + empty.stdout + empty.stderr


def test_missing_credentials_are_a_config_error(fake, tmp_path, monkeypatch) -> None:
    config = tmp_path / "engine.json"
    config.write_bytes(orjson.dumps(config_dict()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITE_")}
    command = [sys.executable, str(ROOT / "run.py"), "login", "kite", "--config", str(config)]
    done = subprocess.run(
        command, input="x\n", capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60
    )
    assert done.returncode == 2 and "KITE_API_KEY" in done.stderr


def test_the_token_file_is_replaced_never_widened(tmp_path) -> None:
    token_file = tmp_path / "kite_token"
    token_file.write_text("old\n")
    token_file.chmod(0o644)
    previous = os.umask(0)
    try:
        write_token(token_file, "newtoken")
    finally:
        os.umask(previous)
    assert token_file.read_text() == "newtoken\n"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["kite_token"]


@pytest.mark.parametrize(
    ("typed", "token"),
    [
        ("Xy12ab\n", "Xy12ab"),
        ("http://127.0.0.1/cb?request_token=Tok9&action=login&status=success", "Tok9"),
        ("https://x.example/cb?status=success&request_token=Tok9#frag", "Tok9"),
        ("https://x.example/cb?status=cancelled", ""),
        ("two words", ""),
    ],
)
def test_the_request_token_is_read_from_a_bare_token_or_a_redirect_url(typed, token) -> None:
    assert request_token_from(typed) == token
