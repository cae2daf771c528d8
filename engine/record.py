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

Ticks are copied into a preallocated buffer by ``run_ticks`` itself (``kernels.record``), in the
kernel call the batch makes anyway, and written out when full and every second: no per-tick
Python object, no call of its own, and memory bounded by the buffer. A recording that
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

from engine.config import EngineConfig, dump_config
from engine.state import State
from kernels import layout
from kernels.record import HEAD_WORDS, K_FLAGS, K_TICKS, RC_BATCHES, RC_FLAGS, RC_ON, RC_POS

#: first bytes of every recording file
MAGIC = b"OTREC\x01\x00\x00"
#: record kinds: ticks and flags are written by ``kernels.record``, the rest here
TICKS, EVENT, HEADER, BOOK, FLAGS = K_TICKS, 2, 3, 4, K_FLAGS
#: bytes of the write buffer at the least; a batch larger than that gets a buffer to fit
BUFFER_BYTES = 4 << 20
#: extension of recording files
SUFFIX = ".otrec"


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
        self._ctl = state.record_ctl
        self._grow(BUFFER_BYTES // 8)
        self._fd = -1
        self._part = 0
        self._good = 0  # bytes of the file up to its last whole write
        self._broken = False
        #: bytes written to files, and bytes dropped because they could not be written
        self.written = self.lost = 0
        #: the last write error, None while every record reaches the file
        self.error: str | None = None
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
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            self._fail(error)  # recording is best effort: trading goes on without it
            return
        self._good, self._broken, self.error = 0, False, None
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
        # the flags as of the snapshot, so the kernel records only changes after it
        book, n = self.state.book[: self.state.n], self.state.n
        self._ctl[RC_FLAGS : RC_FLAGS + n] = book[:, layout.I_PENDING].view(np.int64)
        self._ctl[RC_FLAGS + n : RC_FLAGS + 2 * n] = book[:, layout.I_STOP_RESTING].view(np.int64)
        self._ctl[RC_ON] = 1

    def make_room(self, words: int) -> None:
        """Flush so that a record of ``words`` fits, growing the buffer for a larger batch."""
        self.flush()
        if words > len(self._buffer):
            self._grow(words)  # once per new largest batch (a ws frame of 50k ticks)

    def event(self, op: str, **fields) -> None:
        """Record a control, a broker fill or a strategy change, between batches."""
        self._json(EVENT, {"op": op, **fields})

    def flush(self) -> None:
        """Write the buffer out; what cannot be written is dropped and counted."""
        pos = int(self._ctl[RC_POS])
        if pos:
            self._write_direct(self._bytes[: pos * 8])
            self._ctl[RC_POS] = 0

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
        self._ctl[RC_POS] = 0
        self._ctl[RC_ON] = 0

    def status(self) -> dict:
        """Return the recorder's figures for ``/api/status``."""
        return {
            "file": str(self.path),
            "bytes": self.written,
            "lost_bytes": self.lost,
            "error": self.error,
        }

    def _fail(self, error: OSError) -> None:
        self._broken = True
        self.error = f"{self.path}: {error.strerror or error}"

    def _grow(self, words: int) -> None:
        self._buffer = self.state.record = np.zeros(words, np.int64)
        self._bytes = memoryview(self._buffer).cast("B")

    def _json(self, kind: int, document: dict) -> None:
        payload = orjson.dumps(document)
        padded = payload + b"\0" * (-len(payload) % 8)
        self._record(kind, len(payload), np.frombuffer(padded, np.int64))

    def _words(self, kind: int, values: np.ndarray) -> None:
        self._record(kind, len(values), values.view(np.int64))

    def _record(self, kind: int, count: int, payload: np.ndarray) -> None:
        need = HEAD_WORDS + len(payload)
        batches = int(self._ctl[RC_BATCHES])
        if int(self._ctl[RC_POS]) + need > len(self._buffer):
            self.flush()
        if need > len(self._buffer):  # a snapshot of a large book: straight to the file
            head = np.array([kind, count, batches, 0], np.int64)
            self._write_direct(head.tobytes() + payload.tobytes())
            return
        buffer, pos = self._buffer, int(self._ctl[RC_POS])
        buffer[pos : pos + HEAD_WORDS] = (kind, count, batches, 0)
        buffer[pos + HEAD_WORDS : pos + need] = payload
        self._ctl[RC_POS] = pos + need

    def _write_direct(self, data) -> None:
        view = memoryview(data).cast("B")
        if self._broken:
            self.lost += len(view)
            return
        length = len(view)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as error:
            self.lost += length
            self._fail(error)
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._good)  # no torn record for a replay to trip on
            return
        self._good += length
        self.written += length
