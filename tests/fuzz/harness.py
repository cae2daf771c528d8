"""Shared machinery of the fuzz suite: settings profiles, saved failing inputs and their replay.

Every fuzzer is a check ``check(data: bytes)`` that asserts the parser's invariants on one
input, driven by a hypothesis strategy. The same check replays every input saved under
``tests/fuzz/regressions/<parser>/`` on each ``make test``, so a defect found once stays fixed.

Pick the budget with ``OTRADE_FUZZ_PROFILE``: ``ci`` (default, a small fixed number of
examples per fuzzer, the whole suite in well under a minute) or ``long`` (``make fuzz``, many
times more). Under ``long`` a failing check writes the minimal failing input that hypothesis
shrank to as ``regressions/<parser>/<sha1>.bin`` (``OTRADE_FUZZ_SAVE=1`` does it under ``ci``
too); commit it with the fix.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, settings

#: where failing inputs are kept, one folder per parser family
REGRESSIONS = Path(__file__).parent / "regressions"

_COMMON = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
    "report_multiple_bugs": False,
    "print_blob": True,
}
settings.register_profile("otrade-fuzz-ci", max_examples=100, **_COMMON)
settings.register_profile("otrade-fuzz-long", max_examples=1000, **_COMMON)
PROFILE = os.environ.get("OTRADE_FUZZ_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    raise ValueError(f"OTRADE_FUZZ_PROFILE must be ci or long, got {PROFILE!r}")
_BASE = settings.get_profile(f"otrade-fuzz-{PROFILE}")
#: whether a failing check saves its input (the long profile, or OTRADE_FUZZ_SAVE=1)
SAVE = PROFILE == "long" or os.environ.get("OTRADE_FUZZ_SAVE") == "1"


def fuzz_settings(weight: float = 1.0) -> settings:
    """Return the profile's settings with ``weight`` times its number of examples.

    Parameters
    ----------
    weight : float
        Share of the profile's budget this fuzzer gets: below 1 for slow examples.
    """
    return settings(_BASE, max_examples=max(1, int(_BASE.max_examples * weight)))


def _final_run() -> bool:
    # hypothesis replays the shrunk example one last time, flagged final: only that one is kept
    from hypothesis.control import current_build_context
    from hypothesis.errors import InvalidArgument

    try:
        return current_build_context().is_final
    except InvalidArgument:
        return False


def save_input(parser: str, data: bytes, suffix: str = ".bin", expected: Any = None) -> Path:
    """Write ``data`` to ``regressions/<parser>/<sha1><suffix>`` and return the path.

    Parameters
    ----------
    parser, data, suffix
        The folder, the failing input and its file name ending.
    expected : optional
        What reading ``data`` must give, when the invariants alone cannot tell (a parser that
        refuses a good row consistently); kept beside it as ``<sha1>.expected.json``.
    """
    folder = REGRESSIONS / parser
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()
    path = folder / f"{digest}{suffix}"
    path.write_bytes(data)
    if expected is not None:
        (folder / f"{digest}.expected.json").write_bytes(orjson.dumps(expected))
    return path


def save_failure(parser: str, data: bytes, suffix: str, expected: Any) -> None:
    """Save ``data`` and ``expected`` (see :func:`save_input`) if saving is on and this is the
    final, shrunk failing example."""
    if SAVE and _final_run():
        save_input(parser, data, suffix, expected)


def expected_of(path: Path) -> Any:
    """Return the expectation saved beside ``path``, or None."""
    beside = path.with_name(path.name.split(".")[0] + ".expected.json")
    return orjson.loads(beside.read_bytes()) if beside.exists() else None


def saves_failures(parser: str, suffix: str = ".bin") -> Callable:
    """Decorate a check so that, when saving is on, its final failing input is kept.

    Parameters
    ----------
    parser : str
        The folder under :data:`REGRESSIONS`.
    suffix : str
        File name ending of the saved inputs.
    """

    def wrap(check: Callable[[bytes], object]) -> Callable[[bytes], object]:
        @functools.wraps(check)
        def run(data: bytes) -> object:
            try:
                return check(data)
            except BaseException:
                if SAVE and _final_run():
                    save_input(parser, data, suffix)
                raise

        return run

    return wrap


def saved_inputs(parser: str) -> list[Path]:
    """Return the saved inputs of ``parser``, sorted; the replay tests fail on an empty list."""
    folder = REGRESSIONS / parser
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and ".expected." not in p.name)


def saved_ids(paths: list[Path]) -> list[str]:
    """Return short test ids for saved inputs (their first 12 hash characters)."""
    return [path.name[:12] for path in paths]
