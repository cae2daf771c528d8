"""Replay feed: ticks from a CSV or NPY file, one preallocated batch at a time.

Memory stays flat however long the file is. CSV is read with ``readinto`` in fixed-size blocks
into one reused byte buffer and parsed by the numba kernel in :mod:`engine.feeds.csv_nb`; the
incomplete last line of a block is carried to the front of the buffer before the next read. NPY
is memory-mapped and copied ``chunk_ticks`` rows at a time.

Usage::

    with open_replay("ticks.csv", ["NIFTY", "BANKNIFTY"]) as replay:
        while (n := replay.next_chunk()) > 0:
            on_ticks(replay.batch, n)  # rows [0, n) of batch.idx/price/size/ts
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
from numba import njit

from engine.feeds.csv_nb import (
    COL_COUNT,
    COL_DEFAULT_IDX,
    COL_PRICE,
    COL_SIZE,
    COL_SYMBOL,
    COL_TS,
    SLOW_PRICE,
    build_symbol_table,
    fnv1a,
    parse_csv,
)
from engine.feeds.ticks import TickBatch, new_reject_counts, rejects_to_dict

#: Ticks per batch unless the caller asks otherwise (about 2 MiB of scratch columns).
DEFAULT_CHUNK_TICKS: int = 65536
#: Bytes per CSV read; large enough that per-block Python overhead vanishes, small enough to cache.
DEFAULT_BLOCK_BYTES: int = 4 << 20
#: Extra buffer room for the incomplete line carried between blocks; grows only for longer lines.
_CARRY_SLACK = 64 << 10
#: Description of the accepted CSV columns, used in error messages.
CSV_COLUMNS_HELP = (
    "accepted columns are ts or ts_ns (int ns since epoch, required), price (required), "
    "symbol (optional) and size (optional); other columns are ignored"
)
#: Bytes searched at a time for the end of the header line.
_HEADER_WINDOW = 4096
#: UTF-8 byte order mark some spreadsheet tools put in front of the header.
_BOM = b"\xef\xbb\xbf"


@njit(cache=True)
def _map_symbol_codes(codes, table, table_idx, slots, out):
    # codes/table rows are zero-padded fixed-width strings as integer code units (uint8 or
    # uint32); matching them in numba avoids a per-chunk np.unique sort of strings.
    width = codes.shape[1]
    mask = slots.shape[0] - 1
    for r in range(codes.shape[0]):
        row = codes[r]
        j = np.int64(fnv1a(row, 0, width) & np.uint64(mask))
        found = -1
        while slots[j] >= 0:
            k = slots[j]
            same = True
            for c in range(width):
                if table[k, c] != row[c]:
                    same = False
                    break
            if same:
                found = table_idx[k]
                break
            j = (j + 1) & mask
        out[r] = found


class Replay(ABC):
    """A tick file read into one reused :class:`TickBatch`.

    Attributes
    ----------
    path : pathlib.Path
        The file being replayed.
    symbols : list[str]
        Configured symbols; the position is the instrument index written to ``batch.idx``.
    batch : TickBatch
        Scratch arrays filled by :meth:`next_chunk`, capacity ``chunk_ticks``.
    ticks_read : int
        Ticks delivered so far.
    bytes_total : int
        File size in bytes.
    """

    def __init__(self, path: str | os.PathLike[str], symbols: list[str], chunk_ticks: int) -> None:
        self.path = Path(path)
        self.symbols = list(symbols)
        self.batch = TickBatch(chunk_ticks)
        self.ticks_read = 0
        self.bytes_total = 0
        self._rejects = new_reject_counts()
        self._closed = False

    @property
    def rejected(self) -> dict[str, int]:
        """Rows dropped so far, by reason (see ``engine.feeds.ticks.REJECT_REASONS``)."""
        return rejects_to_dict(self._rejects)

    @property
    @abstractmethod
    def bytes_read(self) -> int:
        """Bytes of the file consumed so far, for progress reporting."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    @abstractmethod
    def next_chunk(self) -> int:
        """Fill ``batch`` with the next ticks in file order.

        Returns
        -------
        int
            Number of ticks filled (also stored in ``batch.n``); 0 at the end of the file.
        """

    def close(self) -> None:
        """Release the file; further reads raise ValueError."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: replay is closed")

    def __enter__(self) -> Replay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[int]:
        while (n := self.next_chunk()) > 0:
            yield n


class CsvReplay(Replay):
    """CSV replay parsed by the numba kernel; see :func:`open_replay` for the format.

    Parameters
    ----------
    path : str or os.PathLike
        CSV file with a header row.
    symbols : list[str]
        Configured symbols; unknown symbols in the file get instrument index -1.
    chunk_ticks : int
        Batch capacity.
    block_bytes : int
        Bytes per ``readinto``; lines longer than this are still handled (the buffer grows).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        symbols: list[str],
        chunk_ticks: int = DEFAULT_CHUNK_TICKS,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
    ) -> None:
        super().__init__(path, symbols, chunk_ticks)
        if block_bytes <= 0:
            raise ValueError(f"block_bytes must be positive, got {block_bytes}")
        self._sym_bytes, self._sym_lens, self._sym_slots = build_symbol_table(self.symbols)
        self._block = int(block_bytes)
        self._buf = np.empty(self._block + min(self._block, _CARRY_SLACK), np.uint8)
        self._pos = 0
        self._end = 0
        self._eof = False
        self._file_read = 0
        cap = self.batch.capacity
        # Each row has at most two decimals (price, size) that may need the slow path.
        self._slow = np.zeros((2 * cap, 4), np.int64)
        self._file: BinaryIO = open(self.path, "rb", buffering=0)  # noqa: SIM115
        try:
            self.bytes_total = os.fstat(self._file.fileno()).st_size
            self._cols = self._read_header()
        except BaseException:
            self._file.close()
            raise

    @property
    def bytes_read(self) -> int:
        """Bytes of the file consumed by the parser so far."""
        return self._file_read - (self._end - self._pos)

    def _refill(self) -> None:
        carry = self._end - self._pos
        if carry + self._block > self._buf.shape[0]:
            grown = np.empty(carry + self._block + _CARRY_SLACK, np.uint8)
            grown[:carry] = self._buf[self._pos : self._end]
            self._buf = grown
        elif carry:
            self._buf[:carry] = self._buf[self._pos : self._end]
        got = self._file.readinto(memoryview(self._buf)[carry : carry + self._block])
        got = got or 0
        self._pos = 0
        self._end = carry + got
        self._file_read += got
        if got == 0:
            self._eof = True

    def _header_error(self, detail: str) -> ValueError:
        return ValueError(
            f"{self.path}: a CSV header row is required ({CSV_COLUMNS_HELP}); {detail}"
        )

    def _read_header(self) -> np.ndarray:
        scanned = 0
        while True:
            # Look in small windows: the header is short and the first block may be 4 MiB.
            stop = min(scanned + _HEADER_WINDOW, self._end)
            nl = self._buf[scanned:stop].tobytes().find(b"\n")
            if nl >= 0:
                line_end = scanned + nl
                break
            scanned = stop
            if scanned < self._end:
                continue
            if self._eof:
                line_end = self._end
                break
            self._refill()
        raw = bytes(self._buf[:line_end])
        self._pos = min(line_end + 1, self._end)
        if raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw.strip():
            raise self._header_error("the first line is empty")
        text = raw.decode("utf-8", errors="replace")
        names = [f.strip().strip('"').strip().lower() for f in text.split(",")]
        cols = np.full(6, -1, np.int64)
        cols[COL_COUNT] = len(names)
        cols[COL_DEFAULT_IDX] = 0 if self.symbols else -1
        slots = {"ts": COL_TS, "ts_ns": COL_TS, "price": COL_PRICE}
        slots.update({"symbol": COL_SYMBOL, "size": COL_SIZE})
        for k, name in enumerate(names):
            slot = slots.get(name)
            if slot is None:
                continue
            if cols[slot] >= 0:
                raise self._header_error(f"column {name!r} given twice (ts and ts_ns count as one)")
            cols[slot] = k
        if cols[COL_TS] < 0 or cols[COL_PRICE] < 0:
            shown = text if len(text) <= 120 else text[:117] + "..."
            raise self._header_error(f"the first line is {shown!r}")
        return cols

    def next_chunk(self) -> int:
        """Parse the next ticks into ``batch``; return how many (0 at the end of the file)."""
        self._check_open()
        batch = self.batch
        n = 0
        while True:
            pos, n, nslow = parse_csv(
                self._buf,
                self._pos,
                self._end,
                self._eof,
                self._cols,
                self._sym_bytes,
                self._sym_lens,
                self._sym_slots,
                batch.idx,
                batch.price,
                batch.size,
                batch.ts,
                n,
                self._slow,
                self._rejects,
            )
            self._pos = pos
            if nslow:
                self._convert_slow(nslow)
            if n == batch.capacity or self._eof:
                break
            self._refill()
        batch.n = n
        self.ticks_read += n
        return n

    def _convert_slow(self, nslow: int) -> None:
        # float() is correctly rounded, and the kernel has already checked the decimal syntax.
        for row, field, start, stop in self._slow[:nslow].tolist():
            value = float(self._buf[start:stop].tobytes())
            if field == SLOW_PRICE:
                self.batch.price[row] = value
            else:
                self.batch.size[row] = value

    def close(self) -> None:
        """Close the file; further reads raise ValueError."""
        if not self._closed:
            self._file.close()
        super().close()


class NpyReplay(Replay):
    """Replay of a structured ``.npy`` array, memory-mapped and copied chunk by chunk.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy`` file holding a 1-D structured array; see :func:`open_replay` for the fields.
    symbols : list[str]
        Configured symbols; unknown symbols (and ``idx`` values out of range) become -1.
    chunk_ticks : int
        Batch capacity.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        symbols: list[str],
        chunk_ticks: int = DEFAULT_CHUNK_TICKS,
    ) -> None:
        super().__init__(path, symbols, chunk_ticks)
        self.bytes_total = self.path.stat().st_size
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except Exception as error:
            # numpy's header parser raises what it meets in a damaged file (EOFError for an
            # empty one, tokenize.TokenError, SyntaxError): all of them are a refused file
            raise ValueError(f"{self.path}: not a readable .npy file: {error}") from None
        names = arr.dtype.names
        if names is None or arr.ndim != 1:
            raise ValueError(
                f"{self.path}: expected a 1-D structured array with fields ts (or ts_ns) and "
                f"price, optional symbol or idx and size; got dtype {arr.dtype} "
                f"with shape {arr.shape}"
            )
        if "ts" in names and "ts_ns" in names:
            raise ValueError(f"{self.path}: fields 'ts' and 'ts_ns' both present; keep one")
        self._ts = self._field(arr, "ts" if "ts" in names else "ts_ns", "iu", required=True)
        self._ts_scratch = np.zeros(self.batch.capacity, np.uint64)
        self._price = self._field(arr, "price", "fiu", required=True)
        self._size = self._field(arr, "size", "fiu", required=False)
        # A symbol name is authoritative; a numeric idx is used only when no names are stored.
        self._symbol = self._field(arr, "symbol", "US", required=False)
        self._idx = None if self._symbol is not None else self._field(arr, "idx", "iu", False)
        self._rows = int(arr.shape[0])
        self._itemsize = int(arr.dtype.itemsize)
        self._offset = int(getattr(arr, "offset", self.bytes_total - self._rows * self._itemsize))
        self._row = 0
        self._arr: np.ndarray | None = arr
        if self._symbol is not None:
            self._build_code_table(self._symbol.dtype)

    def _build_code_table(self, dtype: np.dtype) -> None:
        # Symbols as the file stores them: fixed-width, zero-padded UCS-4 (U) or bytes (S).
        if dtype.kind == "U":
            width = dtype.itemsize // 4
            self._code_dtype = np.dtype(f"<U{width}")
            code_unit = np.uint32
            encoded = [s if len(s) <= width else None for s in self.symbols]
        else:
            width = dtype.itemsize
            self._code_dtype = np.dtype(f"S{width}")
            code_unit = np.uint8
            raw = [s.encode("utf-8") for s in self.symbols]
            encoded = [b if len(b) <= width else None for b in raw]
        # A symbol longer than the field can never appear in this file; leave it out.
        keep = [(k, v) for k, v in enumerate(encoded) if v is not None]
        self._code_unit = code_unit
        values = np.array([v for _, v in keep], dtype=self._code_dtype)
        self._table = values.view(code_unit).reshape(len(keep), max(width, 1))
        self._table_idx = np.array([k for k, _ in keep], np.int64)
        self._names = np.empty(self.batch.capacity, self._code_dtype)
        size = 2
        while size < 2 * len(keep):
            size *= 2
        self._slots = np.full(size, -1, np.int64)
        for row in range(len(keep)):
            j = int(fnv1a(self._table[row], 0, width)) & (size - 1)
            while self._slots[j] >= 0:
                j = (j + 1) & (size - 1)
            self._slots[j] = row

    def _field(self, arr: np.ndarray, name: str, kinds: str, required: bool) -> np.ndarray | None:
        names = arr.dtype.names or ()
        if name not in names:
            if required:
                want = "'ts' or 'ts_ns'" if name in ("ts", "ts_ns") else repr(name)
                raise ValueError(
                    f"{self.path}: structured array has no field {want} (fields: {list(names)})"
                )
            return None
        col = arr[name]
        if col.ndim != 1:
            raise ValueError(f"{self.path}: field {name!r} holds {col.shape[1:]} values per row")
        if col.dtype.kind not in kinds:
            raise ValueError(
                f"{self.path}: field {name!r} has dtype {col.dtype}, expected kind in {kinds!r}"
            )
        return col

    @property
    def bytes_read(self) -> int:
        """Bytes of the file consumed so far (header plus rows copied)."""
        if self._row == 0:
            return 0
        return self._offset + self._row * self._itemsize

    def next_chunk(self) -> int:
        """Copy the next rows into ``batch``; return how many (0 at the end of the file)."""
        self._check_open()
        a = self._row
        b = min(a + self.batch.capacity, self._rows)
        m = b - a
        batch = self.batch
        if m > 0:
            if self._ts.dtype == np.uint64:
                # uint64 stamps past int64's range would wrap negative (and be refused as
                # stale); held at the limit, the kernels refuse them as future_timestamp
                np.minimum(self._ts[a:b], np.uint64(2**63 - 1), out=self._ts_scratch[:m])
                batch.ts[:m] = self._ts_scratch[:m]
            else:
                batch.ts[:m] = self._ts[a:b]
            batch.price[:m] = self._price[a:b]
            if self._size is not None:
                batch.size[:m] = self._size[a:b]
            else:
                batch.size[:m] = 0.0
            idx = batch.idx[:m]
            if self._symbol is not None and self._symbol.dtype.itemsize == 0:
                idx[:] = -1
            elif self._symbol is not None:
                names = self._names[:m]
                names[:] = self._symbol[a:b]
                codes = names.view(self._code_unit).reshape(m, self._table.shape[1])
                _map_symbol_codes(codes, self._table, self._table_idx, self._slots, idx)
            elif self._idx is not None:
                idx[:] = self._idx[a:b]
                idx[(idx < 0) | (idx >= len(self.symbols))] = -1
            else:
                idx[:] = 0 if self.symbols else -1
        self._row = b
        batch.n = m
        self.ticks_read += m
        return m

    def close(self) -> None:
        """Drop the memory map; further reads raise ValueError."""
        self._arr = None
        self._ts = self._price = self._size = self._symbol = self._idx = None
        super().close()


def open_replay(
    path: str | os.PathLike[str],
    symbols: list[str],
    chunk_ticks: int = DEFAULT_CHUNK_TICKS,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Replay:
    """Open a tick file for replay, choosing the reader by extension.

    CSV (``.csv``) needs a header row; columns may come in any order: ``ts`` or ``ts_ns`` (int
    ns since epoch), ``price``, optional ``symbol`` (quotes allowed) and optional ``size``; other
    columns are ignored. Without a symbol column every tick is instrument 0. ``nan``, ``inf``
    and non-positive prices pass through for the engine to reject; rows with a non-numeric
    field (``not_a_number``) or a missing field or wrong field count (``malformed_row``) are
    dropped and counted in ``rejected``.

    NPY (``.npy``) holds a 1-D structured array with ``ts`` or ``ts_ns`` (integer), ``price``
    (numeric), optional ``symbol`` (unicode or bytes) or ``idx`` (integer), optional ``size``.

    Parameters
    ----------
    path : str or os.PathLike
        The tick file.
    symbols : list[str]
        Configured symbols; a tick's instrument index is its symbol's position, -1 if unknown.
    chunk_ticks : int
        Capacity of the reused batch, i.e. the most ticks one :meth:`Replay.next_chunk` returns.
    block_bytes : int
        CSV only: bytes per read into the reused buffer.

    Returns
    -------
    Replay
        A :class:`CsvReplay` or :class:`NpyReplay`; use it as a context manager.

    Raises
    ------
    ValueError
        For an unsupported extension, a CSV without a recognisable header or an NPY array
        without the required fields; the message names the file.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return CsvReplay(path, symbols, chunk_ticks, block_bytes)
    if suffix == ".npy":
        return NpyReplay(path, symbols, chunk_ticks)
    raise ValueError(f"{path}: unsupported tick file extension {suffix!r}; use .csv or .npy")
