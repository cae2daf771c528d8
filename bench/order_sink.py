"""A minimal HTTP/1.1 order sink for the intent -> wire benchmark, run as its own process.

It answers every request with Kite's success envelope and notes ``time.monotonic_ns()`` (one
clock for every process on the host) when each request's first byte arrives, keyed by the
request's ``tag`` form field. ``GET /stats`` returns those stamps as JSON and forgets them.
Parsing is the least that keep-alive needs: headers up to the blank line, then
``Content-Length`` bytes of body.

Usage: ``python bench/order_sink.py PORT`` (prints ``listening`` once bound).
"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import parse_qs

import orjson
import uvloop

ORDER_OK = b'{"status":"success","data":{"order_id":"%d"}}'


class Sink(asyncio.Protocol):
    """One keep-alive connection."""

    stamps: dict[str, int] = {}
    orders = 0

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.buffer = b""
        self.first_byte_ns = 0

    def data_received(self, data: bytes) -> None:
        if not self.buffer:
            self.first_byte_ns = time.monotonic_ns()
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            body, self.buffer = self.buffer[head_end + 4 : end], self.buffer[end:]
            self.answer(head.split(" ", 2)[1], body)
            self.first_byte_ns = time.monotonic_ns() if self.buffer else 0

    def answer(self, path: str, body: bytes) -> None:
        if path == "/stats":
            payload = orjson.dumps(Sink.stamps)
            Sink.stamps = {}
        else:
            tag = parse_qs(body.decode()).get("tag", [""])[0]
            Sink.stamps[tag] = self.first_byte_ns
            Sink.orders += 1
            payload = ORDER_OK % Sink.orders
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(payload), payload)
        )


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
