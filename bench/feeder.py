"""A fast tick server for the live benchmarks: ``python bench/feeder.py --port P ...``.

It speaks the ``ws`` feed's generic JSON protocol (one tick object per text frame, or an array
of ``--frame-ticks`` of them) to exactly one client, and records when every frame left.

- **Frames are built before the client connects.** Every tick has the same byte width (the
  price is padded with JSON whitespace, ``t`` has 19 digits), so a run is one ``uint8`` matrix
  with a frame per row, filled column-wise by NumPy: header, ``[``, the ticks, ``,``, ``]``.
  Runs above :data:`PRECOMPUTE_TICKS` (the long RSS run) are built a block at a time while
  streaming instead, so memory stays bounded.
- **Sending is a plain loop on the socket.** picows does the handshake; then the loop takes the
  connection's file descriptor and ``os.write``\\ s the prebuilt bytes, blocking the event loop
  until the run is over (nothing else happens in this process meanwhile). Each write carries
  every frame due by then, so a late wake-up sends a burst of whole frames, never a merged one:
  the engine still makes one kernel call per frame. With ``--rate 0`` it writes
  :data:`WRITE_BYTES` at a time, as fast as the socket takes them.
- **Pacing sleeps**, it never spins: on the benchmark's shared core a spinning sender would
  steal the engine's time slices. The timer slack is set to 1 µs so a sleep ends on time.
- **Stamps**: ``time.monotonic_ns()`` just before the write that carries a frame, for every
  frame (the ticks of a frame share it). ``--stamps OUT.npy`` receives an ``int64`` array of
  rows ``(t of the frame's first tick, ticks in the frame, stamp)`` once the run is sent, or
  on SIGTERM with the frames sent so far. ``t`` is ``t0 + k * t_step`` for tick ``k``: unique
  and increasing, so a journal line's ``tick_t`` finds its frame by binary search.

Prices follow a zig-zag of ``--leg`` ticks up and ``--leg`` down, one tick per tick, around
:data:`START_PRICE`; with the engine's fast 2 / slow 3 EMAs and a 2/2-tick bracket a leg of
10 ticks gives an entry and an exit every 10 ticks.

Lines on stdout, for the harness: ``ready PORT`` once listening, ``connected`` when the client
is in, ``done FRAMES TICKS`` when the run is sent (stamps written). The connection then stays
open, so the engine does not reconnect, until SIGTERM or the client leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import select
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

#: the one instrument every frame carries
SYMBOL = "NIFTY"
#: price at level 0 of the zig-zag
START_PRICE = 22000.0
#: tick size of SYMBOL in the engine's config
TICK_SIZE = 0.05
#: decimals a price is written with (those of TICK_SIZE)
PRICE_DECIMALS = 2
#: ns between consecutive ticks' ``t``; 1 µs keeps a run's orders under the engine's
#: per-second (tick time) order limit however fast the ticks are sent
T_STEP_NS = 1_000
#: bytes written per ``os.write`` at most (as-fast-as-possible runs write this much at a time)
WRITE_BYTES = 1 << 18
#: runs of up to this many ticks are built in full before the client connects
PRECOMPUTE_TICKS = 8_000_000
#: ticks per block when a longer run is built while streaming
BLOCK_TICKS = 1 << 20
#: ``prctl`` option setting the calling thread's timer slack (Linux)
PR_SET_TIMERSLACK = 29
#: timer slack while pacing, ns: sleeps end within about this of the deadline
TIMER_SLACK_NS = 1_000


class Stopped(BaseException):
    """Raised by the SIGTERM handler wherever the process is; the stamps are still written."""


# -- frames ---------------------------------------------------------------------------------------


def price_levels(n: int, leg: int, start: int = 0) -> np.ndarray:
    """Return the zig-zag's price level, in ticks above START_PRICE, of ticks ``start..start+n``.

    Parameters
    ----------
    n : int
        Ticks.
    leg : int
        Ticks per leg: ``leg`` steps of +1 tick, then ``leg`` of -1, and again.
    start : int
        Index of the first tick in the run, so blocks of a run continue the same path.

    Returns
    -------
    np.ndarray
        ``int64`` levels in ``0..leg``.
    """
    phase = (np.arange(start, start + n, dtype=np.int64)) % (2 * leg)
    return np.where(phase < leg, phase, 2 * leg - phase)


def _zero_padded(width: int) -> np.ndarray:
    """Return the ``(10**width, width)`` digit table of 0 .. 10**width - 1, zero-padded."""
    values = np.arange(10**width, dtype=np.int64)
    table = np.empty((values.shape[0], width), np.uint8)
    for digit in range(width - 1, -1, -1):
        table[:, digit] = values % 10 + 48
        values //= 10
    return table


#: digit tables of the low nine digits of ``t`` (5 + 4), looked up instead of divided; the top
#: ten digits move once a second, so they are formatted once per distinct value
_DIGITS5, _DIGITS4 = _zero_padded(5), _zero_padded(4)


def encode_ticks(t: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Return the tick objects ``{"s":..,"p":..,"q":1,"t":..}`` as an ``(n, width)`` byte matrix.

    Parameters
    ----------
    t : np.ndarray
        ``int64`` timestamps, each of 19 digits (ns since the epoch, 2001 to 2286).
    levels : np.ndarray
        ``int64`` price levels in ticks above START_PRICE.

    Returns
    -------
    np.ndarray
        ``uint8`` matrix, one tick per row; every row has the same width (prices are padded
        with spaces, which JSON allows after a number).
    """
    if t.size and (t.min() < 10**18 or t.max() >= 10**19):
        raise ValueError("t must have 19 digits")
    low = int(levels.min()) if levels.size else 0
    high = int(levels.max()) if levels.size else 0
    texts = [
        f"{START_PRICE + k * TICK_SIZE:.{PRICE_DECIMALS}f}".encode() for k in range(low, high + 1)
    ]
    width = max(len(text) for text in texts)
    # one whole row per price level, ``t`` left as zeros: a row gather is one copy per tick
    head, middle = f'{{"s":"{SYMBOL}","p":'.encode(), b',"q":1,"t":'
    rows = [head + text.ljust(width) + middle for text in texts]
    c = len(rows[0])
    template = np.frombuffer(b"".join(row + b"0" * 19 + b"}" for row in rows), np.uint8)
    out = template.reshape(len(rows), c + 20)[levels - low]
    top, inverse = np.unique(t // 10**9, return_inverse=True)
    rest = t % 10**9
    out[:, c : c + 10] = top.astype("S10").view(np.uint8).reshape(-1, 10)[inverse.reshape(-1)]
    out[:, c + 10 : c + 15] = _DIGITS5[rest // 10**4]
    out[:, c + 15 : c + 19] = _DIGITS4[rest % 10**4]
    return out


def ws_header(length: int) -> bytes:
    """Return the header of an unmasked, final text frame with a ``length``-byte payload."""
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


def build_frames(ticks: np.ndarray, frame_ticks: int) -> np.ndarray:
    """Return whole WebSocket frames, one per row, ``frame_ticks`` ticks each.

    Parameters
    ----------
    ticks : np.ndarray
        ``(n, width)`` rows of :func:`encode_ticks`; ``n`` a multiple of ``frame_ticks``.
    frame_ticks : int
        1 sends each tick as a JSON object, more sends JSON arrays.

    Returns
    -------
    np.ndarray
        ``uint8`` matrix ``(n / frame_ticks, frame bytes)``, ready for the wire.
    """
    n, width = ticks.shape
    frames = n // frame_ticks
    if frame_ticks == 1:
        header = ws_header(width)
        out = np.empty((frames, len(header) + width), np.uint8)
        out[:, : len(header)] = np.frombuffer(header, np.uint8)
        out[:, len(header) :] = ticks
        return out
    payload = 1 + frame_ticks * (width + 1)  # '[' then each tick followed by ',' or ']'
    header = ws_header(payload)
    h = len(header)
    out = np.empty((frames, h + payload), np.uint8)
    out[:, :h] = np.frombuffer(header, np.uint8)
    out[:, h] = ord("[")
    body = out[:, h + 1 :].reshape(frames, frame_ticks, width + 1)
    body[:, :, :width] = ticks.reshape(frames, frame_ticks, width)
    body[:, :, width] = ord(",")
    body[:, -1, width] = ord("]")
    return out


def frame_blocks(
    count: int, frame_ticks: int, t0: int, t_step: int, leg: int
) -> Iterator[np.ndarray]:
    """Yield the run's frames in blocks of whole frames (all at once for short runs)."""
    per_block = count if count <= PRECOMPUTE_TICKS else BLOCK_TICKS
    per_block = max(frame_ticks, per_block - per_block % frame_ticks)
    for start in range(0, count, per_block):
        n = min(per_block, count - start)
        t = t0 + t_step * np.arange(start, start + n, dtype=np.int64)
        yield build_frames(encode_ticks(t, price_levels(n, leg, start)), frame_ticks)


# -- sending --------------------------------------------------------------------------------------


def set_timer_slack(ns: int) -> None:
    """Shorten the calling thread's timer slack so sleeps end on time (Linux; else nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(ns), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def write_all(fd: int, data: memoryview, poller: select.poll) -> None:
    """Write all of ``data`` to the non-blocking ``fd``, waiting while the socket is full."""
    while data:
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:
            poller.poll()


def stream(
    fd: int,
    blocks: Iterator[np.ndarray],
    frame_ticks: int,
    rate: float,
    stamps: np.ndarray | None,
    progress: Run,
) -> int:
    """Send every frame of ``blocks`` on ``fd`` at ``rate`` ticks/s; return the frames sent.

    Parameters
    ----------
    fd : int
        The connected socket (non-blocking).
    blocks : iterator of np.ndarray
        Frame matrices of :func:`build_frames`, in order.
    frame_ticks : int
        Ticks per frame.
    rate : float
        Ticks per second; 0 sends as fast as the socket takes them.
    stamps : np.ndarray or None
        One ``int64`` per frame of the run, set to ``time.monotonic_ns()`` just before the
        write carrying that frame.
    progress : Run
        Its ``sent`` is kept at the frames fully written, for a SIGTERM mid-run.
    """
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    monotonic_ns, sleep = time.monotonic_ns, time.sleep
    ns_per_frame = 1e9 * frame_ticks / rate if rate > 0 else 0.0
    base = 0  # frames of the earlier blocks
    started = monotonic_ns()
    for block in blocks:
        frames, frame_bytes = block.shape
        data = memoryview(block).cast("B")
        chunk = max(1, WRITE_BYTES // frame_bytes)
        i = 0
        while i < frames:
            now = monotonic_ns()
            if ns_per_frame:
                due = int((now - started) / ns_per_frame) + 1 - base
                if due <= i:
                    sleep((started + (base + i) * ns_per_frame - now) * 1e-9)
                    continue
                end = min(due, frames, i + chunk)
            else:
                end = min(frames, i + chunk)
            view = data[i * frame_bytes : end * frame_bytes]
            stamp = monotonic_ns()
            if stamps is not None:
                stamps[base + i : base + end] = stamp
            write_all(fd, view, poller)
            i = end
            progress.sent = base + i
        base += frames
    return base


def stamp_rows(
    stamps: np.ndarray, frames: int, frame_ticks: int, t0: int, t_step: int
) -> np.ndarray:
    """Return the ``(t of first tick, ticks, stamp)`` rows of the first ``frames`` frames."""
    rows = np.empty((frames, 3), np.int64)
    rows[:, 0] = t0 + t_step * frame_ticks * np.arange(frames, dtype=np.int64)
    rows[:, 1] = frame_ticks
    rows[:, 2] = stamps[:frames]
    return rows


# -- the server -----------------------------------------------------------------------------------


class _Client(WSListener):
    def __init__(self, server: _Server) -> None:
        self.server = server

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.server.connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.server.gone.set()


class _Server:
    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.client = asyncio.Event()
        self.gone = asyncio.Event()

    def factory(self, request) -> WSListener | None:
        return None if self.transport is not None else _Client(self)

    def connected(self, transport: WSTransport) -> None:
        if self.transport is None:
            self.transport = transport
            self.client.set()


class Run:
    """One run: the options, the frames still to send, the stamps and what was sent."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.time_ns() if args.t0 is None else args.t0
        self.blocks = frame_blocks(args.count, args.frame_ticks, self.t0, args.t_step, args.leg)
        if args.count <= PRECOMPUTE_TICKS:
            self.blocks = iter(list(self.blocks))
        frames = args.count // args.frame_ticks
        self.stamps = np.zeros(frames, np.int64) if args.stamps is not None else None
        self.sent = 0
        self.saved = False
        self.streaming = False
        self.stop: asyncio.Event | None = None

    def save(self) -> None:
        """Write the stamps of the frames sent so far (once)."""
        if self.stamps is not None and not self.saved:
            args = self.args
            rows = stamp_rows(self.stamps, self.sent, args.frame_ticks, self.t0, args.t_step)
            np.save(args.stamps, rows)
        self.saved = True

    async def serve(self) -> None:
        """Wait for the client, stream the run, then hold the connection until it leaves."""
        args = self.args
        self.stop = asyncio.Event()
        server = _Server()
        listener = await ws_create_server(server.factory, args.host, args.port)
        print(f"ready {listener.sockets[0].getsockname()[1]}", flush=True)
        if not await _first(server.client, self.stop):
            return
        listener.close()  # one client per run: the next feeder may bind the port
        transport = server.transport
        while transport.underlying_transport.get_write_buffer_size():
            await asyncio.sleep(0.001)  # the 101 response must be out before raw writes
        print("connected", flush=True)
        fd = transport.underlying_transport.get_extra_info("socket").fileno()
        self.streaming = True
        try:
            self.sent = stream(fd, self.blocks, args.frame_ticks, args.rate, self.stamps, self)
        finally:
            self.streaming = False
        self.save()
        print(f"done {self.sent} {self.sent * args.frame_ticks}", flush=True)
        await _first(server.gone, self.stop)

    def on_signal(self, signum: int, frame) -> None:
        """Stop: at once while streaming (the loop is blocked), else through the event loop."""
        if self.streaming or self.stop is None:
            raise Stopped
        self.stop.set()  # uvloop runs Python signal handlers inside its own callbacks


async def _first(wanted: asyncio.Event, stop: asyncio.Event) -> bool:
    """Wait for ``wanted`` or ``stop``; return True when ``wanted`` is set."""
    waits = [asyncio.ensure_future(wanted.wait()), asyncio.ensure_future(stop.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiting in waits:
        waiting.cancel()
    return wanted.is_set()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    add("--port", type=int, required=True, help="port; 0 picks a free one")
    add("--rate", type=float, default=0.0, help="ticks/s; 0 = as fast as possible (0)")
    add("--frame-ticks", type=int, default=1, help="ticks per frame; >1 sends arrays (1)")
    add("--count", type=int, required=True, help="ticks to send, a multiple of --frame-ticks")
    add("--stamps", type=Path, help="write the (t, ticks, stamp) rows of every frame here")
    add("--cpu", type=int, help="pin this process to that CPU")
    add("--t0", type=int, help="t of the first tick (default: time.time_ns() at start)")
    add("--t-step", type=int, default=T_STEP_NS, help="ns between ticks' t (%(default)s)")
    add("--leg", type=int, default=10, help="zig-zag leg in ticks (%(default)s)")
    args = parser.parse_args(argv)
    if args.frame_ticks < 1 or args.count < 1 or args.count % args.frame_ticks:
        parser.error("--count must be a positive multiple of --frame-ticks")
    if args.rate < 0 or args.leg < 1 or args.t_step < 1:
        parser.error("--rate must be >= 0, --leg and --t-step >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the run, serve it to one client and write the stamps; return the exit status."""
    args = parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    run = Run(args)
    set_timer_slack(TIMER_SLACK_NS)

    signal.signal(signal.SIGTERM, run.on_signal)
    signal.signal(signal.SIGINT, run.on_signal)
    try:
        uvloop.run(run.serve())
    except Stopped:
        pass
    finally:
        run.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
