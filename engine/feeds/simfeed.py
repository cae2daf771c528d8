"""``python run.py simfeed``: a WebSocket server streaming ticks in the generic JSON protocol.

Every ~1 ms a pacing loop sends the ticks due at ``--rate`` since the first client connected,
``--frame-ticks`` per text frame (one object, or an array of N). Ticks come from the seeded
:class:`~engine.feeds.sim.SimFeed` or, with ``--replay``, from a tick file; either way ``t`` is
restamped with the wall clock at send, strictly increasing, so a live engine sees real time.
A step's frames are formatted, WebSocket headers included, by one numba call into a reused
buffer and written to each client's socket transport in one call: picows' ``transport.send``
costs a Python call and a syscall per frame, which capped single-tick frames near 250k ticks/s.
The same bytes go to every client; like a live feed, a client that is away or cannot keep up
(its write buffer above ``HIGH_WATER``) misses ticks.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import uvloop
from numba import njit
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

from engine.config import EngineConfig
from engine.feeds.replay import open_replay
from engine.feeds.sim import SimFeed, _write_int
from engine.feeds.ticks import TickBatch

#: Seconds between pacing steps; each step sends every tick due by then.
STEP_S = 0.001
#: Most ticks sent in one step; a loop further behind than this forgives the debt, no burst.
MAX_STEP_TICKS = 65536
#: Tick size and start price of a ``--symbols`` entry that the config does not define.
DEFAULT_TICK_SIZE, DEFAULT_START_PRICE = 0.05, 100.0
#: Decimals tried for the shortest exact decimal form of a price or size.
MAX_DECIMALS = 17
#: Write-buffer bytes above which a client is skipped (misses frames) until it drains.
HIGH_WATER = 4 << 20
#: Rows preallocated for ``--stamps`` without ``--count``; the buffer doubles when full.
STAMP_ROWS = 1 << 20
#: Most formatted bytes per tick beyond its '{"s":"SYMBOL","p":' head, a frame header included.
_TICK_BYTES = 110
#: Fixed parts of a tick object as arrays, which numba compiles in as constants.
_Q, _T, _NULL = (np.frombuffer(k, np.uint8) for k in (b',"q":', b',"t":', b"null"))


@njit(cache=True)
def _put(out, o, lit):
    for c in range(lit.shape[0]):
        out[o + c] = lit[c]
    return o + lit.shape[0]


@njit(cache=True)
def _write_number(out, o, x, min_decimals, tmp):
    # Fewest decimals d with rint(x * 10**d) / 10**d == x: the division of two exact doubles is
    # the correctly rounded value of the decimal string, so a JSON parser reads back exactly x.
    # Always found for up to 15 significant digits (any grid or CSV price); beyond, the last d
    # that fits int64 is written, within an ulp or so.
    scale, best, units = 1.0, -1, 0.0
    for d in range(MAX_DECIMALS + 1):
        u = np.rint(x * scale)
        if not abs(u) < 9.2e18:
            break
        best, units = d, u
        if u / scale == x:
            break
        scale *= 10.0
    if best < 0:  # NaN, inf or beyond int64: not a JSON number
        return _put(out, o, _NULL)
    o = _write_int(out, o, np.int64(units), best + 1, tmp)
    if best:
        for c in range(o, o - best, -1):  # shift the last `best` digits to fit the point
            out[c] = out[c - 1]
        out[o - best] = 46
        o += 1
    elif min_decimals:
        out[o], out[o + 1] = 46, 48
        o += 2
    return o


@njit(cache=True)
def _ws_header_bytes(length):
    return 2 if length < 126 else 4 if length < 65536 else 10


@njit(cache=True)
def _format_frames(idx, price, size, n, t0, frame_ticks, syms, sym_lens, out):
    # Whole WebSocket text frames (server frames are unmasked) back to back, so a step is one
    # write per client. The header goes in front once the payload length is known.
    tmp = np.empty(24, np.uint8)
    o, frames, k, start, room = 0, 0, 0, 0, 0
    for j in range(n):
        if k == 0:
            # Room for the header of the longest payload this frame could have; rarely too much.
            start = o
            room = _ws_header_bytes(min(frame_ticks, n - j) * (syms.shape[1] + _TICK_BYTES))
            o += room
        if frame_ticks > 1:
            out[o] = 91 if k == 0 else 44  # '[' opens a frame, ',' separates ticks
            o += 1
        i = idx[j]
        for c in range(sym_lens[i]):  # '{"s":"SYMBOL","p":'
            out[o] = syms[i, c]
            o += 1
        o = _write_number(out, o, price[j], 1, tmp)
        o = _put(out, o, _Q)
        o = _write_number(out, o, size[j], 0, tmp)
        o = _put(out, o, _T)
        o = _write_int(out, o, t0 + j, 1, tmp)
        out[o] = 125
        o += 1
        k += 1
        if k == frame_ticks or j == n - 1:
            if frame_ticks > 1:
                out[o] = 93
                o += 1
            length = o - start - room
            h = _ws_header_bytes(length)
            if h < room:  # the header must be minimal (RFC 6455): close the gap
                for c in range(start + room, o):
                    out[c - room + h] = out[c]
                o -= room - h
            out[start] = 0x81  # FIN + text
            if h == 2:
                out[start + 1] = length
            else:
                out[start + 1] = 126 if h == 4 else 127
                for c in range(h - 2):
                    out[start + h - 1 - c] = (length >> (8 * c)) & 0xFF
            frames += 1
            k = 0
    return o, frames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simfeed`` options to a (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``simfeed`` subcommand's parser.
    """
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    add("--port", type=int, default=9001, help="port; 0 picks a free one (%(default)s)")
    add("--rate", type=float, default=1000.0, help="ticks/s over all symbols (%(default)s)")
    add("--symbols", help="comma-separated symbols (default: the config's instruments)")
    add("--seed", type=int, help="random-walk seed (default: the config's feed.seed)")
    add("--replay", type=Path, help="stream this CSV/NPY tick file instead of the random walk")
    add("--frame-ticks", type=int, default=1, help="ticks per frame; >1 sends arrays (1)")
    add("--count", type=int, help="stop after this many ticks, connections stay open")
    add("--stamps", type=Path, help="write (t, monotonic_ns at send) int64 rows here at exit")


class _Client(WSListener):
    def __init__(self, feed: _Feed) -> None:
        self.feed = feed
        self.paused = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport, self.raw = transport, transport.underlying_transport
        self.raw.set_write_buffer_limits(high=HIGH_WATER)
        self.feed.clients.append(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self in self.feed.clients:
            self.feed.clients.remove(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.feed.received += 1  # a subscribe message or anything else: counted, ignored

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False


class _ReplaySource:
    """A tick file as a ``fill(batch, n)`` source; ticks of unknown symbols are skipped."""

    def __init__(self, path: Path, symbols: list[str]) -> None:
        self.replay = open_replay(path, symbols, MAX_STEP_TICKS)
        self.pos = self.end = 0
        self.skipped = 0

    def fill(self, batch: TickBatch, n: int) -> int:
        src, got = self.replay.batch, 0
        while got < n:
            if self.pos == self.end:
                read = self.replay.next_chunk()
                if read == 0:
                    break
                keep = src.idx[:read] >= 0
                self.pos, self.end = 0, int(keep.sum())
                if self.end < read:  # compact the chunk to the known symbols, in order
                    for col in (src.idx, src.price, src.size):
                        col[: self.end] = col[:read][keep]
                    self.skipped += read - self.end
                continue
            m = min(n - got, self.end - self.pos)
            for a, b in ((batch.idx, src.idx), (batch.price, src.price), (batch.size, src.size)):
                a[got : got + m] = b[self.pos : self.pos + m]
            got, self.pos = got + m, self.pos + m
        return got


class _Feed:
    def __init__(self, cfg: EngineConfig, args: argparse.Namespace, symbols: list[str]) -> None:
        self.rate, self.frame_ticks, self.count = args.rate, args.frame_ticks, args.count
        if not self.rate > 0 or self.frame_ticks < 1 or (self.count or 0) < 0:
            raise ValueError("--rate must be > 0, --frame-ticks >= 1, --count >= 0")
        known = {inst.symbol: inst for inst in cfg.instruments}
        if args.replay is not None:
            self.source: SimFeed | _ReplaySource = _ReplaySource(args.replay, symbols)
        else:
            insts = [known.get(s) for s in symbols]
            self.source = SimFeed(
                symbols,
                [i.tick_size if i else DEFAULT_TICK_SIZE for i in insts],
                [i.sim_start_price if i else DEFAULT_START_PRICE for i in insts],
                seed=cfg.feed.seed if args.seed is None else args.seed,
                ticks_per_second=self.rate,
                step_ticks=cfg.feed.sim_step_ticks,
            )
        heads = [b'{"s":' + orjson.dumps(s) + b',"p":' for s in symbols]  # JSON-escaped
        self.syms = np.zeros((len(heads), max(map(len, heads))), np.uint8)
        for i, head in enumerate(heads):
            self.syms[i, : len(head)] = np.frombuffer(head, np.uint8)
        self.sym_lens = np.array([len(head) for head in heads], np.int64)
        # Whole frames per step, so every frame but the very last holds frame_ticks ticks.
        self.step_cap = max(1, MAX_STEP_TICKS // self.frame_ticks) * self.frame_ticks
        self.batch = TickBatch(self.step_cap)
        self.out = np.empty(self.step_cap * (self.syms.shape[1] + _TICK_BYTES), np.uint8)
        self.clients: list[_Client] = []
        self.sent = self.frames = self.received = self.missed = self.last_t = 0
        self.done = False
        rows = min(STAMP_ROWS, STAMP_ROWS if self.count is None else self.count)
        self.stamps = None if args.stamps is None else np.empty((rows, 2), np.int64)
        self.ramp = np.arange(self.step_cap, dtype=np.int64)  # t offsets of a step's ticks

    async def pace(self) -> None:
        started = None
        while True:
            await asyncio.sleep(STEP_S)
            if self.done or not self.clients:
                started = None  # the clock stops with no one listening
                continue
            now = time.monotonic()
            if started is None:
                started = now - self.sent / self.rate
            due = int((now - started) * self.rate) - self.sent
            if due > self.step_cap:
                started = now - (self.sent + self.step_cap) / self.rate
                due = self.step_cap
            final = self.count is not None and self.sent + due >= self.count
            if final:
                due = self.count - self.sent
            else:
                due -= due % self.frame_ticks
            n = self.source.fill(self.batch, due) if due > 0 else 0
            if n:
                self.send(n)
            self.done = final or n < due

    def send(self, n: int) -> None:
        t0 = max(time.time_ns(), self.last_t + 1)
        b = self.batch
        args = (b.idx, b.price, b.size, n, t0, self.frame_ticks, self.syms, self.sym_lens)
        nbytes, nframes = _format_frames(*args, self.out)
        # bytes, not a view: a transport keeps what it cannot write yet; the buffer is reused.
        data = self.out[:nbytes].tobytes()
        sent_ns = time.monotonic_ns()
        for client in self.clients:
            if client.paused or client.raw.is_closing():
                self.missed += nframes
            else:
                client.raw.write(data)
        if self.stamps is not None:
            if self.sent + n > len(self.stamps):
                grown = np.empty((2 * len(self.stamps) + n, 2), np.int64)
                grown[: self.sent] = self.stamps[: self.sent]
                self.stamps = grown
            rows = self.stamps[self.sent : self.sent + n]
            np.add(self.ramp[:n], t0, out=rows[:, 0])
            rows[:, 1] = sent_ns
        self.last_t, self.sent, self.frames = t0 + n - 1, self.sent + n, self.frames + nframes


def serve(cfg: EngineConfig, args: argparse.Namespace) -> int:
    """Run the tick server on uvloop until SIGINT or SIGTERM.

    Parameters
    ----------
    cfg : EngineConfig
        Validated config: instruments (tick sizes, start prices), ``feed.seed`` and
        ``feed.sim_step_ticks``.
    args : argparse.Namespace
        The options of :func:`add_arguments`.

    Returns
    -------
    int
        0 after a clean stop (the ``--stamps`` file written first); 2 for bad options, an
        unreadable ``--replay`` file or an address that cannot be bound, with one line on stderr.
    """
    symbols = [s.strip() for s in (args.symbols or "").split(",") if s.strip()]
    symbols = symbols or [inst.symbol for inst in cfg.instruments]
    try:
        feed = _Feed(cfg, args, symbols)
    except (OSError, ValueError) as error:
        print(f"simfeed: {error}", file=sys.stderr)
        return 2
    # Load (or compile) the kernels now rather than stall the first client's first step.
    b = feed.batch
    feed.source.fill(b, 0)
    _format_frames(b.idx, b.price, b.size, 1, 0, 1, feed.syms, feed.sym_lens, feed.out)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        server = await ws_create_server(lambda request: _Client(feed), args.host, args.port)
        port = server.sockets[0].getsockname()[1]
        what = ",".join(symbols) if args.replay is None else f"{args.replay} ({','.join(symbols)})"
        print(
            f"simfeed: ws://{args.host}:{port}/ streaming {what} at {args.rate:,.0f} ticks/s",
            flush=True,
        )
        pacer = asyncio.create_task(feed.pace())
        await stop.wait()
        pacer.cancel()
        server.close()
        for client in list(feed.clients):
            client.transport.send_close(WSCloseCode.GOING_AWAY)
            client.transport.disconnect()

    try:
        uvloop.run(main())
    except OSError as error:  # the address is in use or cannot be bound
        print(f"simfeed: {error}", file=sys.stderr)
        return 2
    if feed.stamps is not None:
        np.save(args.stamps, feed.stamps[: feed.sent])
    skipped = getattr(feed.source, "skipped", 0)
    print(
        f"simfeed: sent {feed.sent:,} ticks in {feed.frames:,} frames; {feed.missed:,} frames"
        f" missed by slow clients; {skipped:,} ticks of unknown symbols skipped;"
        f" {feed.received:,} frames received",
        flush=True,
    )
    return 0
