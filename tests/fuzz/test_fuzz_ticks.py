"""Fuzz the CSV and NPY tick readers of ``engine.feeds.replay``.

Invariants, for any file bytes:

* opening and reading either works or raises ``ValueError`` naming the file (the backtest
  turns that into exit 2); nothing else escapes;
* the ticks and the counted refusals do not depend on the block size or the batch size;
* a CSV written from known rows (columns in any order, quotes, blanks, CRLF, every number
  spelling, bad rows of each kind) reads back exactly: ticks bit for bit, refusals by reason.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.feeds.replay import open_replay
from tests.fuzz.harness import (
    expected_of,
    fuzz_settings,
    save_failure,
    saved_ids,
    saved_inputs,
    saves_failures,
)

SYMBOLS = ["NIFTY", "BANKNIFTY", "ÄPFEL"]
T0 = 1_795_000_000_000_000_000


def read_all(path: Path, chunk_ticks: int, block_bytes: int) -> tuple[list, dict] | str:
    try:
        with open_replay(path, SYMBOLS, chunk_ticks, block_bytes=block_bytes) as replay:
            ticks = []
            for n in replay:
                batch = replay.batch
                # floats as their bits, so NaN compares equal to NaN and -0.0 differs from 0.0
                price, size = (
                    column[:n].view(np.int64).tolist() for column in (batch.price, batch.size)
                )
                ticks.extend(
                    zip(batch.idx[:n].tolist(), price, size, batch.ts[:n].tolist(), strict=True)
                )
            return ticks, replay.rejected
    except ValueError as error:
        assert str(path) in str(error), "a refused file is named"
        return "refused"


def check_reader(data: bytes, suffix: str) -> tuple[list, dict] | str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"ticks{suffix}"
        path.write_bytes(data)
        whole = read_all(path, 1 << 16, 1 << 20)
        pieces = read_all(path, 3, 7)
    assert pieces == whole, "the block and batch sizes change nothing"
    return whole


@saves_failures("csv")
def check_csv(data: bytes) -> tuple[list, dict] | str:
    """Assert the reader invariants for one CSV file and return its ticks and refusals."""
    return check_reader(data, ".csv")


@saves_failures("npy")
def check_npy(data: bytes) -> tuple[list, dict] | str:
    """Assert the reader invariants for one NPY file and return its ticks and refusals."""
    return check_reader(data, ".npy")


# -- CSV files from known rows -----------------------------------------------------------------

BLANKS = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def decimals(draw) -> tuple[str, float]:
    value = draw(
        st.floats(allow_nan=False, allow_infinity=False, width=64)
        | st.integers(-(10**20), 10**20)
        | st.sampled_from([0.0, -0.0, 22003.45, 1e-300, 5e-324, 1.7976931348623157e308])
    )
    text = draw(
        st.sampled_from([repr(value), f"{value:.6e}", f"{value:E}", f"{value:.17g}", str(value)])
        if isinstance(value, float)
        else st.sampled_from([str(value), f"+{value}" if value >= 0 else str(value)])
    )
    if draw(st.integers(0, 9)) == 0:
        text = draw(
            st.sampled_from(["nan", "NaN", "inf", "-Infinity", "+inf", ".5", "5.", "1e400"])
        )
    return text, float(text)


@st.composite
def csv_files(draw) -> tuple[bytes, list[tuple], dict[str, int]]:
    columns = ["ts", "price"]
    if draw(st.booleans()):
        columns.append("symbol")
    if draw(st.booleans()):
        columns.append("size")
    columns += draw(st.lists(st.sampled_from(["note", "x"]), max_size=2, unique=True))
    columns = draw(st.permutations(columns))
    header = [name.upper() if draw(st.booleans()) else name for name in columns]
    if "ts" in columns and draw(st.booleans()):
        header[columns.index("ts")] = "ts_ns"
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [",".join(f'"{name}"' if draw(st.booleans()) else name for name in header)]
    expected, rejected = [], {"not_a_number": 0, "malformed_row": 0}
    for _ in range(draw(st.integers(0, 12))):
        ts = draw(st.integers(-(2**63), 2**63 - 1) | st.integers(T0, T0 + 10**9))
        price_text, price = draw(decimals())
        size_text, size = draw(decimals()) if "size" in columns else ("", 0.0)
        symbol = draw(st.sampled_from([*SYMBOLS, "OTHER"]))
        fields = {"ts": str(ts), "price": price_text, "size": size_text, "symbol": symbol}
        fields |= {"note": draw(st.sampled_from(["", "a b", '"q,uoted"'])), "x": "7"}
        kind = draw(st.sampled_from(["good"] * 6 + ["junk", "empty", "short", "long", "huge_ts"]))
        if kind == "junk":
            fields[draw(st.sampled_from(["ts", "price"]))] += draw(
                st.sampled_from(["x", " 1", "e"])
            )
        elif kind == "empty":
            fields[draw(st.sampled_from(["ts", "price"]))] = ""
        elif kind == "huge_ts":
            fields["ts"] = str(2**63 + draw(st.integers(0, 10**6)))
        values = []
        for name in columns:
            text = fields[name]
            if name in ("ts", "price", "size", "symbol") and text and draw(st.booleans()):
                text = f'"{text}"'
            values.append(draw(BLANKS) + text + draw(BLANKS) if name != "symbol" else text)
        if kind == "short":
            values.pop()
        elif kind == "long":
            values.append("extra")
        lines.append(",".join(values))
        if kind in ("empty", "short", "long"):
            rejected["malformed_row"] += 1
        elif kind in ("junk", "huge_ts"):
            rejected["not_a_number"] += 1
        else:
            idx = (SYMBOLS.index(symbol) if symbol in SYMBOLS else -1) if "symbol" in columns else 0
            expected.append((idx, price, size, ts))
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["", "   "])))
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    return text.encode(), expected, rejected


def as_bits(rows: list[tuple]) -> list[tuple]:
    return [(idx, bits(price), bits(size), ts) for idx, price, size, ts in rows]


def bits(value: float) -> int:
    return int(np.float64(value).view(np.int64))


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, at, byte in edits:
        at = at % (len(out) + 1)
        if kind == 0:
            del out[at:]
        elif kind == 1:
            out[at:at] = bytes([byte])
        elif at < len(out):
            out[at] = byte
    return bytes(out)


EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 10**4), st.integers(0, 255)), max_size=4
)


@fuzz_settings(2)
@given(csv_files())
def test_csv_files_read_back_what_was_written(file) -> None:
    data, rows, rejected = file
    expected = {"ticks": as_bits(rows), "rejected": rejected}
    try:
        assert_reads(data, expected)
    except AssertionError:
        save_failure("csv", data, ".csv", expected)
        raise


def assert_reads(data: bytes, expected: dict) -> None:
    result = check_csv(data)
    assert result != "refused"
    ticks, counted = result
    assert [list(tick) for tick in ticks] == [list(tick) for tick in expected["ticks"]]
    assert counted == expected["rejected"]


@fuzz_settings(2)
@given(csv_files(), EDITS)
def test_damaged_csv_files_are_read_or_refused(file, edits) -> None:
    check_csv(mutate(file[0], edits))


# -- NPY files ---------------------------------------------------------------------------------

NPY_FIELDS = st.fixed_dictionaries(
    {
        "ts": st.sampled_from(["<i8", ">i8", "<u8", "<i4", "<f8"]),
        "price": st.sampled_from(["<f8", "<f4", ">f8", "<i8", "<u2", "<U3"]),
    },
    optional={
        "size": st.sampled_from(["<f8", "<i4", "<f2"]),
        "symbol": st.sampled_from(["<U9", "<U3", "S9", "S1", "<U0", "<i8"]),
        "idx": st.sampled_from(["<i8", "<u1", "<i2"]),
    },
)


@st.composite
def npy_files(draw) -> bytes:
    fields = draw(NPY_FIELDS)
    names = draw(st.permutations(list(fields)))
    dtype = np.dtype([(name, fields[name]) for name in names])
    rows = draw(st.integers(0, 20))
    raw = draw(st.binary(min_size=rows * dtype.itemsize, max_size=rows * dtype.itemsize))
    array = np.frombuffer(raw, dtype) if rows else np.zeros(0, dtype)
    if "symbol" in fields and dtype["symbol"].kind in "US" and rows:
        array = array.copy()
        names = draw(st.lists(st.sampled_from([*SYMBOLS, "X", ""]), min_size=rows, max_size=rows))
        kind = dtype["symbol"].kind
        array["symbol"] = [name.encode() if kind == "S" else name for name in names]
    out = io.BytesIO()
    np.save(out, array if draw(st.integers(0, 9)) else array.reshape(-1, 1))
    return out.getvalue()


@fuzz_settings(2)
@given(npy_files())
def test_npy_files_are_read_or_refused(data: bytes) -> None:
    check_npy(data)


@fuzz_settings(2)
@given(npy_files(), EDITS)
def test_damaged_npy_files_are_read_or_refused(data: bytes, edits) -> None:
    check_npy(mutate(data, edits))


@pytest.mark.parametrize("path", saved_inputs("csv"), ids=saved_ids(saved_inputs("csv")))
def test_saved_csv_files_replay(path) -> None:
    expected = expected_of(path)
    if expected is None:
        check_csv(path.read_bytes())
    else:
        assert_reads(path.read_bytes(), expected)


@pytest.mark.parametrize("path", saved_inputs("npy"), ids=saved_ids(saved_inputs("npy")))
def test_saved_npy_files_replay(path) -> None:
    check_npy(path.read_bytes())


def test_saved_tick_files_exist() -> None:
    assert saved_inputs("csv") and saved_inputs("npy")
