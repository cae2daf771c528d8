"""Kite Connect login: ``python run.py login kite`` turns a request token into an access token.

Kite's login happens in a browser: the user opens the login URL, signs in, and Kite redirects
to the app's registered URL with a one-use ``request_token``. This module prints the URL, reads
the token (or the whole redirect URL) from stdin, exchanges it at ``POST /session/token`` with
``checksum = sha256(api_key + request_token + api_secret)`` and stores the day's access token
in the token file, which is created with mode 0600 and never readable by anyone else, not even
for a moment. The token is never printed.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Literal, TextIO

import httpx

from engine.broker_config import DEFAULT_ENV, DEFAULT_URLS
from engine.brokers.kite.rest import kite_error, payload
from engine.brokers.live_base import BrokerError, secret
from engine.config_models import EngineConfig

#: where the user signs in; fixed, Kite has no other login host
LOGIN_URL = "https://kite.zerodha.com/connect/login?v=3&api_key={api_key}"
#: header naming the API version, sent with every Kite request
KITE_VERSION = {"X-Kite-Version": "3"}
#: the request token inside a pasted redirect URL
_REQUEST_TOKEN_IN_URL = re.compile(r"[?&]request_token=([^&#\s]+)")
#: a bare request token: Kite's are alphanumeric
_BARE_TOKEN = re.compile(r"^[A-Za-z0-9]+$")

EnvKey = Literal["api_key", "api_secret", "access_token"]


def env_name(cfg: EngineConfig, which: EnvKey) -> str:
    """Return the environment variable holding Kite's ``which``.

    The config's override counts only when the configured broker is Kite; otherwise Kite's
    default name (``KITE_API_KEY``, ...) is used, so ``login kite`` works before the switch.
    """
    if cfg.broker.name == "kite":
        return cfg.broker.env_name(which)
    return DEFAULT_ENV["kite"][("api_key", "api_secret", "access_token").index(which)]


def rest_url(cfg: EngineConfig) -> str:
    """Return Kite's REST base URL: ``broker.base_url`` when the broker is Kite, else Kite's."""
    if cfg.broker.name == "kite":
        return cfg.broker.rest_url
    return DEFAULT_URLS["kite"][0]


def token_path(cfg: EngineConfig) -> Path:
    """Return the token file: ``broker.token_path``, else ``<journal dir>/kite_token``."""
    if cfg.broker.name == "kite" and cfg.broker.token_path is not None:
        return Path(cfg.broker.token_path)
    return Path(cfg.journal.path).parent / "kite_token"


def read_token(path: Path) -> str:
    """Return the token stored at ``path``, or "" when there is none."""
    try:
        return path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def stored_tokens(cfg: EngineConfig) -> list[str]:
    """Return the access tokens on hand: the variable's, then the token file's (no repeats)."""
    found = (os.environ.get(env_name(cfg, "access_token"), "").strip(), read_token(token_path(cfg)))
    return list(dict.fromkeys(token for token in found if token))


def write_token(path: Path, token: str) -> None:
    """Store ``token`` at ``path`` with mode 0600, replacing any previous file atomically.

    The new file is created 0600 (never wider, whatever the umask) under a temporary name
    and renamed over ``path``, so a reader sees the old token or the new one, never a part.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may only have narrowed it; make it exact
        os.write(fd, token.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def login_url(api_key: str) -> str:
    """Return the URL where the user signs in to Kite."""
    return LOGIN_URL.format(api_key=api_key)


def request_token_from(text: str) -> str:
    """Return the request token in ``text``: a bare token or a redirect URL carrying one.

    Returns "" when there is none.
    """
    text = text.strip()
    found = _REQUEST_TOKEN_IN_URL.search(text)
    if found:
        return found.group(1)
    return text if _BARE_TOKEN.match(text) else ""


def checksum(api_key: str, request_token: str, api_secret: str) -> str:
    """Return Kite's session checksum, ``sha256(api_key + request_token + api_secret)``."""
    return hashlib.sha256((api_key + request_token + api_secret).encode()).hexdigest()


def exchange_request_token(
    base_url: str, api_key: str, request_token: str, api_secret: str, timeout_s: float
) -> str:
    """Exchange a request token at ``POST /session/token``; return the access token.

    Raises
    ------
    BrokerError
        With Kite's own message when it refuses, or the transport's when it cannot be reached.
    """
    form = {
        "api_key": api_key,
        "request_token": request_token,
        "checksum": checksum(api_key, request_token, api_secret),
    }
    try:
        with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
            response = client.post("/session/token", data=form, headers=KITE_VERSION)
    except httpx.TransportError as error:
        raise BrokerError(f"cannot reach {base_url}: {type(error).__name__}: {error}") from error
    refused = kite_error(response)
    if refused is not None:
        raise refused
    try:
        token = payload(response)["access_token"]
    except (ValueError, KeyError, TypeError) as error:
        raise BrokerError(f"{base_url}/session/token: no access_token in the answer") from error
    if not isinstance(token, str) or not token:
        raise BrokerError(f"{base_url}/session/token: empty access_token")
    return token


def login(
    cfg: EngineConfig,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the login: print the URL, read the request token, store the access token.

    Parameters
    ----------
    cfg : EngineConfig
        Gives the credentials' variable names, the REST URL and the token file.
    stdin, stdout, stderr : TextIO, optional
        Default to the process's streams.

    Returns
    -------
    int
        0 when the token was stored, 2 when the login failed (one line on stderr says why).

    Raises
    ------
    ConfigError
        When the API key or secret variable is not set.
    """
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    api_key = secret(env_name(cfg, "api_key"), "broker.api_key_env")
    api_secret = secret(env_name(cfg, "api_secret"), "broker.api_secret_env")
    path = token_path(cfg)
    print("Log in to Kite at this URL, then paste the request token or the whole", file=stdout)
    print("URL Kite redirected you to:", file=stdout)
    print(login_url(api_key), file=stdout, flush=True)
    request_token = request_token_from(stdin.readline())
    if not request_token:
        print("otrade: kite login: no request_token given", file=stderr)
        return 2
    try:
        access_token = exchange_request_token(
            rest_url(cfg), api_key, request_token, api_secret, cfg.broker.timeout_s
        )
    except BrokerError as error:
        print(f"otrade: kite login failed: {error.message}", file=stderr)
        return 2
    try:
        write_token(path, access_token)
    except OSError as error:
        print(f"otrade: kite login: cannot write {path}: {error.strerror}", file=stderr)
        return 2
    print(f"otrade: Kite access token written to {path} (mode 0600)", file=stdout)
    return 0
