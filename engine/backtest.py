"""Backtests: tick arrays or tick files through the same kernels as live trading.

Trades stream to a spool file as they close, so memory stays flat however long the file.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from engine.config import EngineConfig
from engine.core import Engine
from engine.events import trade_records
from kernels import layout


@dataclass
class TradeStats:
    """Running summary of closed trades."""

    trades: int = 0
    wins: int = 0
    losses: int = 0
    realized_pnl: float = 0.0
    gross_profit: float = 0.0
    gross_loss: float = 0.0

    def add(self, pnl: float) -> None:
        """Count one closed trade's P&layout."""
        self.trades += 1
        self.realized_pnl += pnl
        if pnl > 0.0:
            self.wins += 1
            self.gross_profit += pnl
        elif pnl < 0.0:
            self.losses += 1
            self.gross_loss -= pnl

    def summary(self, max_drawdown: float) -> dict:
        """Return the report's summary block."""
        win_rate = self.wins / self.trades if self.trades else 0.0
        profit_factor = self.gross_profit / self.gross_loss if self.gross_loss else None
        return {
            "trades": self.trades,
            "wins": self.wins,
            "losses": self.losses,
            "realized_pnl": self.realized_pnl,
            "win_rate": win_rate,
            "profit_factor": profit_factor,
            "max_drawdown": max_drawdown,
        }


@dataclass
class TradeLog:
    """An event sink that summarizes closed trades and keeps or spools their records."""

    symbols: tuple[str, ...]
    spool: object | None = None
    stats: TradeStats = field(default_factory=TradeStats)
    trades: list[dict] = field(default_factory=list)

    def __call__(self, rows: np.ndarray, recv_ns: int) -> None:
        records = trade_records(rows, self.symbols)
        for record in records:
            self.stats.add(record["pnl"])
        if self.spool is None:
            self.trades.extend(records)
        else:
            for record in records:
                self.spool.write(orjson.dumps(record))
                self.spool.write(b",")


#: a tick file that steps back by more than this after a tick, ns, had that tick dated ahead of
#: its own pace (a misdated, future tick); the report lists it
JUMP_BACK_NS = 60_000_000_000
#: jumps listed in the report; the rest are counted
JUMPS_LISTED = 20


@dataclass
class ClockJumps:
    """Find the ticks of a file dated ahead of the ticks after them, chunk by chunk."""

    count: int = 0
    listed: list[dict] = field(default_factory=list)
    _last_ts: int | None = None
    _seen: int = 0

    def add(self, ts: np.ndarray) -> None:
        """Scan the next chunk's timestamps."""
        if len(ts) == 0:
            return
        if self._last_ts is not None and self._last_ts - ts[0] > JUMP_BACK_NS:
            self._found(self._seen - 1, self._last_ts, int(ts[0]))
        for k in np.flatnonzero(ts[:-1] - ts[1:] > JUMP_BACK_NS):
            self._found(self._seen + int(k), int(ts[k]), int(ts[k + 1]))
        self._last_ts = int(ts[-1])
        self._seen += len(ts)

    def _found(self, tick: int, ts: int, next_ts: int) -> None:
        self.count += 1
        if len(self.listed) < JUMPS_LISTED:
            self.listed.append({"tick": tick, "ts": ts, "next_ts": next_ts})

    def report(self) -> dict:
        """Return the report's ``clock_jumps`` block."""
        return {"count": self.count, "first": self.listed}


@dataclass
class ArrayResult:
    """What ``run_arrays`` found."""

    trades: list[dict]
    realized_pnl: float
    rejected: dict[str, int]
    positions: dict[str, dict]
    engine: Engine


def run_arrays(
    cfg: EngineConfig, idx: np.ndarray, price: np.ndarray, size: np.ndarray, ts: np.ndarray
) -> ArrayResult:
    """Run tick arrays through a fresh engine and return its trades, P&L and positions."""
    engine = Engine(cfg)
    log = TradeLog(engine.state.symbols)
    engine.sinks.append(log)
    idx = np.ascontiguousarray(idx, np.int64)
    price = np.ascontiguousarray(price, np.float64)
    size = np.ascontiguousarray(size, np.float64)
    ts = np.ascontiguousarray(ts, np.int64)
    engine.process(idx, price, size, ts, len(idx))
    return ArrayResult(
        trades=log.trades,
        realized_pnl=engine.state.account(layout.A_REALIZED),
        rejected=engine.state.rejected_ticks(),
        positions={
            symbol: {k: p[k] for k in ("side", "qty", "entry_price", "target", "stop")}
            for symbol, p in engine.state.positions().items()
        },
        engine=engine,
    )


def run_file(
    cfg: EngineConfig,
    ticks_path: str | os.PathLike[str],
    report_path: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> dict:
    """Backtest a CSV or NPY tick file and return the report (also written when asked).

    Parameters
    ----------
    cfg : EngineConfig
        Instruments, strategy, bracket, risk and session to test.
    ticks_path : path
        The tick file (see ``engine.feeds.replay``).
    report_path : path, optional
        Where to write the report as JSON.
    progress : callable, optional
        Called after each chunk with (ticks read, bytes read, bytes total).
    """
    from engine.feeds.replay import open_replay

    started = time.perf_counter()
    engine = Engine(cfg)
    with (
        tempfile.TemporaryFile() as spool,
        open_replay(ticks_path, list(engine.state.symbols), cfg.state.chunk_ticks) as replay,
    ):
        log = TradeLog(engine.state.symbols, spool=spool)
        engine.sinks.append(log)
        load_s = time.perf_counter() - started
        run_started = time.perf_counter()
        batch = replay.batch
        jumps = ClockJumps()
        while (n := replay.next_chunk()) > 0:
            jumps.add(batch.ts[:n])
            engine.process(batch.idx, batch.price, batch.size, batch.ts, n)
            if progress is not None:
                progress(replay.ticks_read, replay.bytes_read, replay.bytes_total)
        run_s = time.perf_counter() - run_started
        rejected = dict(replay.rejected)
        for reason, count in engine.state.rejected_ticks().items():
            rejected[reason] = rejected.get(reason, 0) + count
        ticks = engine.state.account_int(layout.A_TICKS) + sum(rejected.values())
        report = {
            "ticks": ticks,
            "accepted_ticks": engine.state.account_int(layout.A_TICKS),
            "rejected_ticks": {k: v for k, v in rejected.items() if v},
            "refused_entries": engine.state.refused_entries(),
            "summary": log.stats.summary(engine.state.account(layout.A_MAX_DRAWDOWN)),
            "open_positions": engine.state.positions(),
            "clock_jumps": jumps.report(),
            "timing": {
                "load_s": load_s,
                "run_s": run_s,
                "ticks_per_s": ticks / run_s if run_s > 0 else math.inf,
            },
        }
        if report_path is not None:
            _write_report(report, spool, Path(report_path))
    return report


def _write_report(report: dict, spool, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    head = orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY)
    spool.seek(0, os.SEEK_END)
    length = spool.tell()
    spool.seek(0)
    with open(path, "wb") as out:
        out.write(head[:-1])
        out.write(b',"trades":[')
        remaining = length - 1  # drop the trailing comma of the last record
        while remaining > 0:
            chunk = spool.read(min(remaining, 1 << 20))
            out.write(chunk)
            remaining -= len(chunk)
        out.write(b"]}\n")
