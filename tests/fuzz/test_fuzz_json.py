"""Fuzz the generic JSON frame parser: the Numba fast path against the orjson fallback.

Invariants, for any frame bytes:

* when the fast path says ``DONE``, orjson accepts the document and ``fill_batch`` fills
  bit-identical columns with nothing refused; when orjson refuses, the fast path never says
  ``DONE`` (so broken JSON can never be applied by the fast path);
* parsed in small batches (``MORE`` and resume), the fast path fills what one call fills;
* the ws feed's frame handler never raises, and every frame either delivers its ticks or is
  counted: a refused document once by reason, each refused tick of an array once.

Frames come valid (every JSON spelling of numbers and strings, random key order and blanks)
and broken (truncated at every offset, bytes flipped, inserted or removed).
"""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config_models import FeedConfig
from engine.feeds.csv_nb import build_symbol_table
from engine.feeds.frames import FRAME_REJECTS, decode_frame, fill_batch
from engine.feeds.json_nb import DONE, FALLBACK, MORE, parse_json_ticks
from engine.feeds.ticks import TickBatch
from engine.feeds.ws import MIN_TICK_BYTES, WsFeed
from tests.fuzz.harness import fuzz_settings, saved_ids, saved_inputs, saves_failures

#: configured symbols; one outside ASCII, so the fast path's UTF-8 handling is exercised
SYMBOLS = ("NIFTY", "BANKNIFTY", "ÄPFEL-指数")
INDEX = {symbol: row for row, symbol in enumerate(SYMBOLS)}
TABLE = build_symbol_table(list(SYMBOLS))
T0 = 1_795_000_000_000_000_000


def columns(batch: TickBatch, n: int) -> tuple[bytes, ...]:
    return tuple(column[:n].tobytes() for column in (batch.idx, batch.price, batch.size, batch.ts))


def parse_fast(data: bytes, capacity: int) -> tuple[int, int, int, TickBatch]:
    buf = np.frombuffer(data, np.uint8).copy()
    batch = TickBatch(capacity)
    cols = (batch.idx, batch.price, batch.size, batch.ts)
    n, position, status = parse_json_ticks(buf, 0, len(data), *TABLE, *cols)
    return n, position, status, batch


def parse_in_pieces(data: bytes, capacity: int) -> tuple[list[bytes], int]:
    # the fast path resumed after every MORE, as a feed with a small batch would call it
    buf = np.frombuffer(data, np.uint8).copy()
    batch = TickBatch(capacity)
    cols = (batch.idx, batch.price, batch.size, batch.ts)
    pieces, start = [], 0
    for _ in range(len(data) + 2):
        n, start, status = parse_json_ticks(buf, start, len(data), *TABLE, *cols)
        pieces.append(columns(batch, n))
        if status != MORE:
            return pieces, status
    raise AssertionError("the fast path never finished")


class Deliveries:
    def __init__(self) -> None:
        self.rows = 0
        self.calls = 0

    def __call__(self, batch: TickBatch, n: int, recv_ns: int) -> None:
        assert 0 < n <= batch.capacity
        self.rows += n
        self.calls += 1


def new_feed() -> tuple[WsFeed, Deliveries]:
    deliveries = Deliveries()
    cfg = FeedConfig(name="ws", url="ws://127.0.0.1:9/", max_frame_bytes=1 << 16)
    return WsFeed(cfg, INDEX, deliveries, lambda state: None), deliveries


@saves_failures("json")
def check_frame(data: bytes) -> None:
    """Assert every invariant of the module docstring for one frame."""
    n, _, status, fast = parse_fast(data, len(data) // MIN_TICK_BYTES + 1)
    assert status in (DONE, FALLBACK), "a batch sized for the frame never fills"
    try:
        orjson.loads(data)
        valid = True
    except orjson.JSONDecodeError:
        valid = False
    if not valid:
        assert status != DONE, "the fast path accepted a frame orjson refuses"
    if status == DONE:
        rejected = dict.fromkeys(FRAME_REJECTS, 0)
        ticks = decode_frame(data, rejected)
        assert ticks is not None
        slow = TickBatch(max(1, len(ticks)))
        slow_n, _ = fill_batch(ticks, 0, INDEX, slow, rejected)
        assert not any(rejected.values()), rejected
        assert (slow_n, columns(slow, slow_n)) == (n, columns(fast, n))
    pieces, piece_status = parse_in_pieces(data, 3)
    assert piece_status == status
    if status == DONE:
        whole = columns(fast, n)
        assert tuple(b"".join(piece[c] for piece in pieces) for c in range(4)) == whole

    feed, deliveries = new_feed()
    feed._ticks(memoryview(data), 0)
    counted = sum(feed.rejected.values())
    if not valid:
        assert (deliveries.rows, feed.rejected["bad_json"], counted) == (0, 1, 1)
        return
    doc = orjson.loads(data)
    if type(doc) is list:
        assert deliveries.rows + counted == len(doc), "every tick is delivered or counted"
    elif type(doc) is dict:
        assert deliveries.rows + counted == 1
    else:
        assert (deliveries.rows, feed.rejected["not_a_tick"], counted) == (0, 1, 1)
    assert deliveries.calls <= 1, "a frame is one kernel call"


# -- frame spellings ----------------------------------------------------------------------------

BLANKS = st.text(" \t\n\r", max_size=3)
DIGITS = st.text("0123456789", min_size=1, max_size=25)
EDGE_NUMBERS = [
    "0",
    "-0",
    "-0.0",
    "0.0",
    "0e0",
    "-0E-0",
    "0e999999",
    "1",
    "-1",
    "1e308",
    "1.7976931348623157e308",
    "1e309",
    "5e-324",
    "1e-400",
    "2.2250738585072014e-308",
    "9007199254740993",
    "123456789012345678901234567890",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "22003.45",
    "22003.4500000000000001",
    "1E+2",
    "1e007",
]
#: spellings JSON does not allow (orjson refuses them all)
NOT_JSON_NUMBERS = [
    "022",
    "022003.45",
    "22.",
    "+1",
    ".5",
    "1e",
    "1e+",
    "NaN",
    "-Infinity",
    "-",
    "0x10",
    "1_0",
    "--1",
    "1.e5",
    "01.5",
]


@st.composite
def exponent_numbers(draw) -> str:
    sign = draw(st.sampled_from(["", "-"]))
    whole = draw(st.sampled_from(["0", "1", "9"]) | DIGITS.map(lambda d: d.lstrip("0") or "0"))
    fraction = draw(st.sampled_from(["", "." + draw(DIGITS)]))
    exponent = draw(st.sampled_from(["e", "E"])) + draw(st.sampled_from(["", "+", "-"]))
    return sign + whole + fraction + exponent + draw(st.text("0123456789", min_size=1, max_size=4))


NUMBERS = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.integers(-(2**65), 2**65).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
    exponent_numbers(),
)
TIMESTAMPS = st.one_of(
    st.integers(T0, T0 + 10**12).map(str),
    st.integers(-(2**64), 2**64).map(str),
    st.sampled_from(EDGE_NUMBERS),
)
OTHER_VALUES = st.sampled_from(["true", "false", "null", '"22"', "[]", "{}", '{"p":1}', "[1]"])


def escaped(text: str, draw) -> str:
    # every character may be written as \uXXXX (surrogate pairs beyond the BMP) or \/ for /
    out = []
    for char in text:
        how = draw(st.integers(0, 3))
        if how == 0:
            out.append(json.dumps(char, ensure_ascii=True)[1:-1])
        elif how == 1 and char == "/":
            out.append("\\/")
        else:
            out.append(json.dumps(char, ensure_ascii=False)[1:-1])
    return '"' + "".join(out) + '"'


@st.composite
def symbols(draw) -> str:
    text = draw(st.sampled_from([*SYMBOLS, "UNKNOWN", "", "NIFTY "]) | st.text(max_size=8))
    how = draw(st.integers(0, 4))
    if how == 0:
        return escaped(text, draw)
    if how == 1:
        return draw(st.sampled_from(['"\\ud800"', '"N\\u0000"', '"\\x41"', '"NIF\tTY"']))
    return json.dumps(text, ensure_ascii=False)


@st.composite
def tick_objects(draw) -> str:
    fields = [("s", draw(symbols())), ("p", draw(NUMBERS)), ("t", draw(TIMESTAMPS))]
    if draw(st.booleans()):
        fields.append(("q", draw(NUMBERS)))
    if draw(st.integers(0, 9)) == 0:
        fields.append((draw(st.sampled_from(["x", "ss", "P", "é"])), draw(NUMBERS)))
    if draw(st.integers(0, 9)) == 0:
        fields.pop(draw(st.integers(0, len(fields) - 1)))
    if draw(st.integers(0, 9)) == 0:
        key = draw(st.sampled_from(["s", "p", "q", "t"]))
        fields.append((key, draw(OTHER_VALUES | NUMBERS | symbols())))
    if draw(st.integers(0, 19)) == 0:
        at = draw(st.integers(0, len(fields) - 1))
        fields[at] = (fields[at][0], draw(st.sampled_from(NOT_JSON_NUMBERS)))
    fields = draw(st.permutations(fields))
    parts = [f'{draw(BLANKS)}"{key}"{draw(BLANKS)}:{draw(BLANKS)}{value}' for key, value in fields]
    return "{" + ",".join(parts) + draw(BLANKS) + "}"


@st.composite
def frames(draw) -> bytes:
    ticks = draw(st.lists(tick_objects(), max_size=6))
    if len(ticks) == 1 and draw(st.booleans()):
        text = ticks[0]
    else:
        text = "[" + ",".join(draw(BLANKS) + tick + draw(BLANKS) for tick in ticks) + "]"
    return (draw(BLANKS) + text + draw(BLANKS)).encode()


@st.composite
def broken_frames(draw) -> bytes:
    data = bytearray(draw(frames()))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["cut", "flip", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        if kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3) | st.sampled_from([b"\xff", b"]"]))
        elif data and at < len(data):
            if kind == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            else:
                del data[at]
    return bytes(data)


def plain_frame(ticks: list[tuple[str, float, int, int | None]]) -> bytes:
    objects = [{"s": s, "p": p, "t": t, **({} if q is None else {"q": q})} for s, p, t, q in ticks]
    return orjson.dumps(objects[0] if len(objects) == 1 else objects)


PLAIN_TICKS = st.lists(
    st.tuples(
        st.sampled_from([*SYMBOLS, "OTHER"]),
        # prices on a tick grid, as feeds send them (17-digit doubles take orjson by design)
        st.integers(1, 10**8).map(lambda cents: cents / 100) | st.integers(1, 10**6),
        st.integers(T0, T0 + 10**12),
        st.none() | st.integers(0, 10**4),
    ),
    min_size=1,
    max_size=8,
)


# -- the fuzzers --------------------------------------------------------------------------------


@fuzz_settings(3)
@given(frames())
def test_valid_frames_agree_with_orjson(data: bytes) -> None:
    check_frame(data)


@fuzz_settings(3)
@given(broken_frames())
def test_broken_frames_are_never_applied_by_the_fast_path(data: bytes) -> None:
    check_frame(data)


@fuzz_settings(1)
@given(st.binary(max_size=64))
def test_any_bytes(data: bytes) -> None:
    check_frame(data)


@fuzz_settings(0.3)
@given(PLAIN_TICKS)
def test_plain_frames_take_the_fast_path_and_every_cut_is_refused(ticks) -> None:
    # without this the agreement above would hold for a fast path that always falls back
    data = plain_frame(ticks)
    assert parse_fast(data, len(ticks))[2] == DONE
    check_frame(data)
    for cut in range(len(data)):
        check_frame(data[:cut])


@pytest.mark.parametrize("path", saved_inputs("json"), ids=saved_ids(saved_inputs("json")))
def test_saved_frames_replay(path) -> None:
    check_frame(path.read_bytes())


def test_saved_frames_exist() -> None:
    assert len(saved_inputs("json")) >= 2
