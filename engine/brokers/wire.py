"""A lean HTTP/1.1 keep-alive client for the requests that change orders.

httpx builds and sends a request in about 400 us of Python on the machines OTrade was measured
on (the client's request model, hooks, cookies and httpcore's pool), where writing prepared
bytes to an open connection takes a few microseconds. Orders are the one place that matters, so
:class:`Wire` writes each one as a single buffer on a connection that is already open: the
request line, the ``Host`` line, the adapter's headers and the body, in one ``write``. Responses
are parsed by hand (``Content-Length``, chunked, or read to the close) into an
``httpx.Response``, so the adapters' error mapping reads them as any other response, and
failures raise ``httpx.TransportError`` subclasses, which :class:`RestClient` already handles.

Reads and everything else stay on the adapter's ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

#: connections kept open per adapter; more concurrent requests open more, closed when done
IDLE_CONNECTIONS = 4
#: a response head larger than this is refused
MAX_HEAD_BYTES = 65_536


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._try_complete(eof=False)

    def eof_received(self) -> bool:
        self._try_complete(eof=True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._try_complete(eof=True)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(httpx.RemoteProtocolError("server closed the connection"))

    def _try_complete(self, eof: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            parsed = _parse(self.buffer, eof)
        except ValueError as error:
            waiter.set_exception(httpx.RemoteProtocolError(str(error)))
            return
        if parsed is not None:
            response, used = parsed
            del self.buffer[:used]
            waiter.set_result(response)


def _parse(buffer: bytearray, eof: bool) -> tuple[tuple, int] | None:
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise ValueError("response head too large")
        return None
    lines = bytes(buffer[:head_end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
    status = int(parts[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    fields = {name.lower(): value for name, value in headers}
    start = head_end + 4
    if 100 <= status < 200:
        del buffer[:start]  # an interim response; the real one follows
        return _parse(buffer, eof)
    if "chunked" in fields.get("transfer-encoding", "").lower():
        body, used = _chunked(buffer, start)
        if body is None:
            return None
    elif "content-length" in fields:
        used = start + int(fields["content-length"])
        if len(buffer) < used:
            return None
        body = bytes(buffer[start:used])
    elif status in (204, 304):
        body, used = b"", start
    elif eof:
        body, used = bytes(buffer[start:]), len(buffer)
    else:
        return None
    keep = fields.get("connection", "").lower() != "close" and (
        "content-length" in fields or "chunked" in fields.get("transfer-encoding", "").lower()
    )
    return (status, headers, body, keep), used


def _chunked(buffer: bytearray, at: int) -> tuple[bytes | None, int]:
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None, 0
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        at = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", at - 2)
            if trailer_end < 0:
                return None, 0
            return bytes(body), trailer_end + 4
        if len(buffer) < at + size + 2:
            return None, 0
        body += buffer[at : at + size]
        at += size + 2


class Wire:
    """Send requests over kept-open HTTP/1.1 connections, one buffer per request.

    Parameters
    ----------
    base_url : str
        ``http://`` or ``https://`` host, port and path prefix.
    timeout_s : float
        Connect timeout, and the longest wait for a response.
    """

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.secure else 80)
        self.prefix = parts.path.rstrip("/")
        self.host_line = f"Host: {parts.netloc}\r\n".encode()
        self.timeout_s = timeout_s
        self._ssl = ssl.create_default_context() if self.secure else None
        self._idle: list[_Connection] = []

    async def warm(self) -> None:
        """Open one connection now, so the first order does not pay for it."""
        self._release(await self._open())

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        data: Any = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request and return its response.

        Raises
        ------
        httpx.TransportError
            ``ConnectError``, ``ReadTimeout`` or ``RemoteProtocolError``.
        """
        target = self.prefix + path
        if params:
            target += "?" + urlencode(params, doseq=True)
        if json is not None:
            body, kind = orjson.dumps(json), b"Content-Type: application/json\r\n"
        elif data is not None:
            body = urlencode(data).encode()
            kind = b"Content-Type: application/x-www-form-urlencoded\r\n"
        else:
            body, kind = b"", b""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        request = b"".join(
            (
                f"{method} {target} HTTP/1.1\r\n".encode(),
                self.host_line,
                b"Content-Length: %d\r\n" % len(body),
                kind,
                extra.encode(),
                b"\r\n",
                body,
            )
        )
        connection = await self._take()
        loop = asyncio.get_running_loop()
        connection.waiter = loop.create_future()
        connection.transport.write(request)  # type: ignore[union-attr]
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
        try:
            async with asyncio.timeout(self.timeout_s):
                status, response_headers, content, keep = await connection.waiter
        except TimeoutError:
            connection.transport.close()  # type: ignore[union-attr]
            raise httpx.ReadTimeout(f"no response within {self.timeout_s} s") from None
        except BaseException:
            # a failed or abandoned request leaves the connection mid-response: drop it
            connection.transport.close()  # type: ignore[union-attr]
            raise
        connection.waiter = None
        if keep and not connection.closed:
            self._release(connection)
        else:
            connection.transport.close()  # type: ignore[union-attr]
        url = f"{self.base_url}{path}"
        return httpx.Response(
            status,
            headers=response_headers,
            content=content,
            request=httpx.Request(method, url, headers=headers),
        )

    async def _take(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and not connection.buffer:
                return connection
            connection.transport.close()  # type: ignore[union-attr]
        return await self._open()

    def _release(self, connection: _Connection) -> None:
        if len(self._idle) < IDLE_CONNECTIONS:
            self._idle.append(connection)
        else:
            connection.transport.close()  # type: ignore[union-attr]

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s):
                _, connection = await loop.create_connection(
                    _Connection,
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except (OSError, TimeoutError) as error:
            raise httpx.ConnectError(f"{self.host}:{self.port}: {error}") from error
        return connection

    async def close(self) -> None:
        """Close every kept connection."""
        for connection in self._idle:
            connection.transport.close()  # type: ignore[union-attr]
        self._idle.clear()
