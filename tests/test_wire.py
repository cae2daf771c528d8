"""The lean order connection (:mod:`engine.brokers.wire`) against a real socket server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from engine.brokers.wire import Wire
from tests.conftest import free_port


class Server:
    """Answers each request with the next canned reply; ``b""`` answers nothing."""

    def __init__(self, replies: list[bytes], close_after: bool = False) -> None:
        self.replies = list(replies)
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while self.replies:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            self.requests.append(head + await reader.readexactly(length))
            reply = self.replies.pop(0)
            if not reply:
                await asyncio.sleep(10)  # a server that never answers
            writer.write(reply)
            await writer.drain()
            if self.close_after:
                break
        writer.close()


async def serve(server: Server) -> tuple[asyncio.AbstractServer, Wire]:
    port = free_port()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port)
    return listener, Wire(f"http://127.0.0.1:{port}/api", timeout_s=0.5)


OK = b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"order_id":7}\n'
CHUNKED = (
    b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5\r\n{"a":\r\n3;ext=1\r\n 1}\r\n0\r\n\r\n'
)


def test_a_request_is_one_write_and_the_connection_is_reused() -> None:
    async def scenario() -> None:
        server = Server([OK, CHUNKED])
        listener, wire = await serve(server)
        first = await wire.request(
            "POST", "/orders/regular", data={"tag": "OT1", "qty": 1}, headers={"X-K": "3"}
        )
        second = await wire.request("PUT", "/orders/9", json={"qty": 2}, params={"a": "b c"})
        assert first.status_code == 200 and first.json() == {"order_id": 7}
        assert second.status_code == 400 and second.json() == {"a": 1}
        head, body = server.requests[0].split(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /api/orders/regular HTTP/1.1"
        assert b"Content-Type: application/x-www-form-urlencoded" in lines and b"X-K: 3" in lines
        assert body == b"tag=OT1&qty=1"
        assert server.requests[1].startswith(b"PUT /api/orders/9?a=b+c HTTP/1.1")
        assert server.requests[1].endswith(b'{"qty":2}')
        assert server.connections == 1
        await wire.close()
        listener.close()

    asyncio.run(scenario())


def test_a_closed_keep_alive_connection_is_replaced_and_close_delimited_bodies_read() -> None:
    async def scenario() -> None:
        closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye"
        server = Server([closing, OK], close_after=True)
        listener, wire = await serve(server)
        assert (await wire.request("DELETE", "/orders/1")).content == b"bye"
        server.replies = [OK]
        assert (await wire.request("DELETE", "/orders/2")).json() == {"order_id": 7}
        assert server.connections == 2
        await wire.close()
        listener.close()

    asyncio.run(scenario())


def test_silence_times_out_and_a_closed_port_is_a_connect_error() -> None:
    async def scenario() -> None:
        server = Server([b""])
        listener, wire = await serve(server)
        with pytest.raises(httpx.ReadTimeout):
            await wire.request("POST", "/orders/regular", data={"tag": "x"})
        listener.close()
        await listener.wait_closed()
        nowhere = Wire(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
        with pytest.raises(httpx.ConnectError):
            await nowhere.request("POST", "/x")

    asyncio.run(scenario())


def test_garbage_instead_of_http_is_a_protocol_error() -> None:
    async def scenario() -> None:
        server = Server([b"SSH-2.0-OpenSSH\r\n\r\n"])
        listener, wire = await serve(server)
        with pytest.raises(httpx.RemoteProtocolError):
            await wire.request("POST", "/x")
        listener.close()

    asyncio.run(scenario())
