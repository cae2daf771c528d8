"""Replay a flight recording (``engine.record``) through the kernels into a journal.

Each file starts from its own snapshot of the book and applies its records in order: batches of
ticks under the clock bound and pause bits they ran under live, broker fills, operator controls
and strategy changes between the same batches, and the router's flags. The journal written is
the one the session would have written: for a paper session its order and fill lines equal the
live journal's; with a live broker its intents equal the live ones (the fills are the broker's,
replayed as recorded).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson

from engine.config import ConfigError, EngineConfig, dump_config, validate_config
from engine.core import Engine
from engine.feeds.ticks import TickBatch
from engine.journal import Journal
from engine.record import BOOK, EVENT, FLAGS, HEADER, MAGIC, SUFFIX, TICKS
from kernels import layout
from kernels.record import HEAD_WORDS, ROW_WORDS


def recording_files(path: str | os.PathLike[str]) -> list[Path]:
    """Return the recording file ``path``, or the recordings in folder ``path`` in time order.

    Raises
    ------
    ConfigError
        When there is none.
    """
    path = Path(path)
    files = sorted(path.glob(f"*{SUFFIX}")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise ConfigError(f"--recording: no recording at {path}", path="--recording")
    return files


def read_records(path: Path) -> Iterator[tuple[int, int, int, int, np.ndarray]]:
    """Yield ``(kind, count, a, b, payload words)`` of each whole record of one file.

    A last record cut short (the process died mid-write) ends the file.

    Raises
    ------
    ConfigError
        When the file is not a recording.
    """
    with open(path, "rb") as file:
        if file.read(len(MAGIC)) != MAGIC:
            raise ConfigError(f"--recording: {path} is not an OTrade recording", path="--recording")
    size = path.stat().st_size
    if size < len(MAGIC) + 8 * HEAD_WORDS:
        return
    words = np.memmap(path, np.int64, "r", offset=len(MAGIC), shape=((size - len(MAGIC)) // 8,))
    pos, end = 0, len(words)
    while pos + HEAD_WORDS <= end:
        kind, count, a, b = (int(word) for word in words[pos : pos + HEAD_WORDS])
        length = count * ROW_WORDS if kind == TICKS else _payload_words(kind, count)
        if pos + HEAD_WORDS + length > end:
            return
        yield kind, count, a, b, words[pos + HEAD_WORDS : pos + HEAD_WORDS + length]
        pos += HEAD_WORDS + length


def _payload_words(kind: int, count: int) -> int:
    return -(-count // 8) if kind in (EVENT, HEADER) else count


def _document(payload: np.ndarray, count: int) -> dict:
    return orjson.loads(payload.tobytes()[:count])


def replay_session(
    cfg: EngineConfig, recording: str | os.PathLike[str], journal_path: str | os.PathLike[str]
) -> dict:
    """Replay ``recording`` (a file or a folder of them) and write its journal.

    Parameters
    ----------
    cfg : EngineConfig
        Must trade the recording's instruments; the recording's own configuration and state
        drive the replay.
    recording : path
        A recording file, or the ``record.dir`` folder (every file in time order).
    journal_path : path
        The journal to write (replaced).

    Returns
    -------
    dict
        Files, batches, ticks and events replayed, and the journal written.

    Raises
    ------
    ConfigError
        When the recording is missing, not a recording, or of other instruments.
    """
    out = Path(journal_path)
    out.unlink(missing_ok=True)
    totals = {"files": 0, "batches": 0, "ticks": 0, "events": 0, "journal": str(out)}
    for path in recording_files(recording):
        _replay_file(cfg, path, out, totals)
        totals["files"] += 1
    return totals


def _replay_file(cfg: EngineConfig, path: Path, out: Path, totals: dict) -> None:
    records = read_records(path)
    engine = journal = None
    batch = TickBatch(1)
    for kind, count, a, b, payload in records:
        if kind == HEADER:
            session_cfg = _session_config(cfg, _document(payload, count), path, out)
            engine = Engine(session_cfg)
            journal = Journal(session_cfg, engine.state.symbols)
            engine.sinks.append(journal)
            engine.controls.append(journal.control)
        elif engine is None:
            raise ConfigError(f"--recording: {path} has no header", path="--recording")
        elif kind == BOOK:
            _load_book(engine, payload)
        elif kind == FLAGS:
            n = engine.state.n
            values = payload.view(np.float64)
            engine.state.book[:n, layout.I_PENDING] = values[:n]
            engine.state.book[:n, layout.I_STOP_RESTING] = values[n:]
        elif kind == TICKS:
            if count > batch.capacity:
                batch = TickBatch(count)
            rows = payload.reshape(count, ROW_WORDS)
            batch.idx[:count] = rows[:, 0]
            batch.price[:count] = rows[:, 1].view(np.float64)
            batch.size[:count] = rows[:, 2].view(np.float64)
            batch.ts[:count] = rows[:, 3]
            state = engine.state
            state.ints[state.acct, layout.A_MAX_TS] = a
            state.ints[state.acct, layout.A_PAUSED] = b
            engine.process(batch.idx, batch.price, batch.size, batch.ts, count)
            totals["batches"] += 1
            totals["ticks"] += count
        elif kind == EVENT:
            _apply(engine, _document(payload, count))
            totals["events"] += 1
    if journal is not None:
        journal.close()


def _session_config(cfg: EngineConfig, header: dict, path: Path, out: Path) -> EngineConfig:
    if header["symbols"] != [inst.symbol for inst in cfg.instruments]:
        raise ConfigError(
            f"--recording: {path} trades {header['symbols']}, the config"
            f" {[inst.symbol for inst in cfg.instruments]}",
            path="instruments",
        )
    document = header["config"]
    document["journal"] = {"path": str(out), "fsync": False}
    document["record"] = {"enabled": False}
    return validate_config(document, str(path))


def _load_book(engine: Engine, payload: np.ndarray) -> None:
    state = engine.state
    state.book.ravel()[:] = payload.view(np.float64)
    state.calendar_end = int(state.ints[state.acct, layout.A_CALENDAR_END])


def _apply(engine: Engine, event: dict) -> None:
    op = event.pop("op")
    if op == "fill":
        note = event.pop("note")
        engine.broker_fill(**event, **note)
    elif op == "kill":
        engine.kill(event["ts"])
    elif op == "flatten":
        engine.flatten(event["symbol"], event["ts"])
    elif op == "close":
        engine.close(event["i"], event["reason"], event["ts"])
    elif op == "pause":
        engine.pause()
    elif op == "resume":
        engine.resume()
    elif op == "strategy":
        current = orjson.loads(dump_config(engine.cfg))
        cfg = validate_config({**current, **event}, "recorded PATCH /api/strategy")
        engine.cfg = cfg
        engine.state.apply_strategy(cfg)
