"""Benchmarks: the whole ``python run.py backtest`` process, wall time and peak memory.

Everything a user waits for is in the number: interpreter start, imports, loading the Numba
cache, config validation, CSV parsing, the kernels, the report. The cache is warmed by one
untimed run first, so the timing is of a warm start, as every run after the first is.

Peak memory is the child's ``ru_maxrss`` from ``os.wait4``, which returns that one child's
rusage (``resource.getrusage(RUSAGE_CHILDREN)`` would give the largest peak of every child
reaped so far). One more catch: Linux carries the parent's high-water RSS into a child's
``ru_maxrss`` across fork and exec, so a backtest started by this pytest process, which holds
hundreds of MB of tick arrays, would report pytest's peak instead of its own. The backtests are
therefore started by a small *spawner*, a bare Python process that posix_spawns each one, reaps
it with ``os.wait4`` and answers with its exit status and ``ru_maxrss``; the timing pays only a
pipe round trip for it. ``extra_info`` records ``peak_rss_kib`` (largest over the rounds) and the
per-round list.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

if TYPE_CHECKING:
    from bench.conftest import BacktestFiles

ROOT = Path(__file__).resolve().parents[1]
#: timed rounds by nominal ticks; a 10M-tick run takes a few seconds
ROUNDS = {1_000_000: 5, 10_000_000: 3}

#: the spawner: one JSON request per line, ``{"argv": [...], "stderr": path}``; one JSON answer
#: per line, ``[exit code, ru_maxrss KiB]``
SPAWNER = """
import json, os, sys
for line in sys.stdin:
    request = json.loads(line)
    argv = request["argv"]
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ])
    _, status, usage = os.wait4(pid, 0)
    sys.stdout.write(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss]) + "\\n")
    sys.stdout.flush()
"""


class Spawner:
    """A small long-lived process that runs commands and reports each one's own peak RSS.

    Parameters
    ----------
    cwd : Path
        Working directory of the commands.
    """

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", SPAWNER],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str], stderr: Path) -> tuple[int, int]:
        """Run ``argv`` to completion, its stderr to the file ``stderr``.

        Returns
        -------
        tuple[int, int]
            The exit code and the peak RSS in KiB (``ru_maxrss`` on Linux).
        """
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "stderr": str(stderr)}) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"the spawner exited with {self.proc.wait()}")
        code, maxrss = json.loads(answer)
        return int(code), int(maxrss)

    def close(self) -> None:
        """Let the spawner exit and reap it."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def spawner() -> Iterator[Spawner]:
    """Return the module's spawner, closed after its tests."""
    s = Spawner(ROOT)
    yield s
    s.close()


def backtest_argv(config: Path, ticks: Path, report: Path) -> list[str]:
    """Return the command line of one backtest."""
    return [
        sys.executable,
        str(ROOT / "run.py"),
        "backtest",
        "--config",
        str(config),
        "--ticks",
        str(ticks),
        "--report",
        str(report),
    ]


def run_backtest(spawner: Spawner, argv: list[str], stderr: Path, rss_kib: list[int]) -> int:
    """Run one backtest process; append its peak RSS (KiB) to ``rss_kib``.

    Raises
    ------
    RuntimeError
        When the backtest fails; the message carries its stderr.
    """
    code, maxrss = spawner.run(argv, stderr)
    if code != 0:
        raise RuntimeError(f"backtest exited {code}: {stderr.read_text(errors='replace')}")
    rss_kib.append(maxrss)
    return code


@pytest.mark.benchmark(group="process")
@pytest.mark.parametrize("nominal", [1_000_000, 10_000_000], ids=["1m", "10m"])
def test_backtest_process(
    benchmark: BenchmarkFixture,
    spawner: Spawner,
    backtest_files: BacktestFiles,
    tick_count: Callable[[int], int],
    bench_disabled: bool,
    tmp_path: Path,
    nominal: int,
) -> None:
    ticks = backtest_files.ticks(nominal)
    report = tmp_path / "report.json"
    stderr = tmp_path / "stderr.txt"
    argv = backtest_argv(backtest_files.config, ticks, report)
    if not bench_disabled:
        run_backtest(spawner, argv, stderr, [])  # warm the Numba cache
    rss_kib: list[int] = []
    benchmark.pedantic(run_backtest, args=(spawner, argv, stderr, rss_kib), rounds=ROUNDS[nominal])
    n = tick_count(nominal)
    assert orjson.loads(report.read_bytes())["ticks"] == n
    benchmark.extra_info.update(
        kind="backtest_process",
        ticks=n,
        instruments=1,
        bytes=ticks.stat().st_size,
        peak_rss_kib=max(rss_kib),
        rss_kib=rss_kib,
    )
