"""Simulated feed: a deterministic, seeded random walk over several instruments.

Every price lives on its instrument's tick grid as an integer count of ticks. The price written
to the batch is ``(ticks * tick_units) / 10**decimals``, where ``tick_size == tick_units /
10**decimals`` exactly in decimal: one division of two exact doubles, so it is the correctly
rounded double of the decimal grid price. That is exactly what the CSV parser produces for the
same price written with ``decimals`` digits, so sim -> CSV -> replay round-trips bit for bit.

The random stream is splitmix64 with its state in a one-element uint64 array, and the tick
timestamps derive from a global tick counter, so output depends only on the seed and the number
of ticks emitted so far: ``fill(batch, 10)`` twice equals ``fill(batch, 20)`` once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from decimal import Decimal

import numpy as np
from numba import njit

from engine.feeds.csv_nb import build_symbol_table
from engine.feeds.ticks import TickBatch, new_reject_counts, rejects_to_dict

#: splitmix64 increment (the 64-bit golden ratio) and output mixing multipliers.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
#: Bit masks for slicing one 64-bit draw into independent fields.
_LOW32 = np.uint64(0xFFFFFFFF)
_LOW16 = np.uint64(0xFFFF)
#: Shift amounts as uint64 so numba keeps the arithmetic unsigned.
_S16, _S27, _S30, _S31, _S32, _S48 = (np.uint64(k) for k in (16, 27, 30, 31, 32, 48))
#: Simulated trade sizes are uniform integers in [1, MAX_SIZE].
MAX_SIZE: int = 100
#: Most decimals a tick size may have; beyond this the grid price is not a plain double.
MAX_TICK_DECIMALS: int = 15
#: Ticks generated per chunk by the file writers (bounded memory for any file length).
WRITE_CHUNK_TICKS: int = 65536
#: Header of files written by :func:`write_ticks_csv`.
CSV_HEADER = b"ts,symbol,price,size\n"


@njit(cache=True)
def _splitmix64(state):
    z = state[0] + _GOLDEN
    state[0] = z
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True)
def _sim_fill(
    rng, count, ticks, tick_units, scale, step_ticks, start_ts, step_ns, idx, price, size, ts, n
):
    ninst = np.uint64(ticks.shape[0])
    span = np.uint64(2 * step_ticks + 1)
    k0 = count[0]
    for j in range(n):
        r = _splitmix64(rng)
        # Lemire's multiply-shift maps 32 random bits onto [0, ninst) without a division.
        i = np.int64(((r & _LOW32) * ninst) >> _S32)
        move = np.int64(((r >> _S32) & _LOW16) % span) - step_ticks
        t = ticks[i] + move
        if t < 1:
            # Reflect at one tick so a price never reaches zero or below.
            t = 2 - t
        ticks[i] = t
        idx[j] = i
        price[j] = np.float64(t * tick_units[i]) / scale[i]
        size[j] = np.float64(1 + np.int64((r >> _S48) % np.uint64(MAX_SIZE)))
        ts[j] = start_ts + np.int64(np.float64(k0 + j) * step_ns)
    count[0] = k0 + n


def tick_grid(tick_size: float) -> tuple[int, int]:
    """Split a tick size into integer units and decimals, ``tick_size == units / 10**decimals``.

    Parameters
    ----------
    tick_size : float
        Positive tick size, e.g. ``0.05``; its shortest repr defines the decimals.

    Returns
    -------
    units : int
        Tick size in units of ``10**-decimals``.
    decimals : int
        Number of decimals of the tick size (0 for whole ticks).

    Raises
    ------
    ValueError
        If the tick size is not positive or has more than ``MAX_TICK_DECIMALS`` decimals.
    """
    if not tick_size > 0 or not np.isfinite(tick_size):
        raise ValueError(f"tick size must be positive and finite, got {tick_size!r}")
    dec = Decimal(repr(float(tick_size))).normalize()
    exponent = int(dec.as_tuple().exponent)
    decimals = max(0, -exponent)
    if decimals > MAX_TICK_DECIMALS:
        raise ValueError(f"tick size {tick_size!r} has more than {MAX_TICK_DECIMALS} decimals")
    units = int(dec.scaleb(decimals))
    return units, decimals


class SimFeed:
    """Seeded random walk for several instruments, filling a :class:`TickBatch` per call.

    Each tick picks an instrument at random (a seeded random interleaving, not round-robin) and
    moves its price by a uniform integer number of ticks in ``[-step_ticks, step_ticks]``,
    reflecting at one tick so prices stay positive. Sizes are integers in ``[1, MAX_SIZE]``.
    Timestamps start at ``start_ts`` and advance ``1e9 / ticks_per_second`` ns per tick.

    Parameters
    ----------
    symbols : list[str]
        Instrument symbols; the position is the instrument index.
    tick_sizes : list[float]
        Tick size per instrument.
    start_prices : list[float]
        Starting price per instrument, rounded to its tick grid (at least one tick).
    seed : int
        RNG seed; the same seed gives bit-identical ticks.
    ticks_per_second : float
        Simulated tick rate, which sets the timestamp spacing.
    step_ticks : int
        Largest move per tick, in ticks.
    start_ts : int or None
        Timestamp of the first tick in ns since the epoch; ``time.time_ns()`` when None.
    """

    def __init__(
        self,
        symbols: list[str],
        tick_sizes: list[float],
        start_prices: list[float],
        seed: int,
        ticks_per_second: float,
        step_ticks: int = 1,
        start_ts: int | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("SimFeed needs at least one symbol")
        if not len(symbols) == len(tick_sizes) == len(start_prices):
            raise ValueError(
                f"symbols, tick_sizes and start_prices differ in length: "
                f"{len(symbols)}, {len(tick_sizes)}, {len(start_prices)}"
            )
        if not ticks_per_second > 0 or not np.isfinite(ticks_per_second):
            raise ValueError(f"ticks_per_second must be positive, got {ticks_per_second!r}")
        if step_ticks < 0:
            raise ValueError(f"step_ticks must be >= 0, got {step_ticks}")
        build_symbol_table(list(symbols))  # same symbol rules as the parser: non-empty, unique
        self.symbols: list[str] = list(symbols)
        self.tick_sizes: list[float] = [float(t) for t in tick_sizes]
        self.seed = int(seed)
        self.ticks_per_second = float(ticks_per_second)
        self.step_ticks = int(step_ticks)
        self.start_ts: int = time.time_ns() if start_ts is None else int(start_ts)
        grids = [tick_grid(t) for t in self.tick_sizes]
        self._tick_units = np.array([u for u, _ in grids], np.int64)
        self.decimals: list[int] = [d for _, d in grids]
        self._scale = np.array([float(10**d) for d in self.decimals], np.float64)
        start = []
        for p, (units, decimals) in zip(start_prices, grids, strict=True):
            ticks = round(Decimal(repr(float(p))).scaleb(decimals) / units)
            start.append(max(1, ticks))
        self._ticks = np.array(start, np.int64)
        self._rng = np.array([self.seed & 0xFFFFFFFFFFFFFFFF], np.uint64)
        self._count = np.zeros(1, np.int64)
        self._step_ns = 1e9 / self.ticks_per_second
        self._rejects = new_reject_counts()

    @property
    def ticks_emitted(self) -> int:
        """Ticks generated so far."""
        return int(self._count[0])

    @property
    def price_ticks(self) -> np.ndarray:
        """Current price of each instrument in ticks (a copy)."""
        return self._ticks.copy()

    @property
    def prices(self) -> np.ndarray:
        """Current price of each instrument (a copy), computed exactly as in the batches."""
        return (self._ticks * self._tick_units).astype(np.float64) / self._scale

    @property
    def rejected(self) -> dict[str, int]:
        """Always zero counts; present so every feed has the same interface."""
        return rejects_to_dict(self._rejects)

    def fill(self, batch: TickBatch, n: int) -> int:
        """Generate the next ``n`` ticks into ``batch`` rows ``[0, n)``.

        Parameters
        ----------
        batch : TickBatch
            Scratch arrays to fill; nothing else is allocated.
        n : int
            Number of ticks, at most ``batch.capacity``.

        Returns
        -------
        int
            ``n``, also stored in ``batch.n``.
        """
        n = int(n)
        if n < 0 or n > batch.capacity:
            raise ValueError(f"n must be in [0, {batch.capacity}], got {n}")
        _sim_fill(
            self._rng,
            self._count,
            self._ticks,
            self._tick_units,
            self._scale,
            self.step_ticks,
            self.start_ts,
            self._step_ns,
            batch.idx,
            batch.price,
            batch.size,
            batch.ts,
            n,
        )
        batch.n = n
        return n


@njit(cache=True)
def _write_int(out, o, v, min_digits, tmp):
    neg = v < 0
    if neg:
        v = -v
    k = 0
    while v > 0 or k < min_digits:
        tmp[k] = 48 + v % 10
        v //= 10
        k += 1
    if neg:
        out[o] = 45
        o += 1
    for j in range(k - 1, -1, -1):
        out[o] = tmp[j]
        o += 1
    return o


@njit(cache=True)
def _format_csv_rows(idx, price, size, ts, scale, decimals, sym_bytes, sym_lens, n, out):
    tmp = np.empty(24, np.uint8)
    o = 0
    for j in range(n):
        o = _write_int(out, o, ts[j], 1, tmp)
        out[o] = 44
        o += 1
        i = idx[j]
        for c in range(sym_lens[i]):
            out[o] = sym_bytes[i, c]
            o += 1
        out[o] = 44
        o += 1
        # price * 10**d is within far less than 0.5 of the integer grid value, so rint is exact.
        units = np.int64(np.rint(price[j] * scale[i]))
        d = decimals[i]
        if d == 0:
            o = _write_int(out, o, units, 1, tmp)
        else:
            o = _write_int(out, o, units, d + 1, tmp)
            # Shift the last d digits right by one to make room for the decimal point.
            for c in range(o, o - d, -1):
                out[c] = out[c - 1]
            out[o - d] = 46
            o += 1
        out[o] = 44
        o += 1
        o = _write_int(out, o, np.int64(size[j]), 1, tmp)
        out[o] = 10
        o += 1
    return o


def _check_csv_symbols(symbols: list[str]) -> None:
    for s in symbols:
        if any(c in s for c in ',"\r\n'):
            raise ValueError(f"symbol {s!r} cannot be written to CSV unquoted")


def write_ticks_csv(
    path: str | os.PathLike[str],
    symbols: list[str],
    tick_sizes: list[float],
    start_prices: list[float],
    n_ticks: int,
    seed: int,
    start_ts: int,
    step_ticks: int = 1,
    ticks_per_second: float = 1000.0,
    retime: Callable[[np.ndarray], None] | None = None,
) -> None:
    """Write ``n_ticks`` simulated ticks as CSV ``ts,symbol,price,size`` with bounded memory.

    Prices are written with exactly the decimals of their tick size, so replaying the file
    gives the same float64 values as :class:`SimFeed` with the same arguments.

    Parameters
    ----------
    path : str or os.PathLike
        Output file, overwritten.
    symbols, tick_sizes, start_prices, seed, start_ts, step_ticks, ticks_per_second
        As for :class:`SimFeed`.
    n_ticks : int
        Number of ticks to write.
    retime : callable, optional
        Rewrites each chunk's stamps in place (``SessionClock.retime``: session hours only).
    """
    _check_csv_symbols(symbols)
    feed = SimFeed(symbols, tick_sizes, start_prices, seed, ticks_per_second, step_ticks, start_ts)
    sym_bytes, sym_lens, _ = build_symbol_table(list(symbols))
    decimals = np.array(feed.decimals, np.int64)
    scale = np.array([float(10**d) for d in feed.decimals], np.float64)
    batch = TickBatch(WRITE_CHUNK_TICKS)
    # ts (20) + price (sign, 19 digits, point, padding) + size (20) + separators, with headroom.
    line_max = int(sym_bytes.shape[1]) + 96
    out = np.empty(WRITE_CHUNK_TICKS * line_max, np.uint8)
    with open(path, "wb") as f:
        f.write(CSV_HEADER)
        remaining = int(n_ticks)
        while remaining > 0:
            m = feed.fill(batch, min(remaining, WRITE_CHUNK_TICKS))
            if retime is not None:
                retime(batch.ts[:m])
            nbytes = _format_csv_rows(
                batch.idx,
                batch.price,
                batch.size,
                batch.ts,
                scale,
                decimals,
                sym_bytes,
                sym_lens,
                m,
                out,
            )
            f.write(memoryview(out)[:nbytes])
            remaining -= m


def write_ticks_npy(
    path: str | os.PathLike[str],
    symbols: list[str],
    tick_sizes: list[float],
    start_prices: list[float],
    n_ticks: int,
    seed: int,
    start_ts: int,
    step_ticks: int = 1,
    ticks_per_second: float = 1000.0,
    retime: Callable[[np.ndarray], None] | None = None,
) -> None:
    """Write ``n_ticks`` simulated ticks as a structured ``.npy`` with bounded memory.

    The array has fields ``ts`` (int64), ``symbol`` (unicode), ``price`` and ``size``
    (float64) and is filled chunk by chunk through a memory map.

    Parameters
    ----------
    path : str or os.PathLike
        Output file, overwritten.
    symbols, tick_sizes, start_prices, seed, start_ts, step_ticks, ticks_per_second
        As for :class:`SimFeed`.
    n_ticks : int
        Number of ticks to write.
    retime : callable, optional
        Rewrites each chunk's stamps in place (``SessionClock.retime``: session hours only).
    """
    feed = SimFeed(symbols, tick_sizes, start_prices, seed, ticks_per_second, step_ticks, start_ts)
    width = max(len(s) for s in symbols)
    dtype = np.dtype([("ts", "<i8"), ("symbol", f"<U{width}"), ("price", "<f8"), ("size", "<f8")])
    names = np.array(symbols, dtype=f"<U{width}")
    n_ticks = int(n_ticks)
    if n_ticks == 0:
        # A zero-length memmap cannot be created; an empty array is tiny anyway.
        np.save(path, np.zeros(0, dtype))
        return
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n_ticks,))
    batch = TickBatch(WRITE_CHUNK_TICKS)
    a = 0
    while a < n_ticks:
        m = feed.fill(batch, min(n_ticks - a, WRITE_CHUNK_TICKS))
        if retime is not None:
            retime(batch.ts[:m])
        rows = arr[a : a + m]
        rows["ts"] = batch.ts[:m]
        rows["symbol"] = names[batch.idx[:m]]
        rows["price"] = batch.price[:m]
        rows["size"] = batch.size[:m]
        a += m
    arr.flush()
    del arr
