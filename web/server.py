"""uvicorn in the engine's own loop: ``Server.serve()`` as a task beside the feed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from engine.config import ConfigError
from web.app import StatusFastPath, create_app
from web.auth import resolve_token

if TYPE_CHECKING:
    from engine.live import Runtime


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        # the runtime owns SIGINT and SIGTERM: it stops the feed and flushes the journal first
        yield


class WebServer:
    """The API, the WebSocket hub and the page, served from the runtime's loop.

    Parameters
    ----------
    runtime : Runtime
        The live runtime the app reads and steers.
    """

    def __init__(self, runtime: Runtime) -> None:
        web = runtime.cfg.web
        # a generated token is written beside the journal (``var/`` by default)
        token_dir = Path(runtime.cfg.journal.path).parent
        self.token, token_file = resolve_token(web.token_env, token_dir)
        self.app = create_app(runtime, self.token)
        self.hub = self.app.state.hub
        runtime.listeners.append(self.hub.publish)
        self.url = f"http://{web.host}:{web.port}/"
        if token_file is not None:
            # printed once, to the terminal only: never logged or journaled
            print(
                f"otrade: ${web.token_env} is not set; generated an API token in {token_file}:"
                f" {self.token}",
                file=runtime.out,
                flush=True,
            )
        self.sock = _listen(web.host, web.port)
        # with CORS configured every answer goes through its middleware
        served = self.app if web.cors_origins else StatusFastPath(self.app)
        config = uvicorn.Config(
            served,
            loop="none",
            http="httptools",
            ws="websockets-sansio",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self.server = _Server(config)
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Start serving and pushing snapshots."""
        self.tasks = [
            asyncio.create_task(self.server.serve(sockets=[self.sock])),
            asyncio.create_task(self.hub.push()),
        ]

    async def stop(self, timeout: float) -> None:
        """Close the clients and the server, forcing it after ``timeout`` seconds."""
        self.hub.close()
        self.server.should_exit = True
        serve, push = self.tasks
        push.cancel()
        done, _ = await asyncio.wait([serve], timeout=timeout)
        if not done:
            self.server.force_exit = True
            serve.cancel()
        await asyncio.gather(serve, push, return_exceptions=True)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError(
            f"web.port: cannot listen on {host}:{port}: {error.strerror or error}",
            path="web.port",
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock
