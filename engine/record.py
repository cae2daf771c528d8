"""The flight recorder: every input of a live session, in a compact binary file per day.

A recording holds what reached the engine, in order: each batch of ticks as the kernels got it
(with the clock bound ``A_MAX_TS`` and the pause bits it ran under), each broker fill, operator
control and strategy change (with the time it took effect), and, with a live broker, the
router's per-instrument flags whenever they change. A file starts with the configuration and a
snapshot of the whole book, so ``python run.py replay-session`` can run the same kernels from
the same state through the same inputs and write the journal the session would have written.

Format (little-endian, every record 8-byte aligned): the 8-byte magic, then records of a 4-word
int64 header ``kind, count, a, b`` and a payload:

* ``TICKS``: ``count`` rows of 4 words (idx, price bits, size bits, ts); ``a`` = the batch's
  ``A_MAX_TS``, ``b`` = its ``A_PAUSED``;
* ``EVENT`` and ``HEADER``: ``count`` bytes of JSON, zero-padded to 8; ``a`` = the batch count
  before it (the frame at which it took effect);
* ``BOOK``: ``count`` float64 words, the book; ``FLAGS``: ``count`` float64 words, the
  ``I_PENDING`` then the ``I_STOP_RESTING`` column.

Ticks are copied by one Numba call per batch into a preallocated buffer, written out when full
and every second: no per-tick Python object, and memory bounded by the buffer. A recording that
cannot be written (disk full) is cut back to its last whole record and drops what follows,
counted, until the next second opens a new part with a fresh snapshot; trading never waits on
it. Each part replays from its own snapshot, so a gap loses only the gap.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np
import orjson
from numba import njit

from engine.config import EngineConfig, dump_config
from engine.state import State
from kernels import layout

#: first bytes of every recording file
MAGIC = b"OTREC\x01\x00\x00"
#: record kinds
TICKS, EVENT, HEADER, BOOK, FLAGS = 1, 2, 3, 4, 5
#: int64 words of a record header and of a tick row
HEAD_WORDS = ROW_WORDS = 4
#: bytes of the write buffer at the least; a batch larger than that gets a buffer to fit
BUFFER_BYTES = 4 << 20
#: extension of recording files
SUFFIX = ".otrec"


@njit(cache=True)
def append_ticks(words, floats, pos, idx, price, size, ts, n, max_ts, paused):
    """Write one ``TICKS`` record at word ``pos`` of the buffer; return the next position."""
    words[pos] = TICKS
    words[pos + 1] = n
    words[pos + 2] = max_ts
    words[pos + 3] = paused
    row = pos + HEAD_WORDS
    for k in range(n):
        words[row] = idx[k]
        floats[row + 1] = price[k]
        floats[row + 2] = size[k]
        words[row + 3] = ts[k]
        row += ROW_WORDS
    return row


class Recorder:
    """Append an engine's inputs to ``record.dir``, one file per trading day and run.

    Parameters
    ----------
    cfg : EngineConfig
        The session's configuration (``record.dir``, the session's time zone).
    state : State
        The engine's state, snapshotted at the start of every file.
    run_id : str
        The journal's run id, in the file names.
    """

    def __init__(self, cfg: EngineConfig, state: State, run_id: str) -> None:
        self.cfg = cfg
        self.state = state
        self.run_id = run_id
        self.dir = Path(cfg.record.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._grow(BUFFER_BYTES // 8)
        self._pos = 0
        self._fd = -1
        self._part = 0
        self._good = 0  # bytes of the file up to its last whole write
        self._broken = False
        self._flags = np.zeros(2 * state.n, np.float64)
        self._live = bool(cfg.broker.live)
        #: batches recorded, the frame index of the next control
        self.batches = 0
        #: bytes written to files, and bytes dropped because they could not be written
        self.written = self.lost = 0
        #: the file being written, and the trading day it belongs to
        self.path: Path | None = None
        self.day: str | None = None

    def open(self, day: str) -> None:
        """Start the file of trading ``day``: the header and a snapshot of the book."""
        self.close()
        self._part = self._part + 1 if day == self.day else 0
        self.day = day
        self.path = self.dir / f"{day}-{self.run_id}-{self._part:03d}{SUFFIX}"
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            self._broken = True
            return
        self._good, self._broken = 0, False
        header = {
            "version": 1,
            "config": orjson.loads(dump_config(self.cfg)),
            "symbols": list(self.state.symbols),
            "run_id": self.run_id,
            "day": day,
            "started_ns": time.time_ns(),
            "book_shape": list(self.state.book.shape),
        }
        self._write_direct(MAGIC)
        self._json(HEADER, header)
        self._words(BOOK, self.state.book.ravel())
        self._flags[:] = self._current_flags()

    def ticks(self, idx: np.ndarray, price: np.ndarray, size: np.ndarray, ts: np.ndarray, n: int):
        """Record one batch, just before the kernels run it."""
        state = self.state
        if self._live:
            flags = self._current_flags()
            if not np.array_equal(flags, self._flags):
                self._flags[:] = flags
                self._words(FLAGS, flags)
        need = HEAD_WORDS + n * ROW_WORDS
        if self._pos + need > len(self._buffer):
            self.flush()
            if need > len(self._buffer):
                self._grow(need)  # once per new largest batch (a ws frame of 50k ticks)
        max_ts = int(state.ints[state.acct, layout.A_MAX_TS])
        paused = int(state.ints[state.acct, layout.A_PAUSED])
        self._pos = append_ticks(
            self._buffer, self._floats, self._pos, idx, price, size, ts, n, max_ts, paused
        )
        self.batches += 1

    def event(self, op: str, **fields) -> None:
        """Record a control, a broker fill or a strategy change, between batches."""
        self._json(EVENT, {"op": op, **fields})

    def flush(self) -> None:
        """Write the buffer out; what cannot be written is dropped and counted."""
        if self._pos:
            self._write_direct(self._bytes[: self._pos * 8])
            self._pos = 0

    def roll(self, day: str) -> None:
        """Start a new file when the trading day changed or a write failed; else flush."""
        if day != self.day or self._broken:
            self.open(day)
        else:
            self.flush()

    def close(self) -> None:
        """Flush and close the current file."""
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1
        self._pos = 0

    def status(self) -> dict:
        """Return the recorder's figures for ``/api/status``."""
        return {"file": str(self.path), "bytes": self.written, "lost_bytes": self.lost}

    def _grow(self, words: int) -> None:
        self._buffer = np.zeros(words, np.int64)
        self._floats = self._buffer.view(np.float64)
        self._bytes = memoryview(self._buffer).cast("B")

    def _current_flags(self) -> np.ndarray:
        book = self.state.book[: self.state.n]
        return np.concatenate((book[:, layout.I_PENDING], book[:, layout.I_STOP_RESTING]))

    def _json(self, kind: int, document: dict) -> None:
        payload = orjson.dumps(document)
        padded = payload + b"\0" * (-len(payload) % 8)
        self._record(kind, len(payload), np.frombuffer(padded, np.int64))

    def _words(self, kind: int, values: np.ndarray) -> None:
        self._record(kind, len(values), values.view(np.int64))

    def _record(self, kind: int, count: int, payload: np.ndarray) -> None:
        need = HEAD_WORDS + len(payload)
        if self._pos + need > len(self._buffer):
            self.flush()
        if need > len(self._buffer):  # a snapshot of a large book: straight to the file
            head = np.array([kind, count, self.batches, 0], np.int64)
            self._write_direct(head.tobytes() + payload.tobytes())
            return
        buffer, pos = self._buffer, self._pos
        buffer[pos : pos + HEAD_WORDS] = (kind, count, self.batches, 0)
        buffer[pos + HEAD_WORDS : pos + need] = payload
        self._pos = pos + need

    def _write_direct(self, data) -> None:
        view = memoryview(data).cast("B")
        if self._broken:
            self.lost += len(view)
            return
        length = len(view)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            self.lost += length
            self._broken = True
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._good)  # no torn record for a replay to trip on
            return
        self._good += length
        self.written += length
