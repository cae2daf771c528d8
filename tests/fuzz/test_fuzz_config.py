"""Fuzz the config loader, ``engine.config.parse_config``.

Documents start from the shipped configs (``config/engine.json`` defaults and
``config/examples/*.json``) and are changed the way hand edits go wrong: a value replaced by
one of another type or range (100-digit integers, NaN spelled out, nested junk), a key removed
or misspelt, the JSON itself broken. Invariants, for any document bytes:

* ``parse_config`` returns a config or raises ``ConfigError``, nothing else;
* the error is one line that names the JSON path of the bad key when the JSON was readable;
* an accepted config dumps to a document that parses back to an equal config.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config import ConfigError, EngineConfig, dump_config, parse_config
from tests.fuzz.harness import fuzz_settings, saved_ids, saved_inputs, saves_failures

ROOT = Path(__file__).resolve().parents[2]
BASES = [orjson.loads(dump_config(EngineConfig()))] + [
    orjson.loads(path.read_bytes()) for path in sorted((ROOT / "config/examples").glob("*.json"))
]


@saves_failures("config", ".json")
def check_config(data: bytes) -> None:
    """Assert the loader's invariants for one document."""
    try:
        cfg = parse_config(data, "fuzz.json")
    except ConfigError as error:
        assert error.message and "\n" not in error.message
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        assert error.path is not None, f"no path named: {error.message}"
        return
    assert parse_config(dump_config(cfg)) == cfg, "an accepted config round-trips"


# -- documents ---------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.sampled_from([0, -1, 2**63, 2**64, 10**100]),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(["", "NIFTY", "ws://127.0.0.1:1/", "09:15", "Asia/Kolkata", "ema_cross"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths_of(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths_of(value, (*prefix, key))
    elif isinstance(node, list):
        for at, value in enumerate(node):
            out += paths_of(value, (*prefix, at))
    return out


def parent_of(document: object, path: tuple) -> object:
    for step in path[:-1]:
        document = document[step]
    return document


@st.composite
def documents(draw) -> bytes:
    document = json.loads(json.dumps(draw(st.sampled_from(BASES))))
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_of(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = parent_of(document, path), path[-1]
        how = draw(st.sampled_from(["replace", "replace", "remove", "misspell"]))
        if how == "replace":
            parent[key] = draw(VALUES)
        elif how == "remove":
            del parent[key]
        elif isinstance(parent, dict):
            parent[str(key) + draw(st.sampled_from(["_", "s", " "]))] = parent.pop(key)
    # the stdlib spells what orjson never writes: NaN, Infinity, integers beyond 64 bits
    return json.dumps(document, indent=draw(st.sampled_from([None, 2]))).encode()


@st.composite
def broken_documents(draw) -> bytes:
    data = bytearray(draw(documents()))
    at = draw(st.integers(0, len(data)))
    how = draw(st.sampled_from(["cut", "flip", "insert"]))
    if how == "cut":
        del data[at:]
    elif how == "insert":
        data[at:at] = draw(st.sampled_from([b",", b"}", b'"', b"\xff", b"//", b"[" * 300]))
    elif at < len(data):
        data[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@fuzz_settings(2)
@given(documents())
def test_edited_configs_load_or_name_the_bad_key(data: bytes) -> None:
    check_config(data)


@fuzz_settings(1)
@given(broken_documents() | st.binary(max_size=32))
def test_broken_configs_are_refused_as_config_errors(data: bytes) -> None:
    check_config(data)


@pytest.mark.parametrize("path", saved_inputs("config"), ids=saved_ids(saved_inputs("config")))
def test_saved_configs_replay(path) -> None:
    check_config(path.read_bytes())


def test_saved_configs_exist() -> None:
    assert saved_inputs("config")
