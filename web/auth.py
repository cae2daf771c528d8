"""The bearer token guarding every mutating endpoint and the WebSocket."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fastapi import HTTPException, Request, WebSocket

#: WebSocket close codes for a missing and a wrong token (4000 + the HTTP status)
WS_UNAUTHORIZED, WS_FORBIDDEN = 4401, 4403


def resolve_token(env_name: str, token_dir: Path) -> tuple[str, Path | None]:
    """Return the token from ``$env_name``, else a new one written to ``token_dir/token``.

    Parameters
    ----------
    env_name : str
        Name of the environment variable holding the token.
    token_dir : Path
        Where a generated token is written, mode 0600.

    Returns
    -------
    tuple
        The token, and the file it was written to (None when it came from the environment).
    """
    token = os.environ.get(env_name, "")
    if token:
        return token, None
    token = secrets.token_urlsafe(32)
    token_dir.mkdir(parents=True, exist_ok=True)
    path = token_dir / "token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT
    return token, path


def check(presented: str | None, token: str) -> int:
    """Return 0 when ``presented`` is the token, else 401 (missing) or 403 (wrong)."""
    if not presented:
        return 401
    return 0 if secrets.compare_digest(presented.encode(), token.encode()) else 403


def bearer(header: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, or None."""
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def require_token(request: Request) -> None:
    """FastAPI dependency: refuse a request without the right bearer token."""
    status = check(bearer(request.headers.get("authorization")), request.app.state.token)
    if status == 401:
        raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    if status == 403:
        raise HTTPException(403, "wrong bearer token")


def websocket_status(websocket: WebSocket) -> int:
    """Return 0 when the socket presents the token (header or ``?token=``), else 401 or 403."""
    presented = bearer(websocket.headers.get("authorization"))
    presented = presented or websocket.query_params.get("token")
    return check(presented, websocket.app.state.token)
