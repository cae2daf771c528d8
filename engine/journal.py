"""The append-only JSON Lines journal, and the restart that rebuilds state from it.

Every order, fill, risk and control event is one line with a ``type`` field. Order lines
carry ``tick_t`` (the causing tick's ts), ``recv_ns`` (when its batch arrived) and
``submit_ns`` (when the kernels' orders reached the journal, the paper broker's submission,
before their lines are formatted), both ``time.monotonic_ns()``, and a unique ``tag``.
Lines are written before the next batch runs, so a killed process loses at most the lines of
the batch in flight; with ``journal.fsync`` (the default) each drained block is also on disk
before its orders leave (group commit), so a power loss loses no more.

A journal that cannot be written (disk full, a file size limit, an I/O error) keeps the lines in
memory, in order, and says so through ``on_state``; the runtime then stops entries until a
retry writes them all. A journal file removed while OTrade runs is written back from the open
file before anything more is appended.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import numpy as np
import orjson

from engine.config import EngineConfig
from engine.events import RefusalFilter, event_record
from engine.sessions import trading_day
from engine.state import State
from kernels import close_day, layout

#: journal line types
ORDER, FILL, RISK, CONTROL = "order", "fill", "risk", "control"
#: nanoseconds in a minute: a trading day starts on a whole local minute (a session's open, or
#: midnight), and every zone's offset is whole minutes, so a minute never spans two days
MINUTE_NS = 60_000_000_000
#: first characters of every order tag OTrade writes; brokers' tags are alphanumeric, <= 20
TAG_PREFIX = "OT"
_DIGITS36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(number: int) -> str:
    """Return ``number`` (>= 0) in lowercase base 36."""
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _DIGITS36[digit] + out
        if number == 0:
            return out


class Journal:
    """An event sink appending one JSON line per order, fill, risk or control event.

    Parameters
    ----------
    cfg : EngineConfig
        Supplies ``journal.path``, ``journal.fsync`` and the session time zone.
    symbols : tuple of str
        Symbols by instrument row.
    """

    def __init__(self, cfg: EngineConfig, symbols: tuple[str, ...]) -> None:
        self.path = Path(cfg.journal.path)
        self.session = cfg.session
        self.symbols = symbols
        self.fsync = cfg.journal.fsync
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            #: what :func:`repair_tail` mended before this run appended anything, or None
            self.repaired = repair_tail(self.path)
            # read and write: a journal removed under the engine is copied back from this file
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            reason = error.strerror or str(error)
            raise JournalError(f"journal.path: cannot write {self.path}: {reason}") from None
        #: lines written but not yet taken by the OS (the journal could not be written)
        self._pending = bytearray()
        #: why the last write failed, None while the journal is written
        self.error: str | None = None
        #: called with the error when writing starts failing and with None once it works again
        self.on_state: Callable[[str | None], None] | None = None
        # 8 base-36 digits of the start in ms (until 2059): tags stay unique across restarts
        self.run_id = base36(time.time_ns() // 1_000_000).rjust(8, "0")
        #: with a live broker the kernels' entries and exits are the broker's fills, and
        #: intents are the orders
        self.live = cfg.broker.live
        self._refusals = RefusalFilter()
        self._days: dict[int, str] = {}
        #: records ``submit_ns - recv_ns`` of every order line when set (a ``LatencyRing``)
        self.latency = None

    def __call__(self, rows: np.ndarray, recv_ns: int) -> None:
        # the orders leave the engine now, in this block: the lines are only their record
        submit_ns = time.monotonic_ns()
        self.write([event_record(row, self.symbols) for row in rows], recv_ns, submit_ns)

    def write(self, records: list[dict], recv_ns: int, submit_ns: int) -> None:
        """Append the lines of decoded event records (``event_record``), left unchanged.

        Parameters
        ----------
        records : list of dict
            One drained block's events.
        recv_ns, submit_ns : int
            When the block's batch arrived and when its orders left the engine
            (``time.monotonic_ns()``).
        """
        lines = []
        for record in records:
            lines.extend(self._lines(record, recv_ns, submit_ns))
        if lines:  # a block of repeated refusals only writes (and fsyncs) nothing
            self._append(b"".join(orjson.dumps(line) + b"\n" for line in lines))

    def _lines(self, record: dict, recv_ns: int, submit_ns: int) -> Iterator[dict]:
        if not self._refusals.keep(record):
            return
        kind = record["type"]
        fields = {key: value for key, value in record.items() if key != "type"}
        fields["day"] = self._day(record["tick_t"])
        if kind in ("refused", "halt"):
            yield {"type": RISK, "event": kind, **fields}
            return
        if self.live and kind in ("entry", "exit"):
            # a broker's fill: its order line was the intent's, under the same tag
            yield {"type": FILL, "action": kind, **fields}
            return
        if kind == "intent":
            action = "entry" if fields["reason"] == "entry" else "exit"
        else:
            action = {"entry": "entry", "exit": "exit", "stop_moved": "modify"}[kind]
        if self.latency is not None and recv_ns:
            self.latency.record(submit_ns - recv_ns)
        order = {
            "type": ORDER,
            "action": action,
            "tag": self.tag(record["seq"]),
            **fields,
            "recv_ns": recv_ns,
            "submit_ns": submit_ns,
        }
        yield order
        if action != "modify" and kind != "intent":
            yield {"type": FILL, "action": action, "tag": order["tag"], **fields}

    def tag(self, seq: int) -> str:
        """Return the unique order tag of event ``seq`` of this run (alphanumeric, <= 20)."""
        return f"{TAG_PREFIX}{self.run_id}{base36(seq)}"

    def _day(self, ts: int) -> str:
        # one calendar lookup per minute with orders, not per order
        minute = ts // MINUTE_NS
        day = self._days.get(minute)
        if day is None:
            if len(self._days) > 1024:
                self._days.clear()
            day = self._days[minute] = trading_day(ts, self.session).isoformat()
        return day

    def control(self, action: str, **fields) -> None:
        """Append a control line (start, stop, pause, resume, kill, flatten, restore)."""
        self.line(CONTROL, action, **fields)

    def line(self, kind: str, action: str, **fields) -> None:
        """Append one line of ``kind`` (``order``, ``broker``, ``control``, ...) stamped now."""
        line = {"type": kind, "action": action, "ts": time.time_ns(), **fields}
        self._append(orjson.dumps(line) + b"\n")

    @property
    def writable(self) -> bool:
        """Whether every line so far reached the file."""
        return self.error is None

    def _append(self, data: bytes) -> None:
        self._pending += data
        if self.error is None:
            self.flush()

    def flush(self) -> bool:
        """Write the lines held back (and ``fsync`` with ``journal.fsync``); return success.

        Lines are handed to the OS whole or in part and never twice, so a write that fails
        midway is finished by the next call.
        """
        try:
            self._restore_removed()
            while self._pending:
                del self._pending[: os.write(self._fd, self._pending)]
            if self.fsync:
                os.fsync(self._fd)
        except OSError as error:
            self._set_error(f"{errno.errorcode.get(error.errno, 'EIO')}: {error.strerror}")
            return False
        self._set_error(None)
        return True

    def _restore_removed(self) -> None:
        if os.fstat(self._fd).st_nlink:
            return
        # removed under the running engine: what the open file holds goes back to the path,
        # whole or not at all, so that a restart still finds every line
        copy = self.path.with_name(f"{self.path.name}.restoring-{time.time_ns()}")
        fresh = os.open(copy, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            offset, size = 0, os.fstat(self._fd).st_size
            while offset < size:
                offset += os.write(fresh, os.pread(self._fd, min(1 << 20, size - offset), offset))
            os.fsync(fresh)
            os.link(copy, self.path)  # fails if another file took the path meanwhile
        except OSError:
            os.close(fresh)
            raise
        finally:
            os.unlink(copy)
        os.close(self._fd)
        self._fd = fresh

    def _set_error(self, error: str | None) -> None:
        if error == self.error:
            return
        self.error = error
        if self.on_state is not None:
            self.on_state(error)

    def close(self) -> None:
        """Write what is held back, if the file takes it, and close the file."""
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1


class JournalError(Exception):
    """The journal cannot be opened for writing; the message names the path."""


def repair_tail(path: Path) -> dict | None:
    """End the journal at ``path`` cleanly before anything is appended to it.

    A crash or power loss mid-write can leave a last line without its newline. Appending after
    it would glue the next line (a fill, say) onto it and lose both. A last line that is whole
    JSON but for its newline gets the newline; a torn one is moved to ``<name>.torn-<ns>`` for
    the operator and cut from the journal.

    Returns
    -------
    dict or None
        None when the journal ends cleanly or is absent; else ``newline_added: True``, or
        ``torn_bytes`` and ``kept_in`` (the file that holds them).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with open(path, "rb+") as file:
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return None
        start = _last_line_start(file, size)
        file.seek(start)
        tail = file.read()
        try:
            whole = isinstance(orjson.loads(tail), dict)
        except orjson.JSONDecodeError:
            whole = False
        if whole:
            file.seek(size)
            file.write(b"\n")
            return {"newline_added": True}
        kept = path.with_name(f"{path.name}.torn-{time.time_ns()}")
        kept.write_bytes(tail)
        file.truncate(start)
        file.flush()
        os.fsync(file.fileno())
    return {"torn_bytes": len(tail), "kept_in": str(kept)}


def _last_line_start(file, size: int) -> int:
    end = size
    while end > 0:
        begin = max(0, end - 65_536)
        file.seek(begin)
        newline = file.read(end - begin).rfind(b"\n")
        if newline >= 0:
            return begin + newline + 1
        end = begin
    return 0


def read_journal(path: str | os.PathLike[str]) -> Iterator[dict]:
    """Yield the journal's lines; a torn last line (killed mid-write) is skipped."""
    try:
        with open(path, "rb") as file:
            for raw in file:
                try:
                    yield orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
    except FileNotFoundError:
        return


def restore(state: State, path: str | os.PathLike[str], today: date) -> dict:
    """Rebuild positions, brackets, P&L and halts from the journal into fresh ``state``.

    Positions and brackets come from every fill and modify line, so a position carried
    overnight survives; the day's realized P&L from the fills of ``today``; a kill or max-loss
    halt stays until a later ``resume`` line. Return a summary of what was restored.
    """
    positions: dict[str, dict] = {}
    realized = day_realized = peak = max_drawdown = 0.0
    #: realized P&L after each trading day's last exit, by day
    day_ends: dict[str, float] = {}
    halt = 0
    last_seq = -1
    for line in read_journal(path):
        kind = line.get("type")
        last_seq = max(last_seq, line.get("seq", -1))
        if kind == FILL and line.get("symbol") in state.index:
            symbol = line["symbol"]
            held = positions.get(symbol)
            if line["action"] == "entry" and held is not None and held["side"] == line["side"]:
                held.update(qty=held["qty"] + line["qty"], avg_price=line["avg_price"])
            elif line["action"] == "entry":
                positions[symbol] = dict(line)
            else:
                if held is not None:
                    held["qty"] -= line["qty"]
                    if held["qty"] <= 0:
                        del positions[symbol]
                realized += line["pnl"]
                day_ends[line["day"]] = realized
                peak = max(peak, realized)
                max_drawdown = max(max_drawdown, peak - realized)
                if line["day"] == today.isoformat():
                    day_realized += line["pnl"]
        elif kind == ORDER and line["action"] == "modify" and line["symbol"] in positions:
            positions[line["symbol"]].update(stop=line["stop"], stop_reason=line["reason"])
        elif kind == RISK and line["event"] == "halt" and line["reason"] != "daily_loss":
            halt = layout.GATE_REASONS.index(line["reason"])
        elif kind == CONTROL and line["action"] == "resume":
            halt = 0
        elif kind == CONTROL and line["action"] == "kill":
            halt = layout.G_HALTED

    for symbol, fill in positions.items():
        _restore_position(state, state.index[symbol], fill)
    book, acct = state.book, state.acct
    for day in sorted(day_ends):
        if day < today.isoformat():
            # each finished trading day ends as the kernels end one: the end-of-day floor
            # follows the same rule it followed live
            book[acct, layout.A_REALIZED] = day_ends[day]
            close_day(book)
    book[acct, layout.A_REALIZED] = realized
    book[acct, layout.A_DAY_REALIZED] = day_realized
    # the figures the first tick's mark-to-market would give (no price yet: nothing unrealized),
    # so the status and the loss limits read the restored account before any tick
    book[acct, layout.A_EQUITY] = realized
    book[acct, layout.A_PEAK] = peak
    book[acct, layout.A_DRAWDOWN] = peak - realized
    book[acct, layout.A_MAX_DRAWDOWN] = max_drawdown
    book[acct, layout.A_DAY_PNL] = day_realized
    state.ints[acct, layout.A_HALT] = halt
    state.ints[acct, layout.A_SEQ] = last_seq + 1
    return {
        "positions": sorted(positions),
        "realized_pnl": realized,
        "day_realized_pnl": day_realized,
        "halt": layout.GATE_REASONS[halt] if halt else None,
    }


def _restore_position(state: State, i: int, fill: dict) -> None:
    row = state.book[i]
    tick = row[layout.I_TICK_SIZE]
    side = layout.LONG if fill["side"] == "buy" else layout.SHORT
    row[layout.I_SIDE] = side
    row[layout.I_QTY] = fill["qty"]
    entry_ticks = fill["avg_price"] / tick
    if abs(entry_ticks - round(entry_ticks)) < 1e-6:
        entry_ticks = round(entry_ticks)  # undo the float error of price = ticks * tick_size
    row[layout.I_ENTRY_TICKS] = entry_ticks
    if row[layout.I_REF_PRICE] == 0.0:
        # the band checks the first tick after the restart against the entry
        row[layout.I_REF_PRICE] = fill["avg_price"]
    # exits are checked from the first tick after the restart on
    row[layout.I_ENTERED_AT] = -1.0
    if "stop" in fill:
        row[layout.I_TARGET] = round(fill["target"] / tick)
        row[layout.I_STOP] = round(fill["stop"] / tick)
        reason = fill.get("stop_reason", "stop")
        row[layout.I_STOP_KIND] = layout.EXIT_REASONS.index(reason)
    else:
        row[layout.I_STOP_KIND] = layout.R_NONE
    state.ints[i, layout.I_ENTRY_TS] = fill["tick_t"]
