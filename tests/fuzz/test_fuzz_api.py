"""Fuzz the HTTP API of a real ``run.py`` process against its own OpenAPI schema.

Requests come from schemathesis (cases that fit ``/api/openapi.json`` and cases that do not),
plus hand-written ones: raw bodies that are not JSON or carry NaN and 100-digit integers, and
paths and methods outside the schema. Each goes without a token, with the right one and with
a wrong one. Invariants:

* no request is answered with a 5xx;
* every 4xx body is JSON whose ``detail`` names the problem;
* no response (status line, headers or body) and no line of the engine's output holds the
  bearer token.
"""

from __future__ import annotations

import json
import secrets

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

from tests.fuzz.harness import fuzz_settings, save_failure, saved_ids, saved_inputs
from tests.live import LiveEngine

TRADING = {
    "instruments": [{"symbol": "NIFTY", "tick_size": 0.05, "sim_start_price": 22000.0}],
    "feed": {"name": "sim", "ticks_per_second": 500, "sim_step_ticks": 3},
}
AUTH = ("none", "right", "wrong", "malformed")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    token = f"fuzz-{secrets.token_hex(16)}"
    engine = LiveEngine(tmp_path_factory.mktemp("api"), token=token, **TRADING)
    yield engine
    engine.stop()


def headers_for(auth: str, token: str) -> dict[str, str]:
    if auth == "right":
        return {"Authorization": f"Bearer {token}"}
    if auth == "wrong":
        return {"Authorization": f"Bearer {token[::-1]}"}
    if auth == "malformed":
        return {"Authorization": token}
    return {}


def send(live: LiveEngine, request: dict) -> httpx.Response:
    """Send a saved or generated request (``method``, ``path``, ``params``, ``headers``,
    ``content``, ``auth``) to ``live``."""
    headers = {**request.get("headers", {}), **headers_for(request["auth"], live.token)}
    content = request.get("content")
    return live.http.request(
        request["method"],
        request["path"],
        params=request.get("params"),
        headers=headers,
        content=content.encode() if isinstance(content, str) else content,
    )


def check_request(live: LiveEngine, request: dict) -> None:
    """Assert the module's invariants for one request."""
    response = send(live, request)
    assert response.status_code < 500, (response.status_code, response.text)
    shown = response.text + repr(response.headers.raw) + response.reason_phrase
    assert live.token not in shown, "a response holds the token"
    if 400 <= response.status_code < 500:
        detail = orjson.loads(response.content).get("detail")
        assert detail, "a refusal names the problem"


def checked(live: LiveEngine, request: dict) -> None:
    try:
        check_request(live, request)
    except AssertionError:
        data = orjson.dumps(request, option=orjson.OPT_SORT_KEYS)
        save_failure("api", data, ".json", None)
        raise


def as_request(case, auth: str) -> dict:
    kwargs = case.as_transport_kwargs(base_url="")
    if "json" in kwargs:
        # the stdlib writes what orjson refuses: 100-digit integers, NaN
        content = json.dumps(kwargs["json"], default=str)
    else:
        data = kwargs.get("data")
        content = data.decode("latin-1") if isinstance(data, bytes) else data
    headers = {k: str(v) for k, v in (kwargs.get("headers") or {}).items()}
    if "json" in kwargs:
        headers.setdefault("Content-Type", "application/json")
    headers.pop("Authorization", None)
    return {
        "method": case.method.upper(),
        "path": kwargs["url"],
        "params": kwargs.get("params") or None,
        "headers": headers,
        "content": content,
        "auth": auth,
    }


# -- hand-written requests ---------------------------------------------------------------------

PATHS = st.sampled_from(
    [
        "/api/status",
        "/api/strategy",
        "/api/control/pause",
        "/api/control/flatten",
        "/api/control/adopt",
        "/api/control/%00",
        "/api/nope",
        "/static/../engine.json",
        "/api/openapi.json",
        "/ws",
        "/",
    ]
)
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["NIFTY", "ema_cross", "atr"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(["fast", "slow", "quantity", "kind", "target_ticks", "stop_ticks", "x"])
BODIES = st.one_of(
    st.dictionaries(
        st.sampled_from(["strategy", "bracket", "risk", "symbol", "x"]),
        st.dictionaries(KEYS, VALUES, max_size=3) | VALUES,
        max_size=3,
    ).map(lambda body: json.dumps(body, default=str).encode()),
    st.sampled_from(
        [
            b'{"strategy": {"fast": NaN}}',
            b'{"strategy": {"slow": Infinity}}',
            b'{"strategy": {"fast": 123456789012345678901234567890}}',
            b'{"symbol": "NIFTY"',
            b"\xff\xfe",
            b"[]",
            b"null",
            b"1e999",
        ]
    ),
    st.binary(max_size=24),
)


@st.composite
def raw_requests(draw) -> dict:
    return {
        "method": draw(st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"])),
        "path": draw(PATHS),
        "params": draw(st.none() | st.dictionaries(st.sampled_from(["token", "x"]), st.text())),
        "headers": draw(
            st.sampled_from(
                [{}, {"Content-Type": "application/json"}, {"Content-Type": "text/plain"}]
            )
        ),
        "content": draw(BODIES).decode("latin-1"),
        "auth": draw(st.sampled_from(AUTH)),
    }


def test_no_request_gets_a_5xx_or_the_token(live: LiveEngine) -> None:
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{live.port}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9, "every documented endpoint is fuzzed"
    cases = st.one_of(
        [op.as_strategy(generation_mode=mode) for op in operations for mode in GenerationMode]
    )

    @fuzz_settings(3)
    @given(cases, st.sampled_from(AUTH))
    def schema_requests(case, auth: str) -> None:
        checked(live, as_request(case, auth))

    @fuzz_settings(2)
    @given(raw_requests())
    def other_requests(request: dict) -> None:
        checked(live, request)

    schema_requests()
    other_requests()
    assert live.status()["feed"]["state"] == "running", "the engine survived"
    assert live.token not in live.out.read_text(errors="replace"), "a log line holds the token"


@pytest.mark.parametrize("path", saved_inputs("api"), ids=saved_ids(saved_inputs("api")))
def test_saved_requests_replay(live: LiveEngine, path) -> None:
    check_request(live, orjson.loads(path.read_bytes()))


def test_saved_requests_exist() -> None:
    assert saved_inputs("api")
