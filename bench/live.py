"""Shared helpers of the live benchmarks: the engine and feeder processes, and what they measure.

:class:`EngineProcess` is ``python run.py --config C`` on the ``ws`` feed with its web server;
:class:`FeederProcess` is ``bench/feeder.py``. :class:`LiveRig` keeps one engine running and
plays runs at it, one feeder process per run on the same port: the next feeder is built and
listening before the previous one leaves, so the engine reconnects within its first backoff
(~0.1 s), and every run's ``t`` continues after the last run's, so no tick is stale.

Nothing here sleeps to let something happen: every wait polls its condition (the engine's
``/api/status``, a feeder's stdout line) against a deadline and fails with what it saw.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from tests.conftest import free_port, wait_until

#: the repository root
ROOT = Path(__file__).resolve().parents[1]
#: the engine's command line entry point
RUN_PY = ROOT / "run.py"
#: the tick server
FEEDER_PY = Path(__file__).resolve().parent / "feeder.py"
#: the web token the engines run with (``OTRADE_TOKEN``)
TOKEN = "otrade-bench-token"
#: seconds an engine gets to answer ``/api/status`` after start (Numba's cache is warm)
START_TIMEOUT_S = 60.0
#: seconds a feeder gets to build its frames and listen
FEEDER_TIMEOUT_S = 120.0
#: seconds between two polls of a condition
POLL_S = 0.005
#: ns between consecutive ticks' ``t`` (the feeder's default)
T_STEP_NS = 1_000
#: the engine's instrument (the feeder's only symbol)
SYMBOL = "NIFTY"


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = POLL_S
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; return that value.

    Parameters
    ----------
    predicate : callable
        Called until it returns something truthy.
    timeout : float
        Seconds before giving up.
    what : str
        What is awaited, for the error message.
    interval : float
        Seconds between calls.

    Raises
    ------
    TimeoutError
        When ``timeout`` passes first.
    """
    try:
        return wait_until(predicate, timeout, interval)
    except AssertionError:
        raise TimeoutError(f"{what}: not within {timeout:g} s") from None


def usable_cpus() -> list[int]:
    """Return the CPUs this process may run on, in order."""
    return sorted(os.sched_getaffinity(0))


def placements() -> dict[str, tuple[int, int]]:
    """Return ``{name: (engine cpu, feeder cpu)}``: ``same-core`` and, with 2+ CPUs, ``cross-core``.

    The engine takes the last usable CPU; across cores the feeder takes the first.
    """
    cpus = usable_cpus()
    out = {"same-core": (cpus[-1], cpus[-1])}
    if len(cpus) > 1:
        out["cross-core"] = (cpus[-1], cpus[0])
    return out


def engine_config(feed_port: int, web_port: int, journal_path: Path, **sections: dict) -> dict:
    """Return the live benchmark config: the ``ws`` feed, fast 2 / slow 3, a 2/2-tick bracket.

    Parameters
    ----------
    feed_port : int
        Port of the feeder on 127.0.0.1.
    web_port : int
        Port of the engine's web server.
    journal_path : Path
        The journal file.
    **sections : dict
        Keys merged into the config's sections (e.g. ``web={"push_hz": 10}``).
    """
    cfg: dict[str, Any] = {
        "session": {"enabled": False},
        "strategy": {"fast": 2, "slow": 3},
        "bracket": {"target_ticks": 2, "stop_ticks": 2},
        "risk": {"max_orders_per_second": 1_000_000},
        "feed": {"name": "ws", "url": f"ws://127.0.0.1:{feed_port}/", "stale_after_s": 5},
        # the engine's own speed, trading on every zig-zag leg (hundreds of orders a second):
        # the journal's fsync, one per block with events, is measured apart (bench_durability)
        "journal": {"path": str(journal_path), "fsync": False},
        "web": {"port": web_port},
        "instruments": [{"symbol": SYMBOL, "tick_size": 0.05}],
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    return cfg


def pin(pid: int, cpus: set[int]) -> None:
    """Move every thread of process ``pid`` to ``cpus``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):  # the thread ended
            os.sched_setaffinity(int(tid), cpus)


def rss_kib(pid: int) -> int:
    """Return the resident set size of process ``pid`` in KiB (``VmRSS``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"no VmRSS for process {pid}")


def _stop_process(proc: subprocess.Popen, timeout: float) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def processed(status: dict) -> int:
    """Return the ticks the kernels have seen by an ``/api/status``: accepted plus refused."""
    return int(status["ticks"]) + sum(status["rejected_ticks"].values())


class StatusConnection:
    """A kept-alive HTTP connection to an engine's web server, reopened after an error.

    Parameters
    ----------
    port : int
        The web port on 127.0.0.1.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._http: http.client.HTTPConnection | None = None

    def get(self, path: str) -> tuple[int, bytes]:
        """Return the status and body of ``GET path``."""
        for attempt in (0, 1):
            if self._http is None:
                self._http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self._http.request("GET", path)
                response = self._http.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def status(self) -> dict:
        """Return ``GET /api/status``."""
        code, body = self.get("/api/status")
        if code != 200:
            raise RuntimeError(f"/api/status answered {code}: {body[:200]!r}")
        return orjson.loads(body)

    def close(self) -> None:
        """Close the connection (the next request opens another)."""
        if self._http is not None:
            self._http.close()
            self._http = None


class EngineProcess:
    """``python run.py --config C``: the live engine with its ``ws`` feed and web server.

    Parameters
    ----------
    workdir : Path
        Holds the config, the journal and the process's stdout and stderr.
    feed_port : int
        Where the engine's feed connects (``ws://127.0.0.1:feed_port/``).
    cpu : int, optional
        Pin the engine (every thread) to this CPU from the start.
    **sections : dict
        Config sections merged into :func:`engine_config`.
    """

    def __init__(
        self, workdir: Path, feed_port: int, cpu: int | None = None, **sections: dict
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.web_port = free_port()
        self.journal = workdir / "journal.jsonl"
        self.config = engine_config(feed_port, self.web_port, self.journal, **sections)
        path = workdir / "engine.json"
        path.write_bytes(orjson.dumps(self.config, option=orjson.OPT_INDENT_2))
        self.stderr = workdir / "engine.err"
        cpus = None if cpu is None else {cpu}
        with open(workdir / "engine.out", "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(RUN_PY), "--config", str(path)],
                cwd=workdir,
                env={**os.environ, "OTRADE_TOKEN": TOKEN},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
            )
        self.pid = self.proc.pid
        #: the kept-alive connection the harness reads the status on
        self.http = StatusConnection(self.web_port)

    # -- reading -------------------------------------------------------------------------------

    def status(self) -> dict:
        """Return ``GET /api/status``."""
        return self.http.status()

    def processed(self, status: dict | None = None) -> int:
        """Return the ticks the kernels have seen: accepted plus refused."""
        return processed(self.status() if status is None else status)

    def rss_kib(self) -> int:
        """Return the engine's resident set size in KiB."""
        return rss_kib(self.pid)

    def journal_size(self) -> int:
        """Return the journal's size in bytes (where the next run's lines start)."""
        try:
            return self.journal.stat().st_size
        except FileNotFoundError:
            return 0

    def orders(self, since: int = 0) -> list[dict]:
        """Return the journal's order lines from byte offset ``since`` on."""
        with open(self.journal, "rb") as file:
            file.seek(since)
            lines = file.read().splitlines()
        out = []
        for raw in lines:
            if raw.startswith(b'{"type":"order"'):
                out.append(orjson.loads(raw))
        return out

    # -- waiting -------------------------------------------------------------------------------

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.stderr.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the engine exited with {self.proc.returncode}: {tail}")

    def _try_status(self) -> dict | None:
        self._alive()
        try:
            return self.status()
        except (OSError, http.client.HTTPException, RuntimeError):
            return None

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> dict:
        """Wait until ``/api/status`` answers; return it."""
        return wait_for(self._try_status, timeout, "the engine's /api/status", 0.02)

    def wait_processed(self, n: int, timeout: float) -> dict:
        """Wait until the kernels have seen ``n`` ticks; return the status that showed it."""

        def done() -> dict | None:
            self._alive()
            status = self.status()
            return status if self.processed(status) >= n else None

        return wait_for(done, timeout, f"{n} ticks processed")

    def wait_feed(self, state: str, timeout: float) -> dict:
        """Wait until the feed reports ``state``; return the status."""

        def done() -> dict | None:
            status = self._try_status()
            return status if status and status["feed"]["state"] == state else None

        return wait_for(done, timeout, f"feed state {state!r}")

    # -- control -------------------------------------------------------------------------------

    def pin(self, cpu: int) -> None:
        """Move every thread of the engine to ``cpu``."""
        pin(self.pid, {cpu})

    def stop(self, timeout: float = 20.0) -> int:
        """Stop with SIGTERM (the journal is flushed); return the exit status."""
        self.http.close()
        return _stop_process(self.proc, timeout)


class FeederProcess:
    """``bench/feeder.py``: one run of ticks to one client, with send stamps.

    Parameters
    ----------
    port : int
        Port to listen on.
    count : int
        Ticks to send (a multiple of ``frame_ticks``).
    rate : float
        Ticks per second; 0 as fast as possible.
    frame_ticks : int
        Ticks per frame.
    stamps : Path, optional
        Where the feeder writes its ``(t, ticks, stamp)`` rows.
    cpu : int, optional
        CPU the feeder is pinned to.
    t0 : int, optional
        ``t`` of the first tick; default the feeder's wall clock at start.
    leg : int
        Zig-zag leg in ticks (sets how often the strategy trades).
    """

    def __init__(
        self,
        port: int,
        count: int,
        rate: float = 0.0,
        frame_ticks: int = 1,
        stamps: Path | None = None,
        cpu: int | None = None,
        t0: int | None = None,
        leg: int = 10,
    ) -> None:
        self.count, self.rate, self.frame_ticks = count, rate, frame_ticks
        self.stamps_path = stamps
        self.t0 = time.time_ns() if t0 is None else t0
        argv = [
            sys.executable,
            str(FEEDER_PY),
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--frame-ticks",
            str(frame_ticks),
            "--count",
            str(count),
            "--t0",
            str(self.t0),
            "--t-step",
            str(T_STEP_NS),
            "--leg",
            str(leg),
        ]
        if stamps is not None:
            argv += ["--stamps", str(stamps)]
        if cpu is not None:
            argv += ["--cpu", str(cpu)]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def next_t0(self) -> int:
        """``t`` one step after this run's last tick, where the next run may start."""
        return self.t0 + self.count * T_STEP_NS

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().strip())
        self.lines.put(None)

    def expect(self, word: str, timeout: float) -> list[str]:
        """Wait for the stdout line starting with ``word``; return its fields."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise TimeoutError(f"feeder: no {word!r} line within {timeout:g} s") from None
            if line is None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"feeder exited {self.proc.wait()} before {word!r}: {err}")
            fields = line.split()
            if fields and fields[0] == word:
                return fields[1:]

    def stamps(self) -> np.ndarray:
        """Return the ``(t of first tick, ticks, stamp ns)`` rows the feeder wrote."""
        if self.stamps_path is None:
            raise ValueError("this feeder records no stamps")
        return np.load(self.stamps_path)

    def stop(self, timeout: float = 10.0) -> int:
        """Stop with SIGTERM (the stamps are written first); return the exit status."""
        code = _stop_process(self.proc, timeout)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code


@dataclass
class RunResult:
    """What one run measured.

    ``samples`` holds ``(monotonic ns, ticks processed in this run)`` rows polled from
    ``/api/status`` while the run was sent and drained, when polling was asked for.
    """

    count: int
    rate: float
    frame_ticks: int
    stamps: np.ndarray
    orders: list[dict]
    status: dict
    samples: np.ndarray
    drained_ns: int
    probes: list[tuple[int, Any]] = field(default_factory=list)

    @property
    def send_rate(self) -> float:
        """Ticks per second the feeder achieved, first to last write."""
        stamp = self.stamps[:, 2]
        if len(stamp) == 0:
            return float("nan")
        span = int(stamp[-1] - stamp[0])
        before_last = int(self.stamps[stamp < stamp[-1], 1].sum()) if span > 0 else 0
        return before_last / span * 1e9 if span > 0 else float("inf")


class LiveRig:
    """One engine process and the feeder runs played at it.

    Parameters
    ----------
    workdir : Path
        Holds the engine's files and the stamps of every run.
    engine_cpu : int, optional
        CPU the engine starts on (``run`` may move it).
    warmup_ticks : int
        Ticks of a first unmeasured run at 20k ticks/s, which also connects the feed.
    **sections : dict
        Config sections merged into :func:`engine_config`.
    """

    def __init__(
        self,
        workdir: Path,
        engine_cpu: int | None = None,
        warmup_ticks: int = 2_000,
        **sections: dict,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.runs = 0
        self.t0 = time.time_ns()
        self.feeder: FeederProcess | None = None
        self.engine: EngineProcess | None = None
        # the first feeder listens before the engine starts, so it connects on its first try
        first = self.feeder = self._feeder(warmup_ticks, 20_000.0, 1, None, leg=10)
        try:
            self.engine = EngineProcess(workdir, self.port, engine_cpu, **sections)
            self.engine.wait_ready()
            self._play(first, 0, poll_s=None)
        except BaseException:
            self.close()
            raise

    def _feeder(
        self,
        count: int,
        rate: float,
        frame_ticks: int,
        cpu: int | None,
        leg: int,
        record: bool = True,
    ) -> FeederProcess:
        self.runs += 1
        stamps = self.workdir / f"stamps-{self.runs}.npy" if record else None
        t0 = max(time.time_ns(), self.t0)
        feeder = FeederProcess(self.port, count, rate, frame_ticks, stamps, cpu, t0, leg)
        self.t0 = feeder.next_t0
        try:
            feeder.expect("ready", FEEDER_TIMEOUT_S)
        except BaseException:
            feeder.stop()
            raise
        return feeder

    def _switch(self, feeder: FeederProcess) -> None:
        # the previous feeder leaves only now: the engine's reconnect finds this one listening
        if self.feeder is not None and self.feeder is not feeder:
            self.feeder.stop()
        self.feeder = feeder

    def run(
        self,
        count: int,
        rate: float,
        frame_ticks: int = 1,
        engine_cpu: int | None = None,
        feeder_cpu: int | None = None,
        leg: int = 10,
        poll_s: float | None = None,
        timeout: float | None = None,
        record: bool = True,
        probe: Callable[[], Any] | None = None,
    ) -> RunResult:
        """Send one run and wait until the engine has processed all of it.

        Parameters
        ----------
        count : int
            Ticks, a multiple of ``frame_ticks``.
        rate : float
            Ticks per second; 0 as fast as possible.
        frame_ticks : int
            Ticks per frame.
        engine_cpu, feeder_cpu : int, optional
            Where the engine and the feeder run.
        leg : int
            Zig-zag leg in ticks.
        poll_s : float, optional
            Poll ``/api/status`` this often while the run is sent, recording the processed
            count (``RunResult.samples``); None polls only for the end.
        timeout : float, optional
            Seconds for the run to be sent and processed; default from its count and rate.
        record : bool
            Record the send stamps (a long run may not want 24 bytes a frame).
        probe : callable, optional
            Called at every poll; its results go to ``RunResult.probes`` with the poll's time.
        """
        assert self.engine is not None
        if engine_cpu is not None:
            self.engine.pin(engine_cpu)
        feeder = self._feeder(count, rate, frame_ticks, feeder_cpu, leg, record)
        try:
            # read while the engine is still held by the previous feeder, which sends nothing
            base = self.engine.processed()
        except BaseException:
            feeder.stop()
            raise
        return self._play(feeder, base, poll_s, timeout, probe)

    def _play(
        self,
        feeder: FeederProcess,
        base: int,
        poll_s: float | None,
        timeout: float | None = None,
        probe: Callable[[], Any] | None = None,
    ) -> RunResult:
        engine = self.engine
        assert engine is not None
        if timeout is None:
            timeout = 60.0 + (feeder.count / feeder.rate if feeder.rate else feeder.count / 1e5)
        deadline = time.monotonic() + timeout
        mark = engine.journal_size()
        self._switch(feeder)
        feeder.expect("connected", timeout)
        samples: list[tuple[int, int]] = []
        probes: list[tuple[int, Any]] = []
        target = base + feeder.count

        def sample() -> dict:
            before = time.monotonic_ns()
            status = engine.status()
            samples.append(((before + time.monotonic_ns()) // 2, engine.processed(status) - base))
            if probe is not None:
                probes.append((time.monotonic_ns(), probe()))
            return status

        if poll_s is not None:
            while True:  # sample until the feeder is done, then until the engine is
                try:
                    feeder.expect("done", 0.0)
                    break
                except TimeoutError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"run of {feeder.count} ticks not sent in {timeout:g} s")
                sample()
                time.sleep(poll_s)
            while True:
                status = sample()
                if samples[-1][1] >= feeder.count:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{samples[-1][1]} of {feeder.count} ticks processed")
                time.sleep(poll_s)
        else:
            feeder.expect("done", max(deadline - time.monotonic(), 0.0))
            status = engine.wait_processed(target, max(deadline - time.monotonic(), 0.0))
        drained_ns = time.monotonic_ns()
        orders = engine.orders(mark)
        stamps = feeder.stamps() if feeder.stamps_path else np.zeros((0, 3), np.int64)
        return RunResult(
            count=feeder.count,
            rate=feeder.rate,
            frame_ticks=feeder.frame_ticks,
            stamps=stamps,
            orders=orders,
            status=status,
            samples=np.array(samples, np.int64).reshape(-1, 2),
            drained_ns=drained_ns,
            probes=probes,
        )

    def close(self) -> None:
        """Stop the feeder and the engine."""
        if self.feeder is not None:
            self.feeder.stop()
            self.feeder = None
        if self.engine is not None:
            self.engine.stop()
            self.engine = None

    def __enter__(self) -> LiveRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- statistics -----------------------------------------------------------------------------------

#: percentiles reported for every latency
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}


def summarize_us(ns: np.ndarray) -> dict[str, float | int | None]:
    """Return count, p50/p90/p99/p99.9 and max of nanosecond samples, in µs."""
    if ns.size == 0:
        return {"n": 0, **dict.fromkeys(PERCENTILES), "max": None}
    values = np.percentile(ns, list(PERCENTILES.values())) / 1e3
    out: dict[str, float | int | None] = {"n": int(ns.size)}
    out.update({name: round(float(v), 2) for name, v in zip(PERCENTILES, values, strict=True)})
    out["max"] = round(float(ns.max()) / 1e3, 2)
    return out


def join_orders(result: RunResult, skip_ticks: int = 0) -> dict[str, Any]:
    """Join the run's entry and exit lines to the sender's stamps by ``tick_t``.

    Parameters
    ----------
    result : RunResult
        A run with stamps and order lines.
    skip_ticks : int
        Orders caused by the run's first ``skip_ticks`` ticks are left out (warm-up).

    Returns
    -------
    dict
        ``send_submit`` (sender stamp -> ``submit_ns``), ``recv_submit`` (``recv_ns`` ->
        ``submit_ns``) and ``send_recv`` (sender stamp -> ``recv_ns``): ns arrays, one value
        per joined order in journal order; ``index`` (the causing tick's index in the run),
        ``sent`` and ``submit`` (monotonic ns) of the same orders; ``unmatched``: orders whose
        ``tick_t`` is no tick of the run.
    """
    stamps = result.stamps
    orders = [o for o in result.orders if o["action"] in ("entry", "exit")]
    tick_t = np.array([o["tick_t"] for o in orders], np.int64)
    recv = np.array([o["recv_ns"] for o in orders], np.int64)
    submit = np.array([o["submit_ns"] for o in orders], np.int64)
    if len(stamps) == 0:
        empty = np.zeros(0, np.int64)
        names = ("send_submit", "recv_submit", "send_recv", "index", "sent", "submit")
        return {**dict.fromkeys(names, empty), "unmatched": len(orders)}
    frame = np.searchsorted(stamps[:, 0], tick_t, side="right") - 1
    row = stamps[np.clip(frame, 0, None)]
    matched = (frame >= 0) & (tick_t < row[:, 0] + row[:, 1] * T_STEP_NS)
    index = (tick_t - stamps[0, 0]) // T_STEP_NS
    keep = matched & (index >= skip_ticks)
    sent = row[:, 2]
    return {
        "send_submit": (submit - sent)[keep],
        "recv_submit": (submit - recv)[keep],
        "send_recv": (recv - sent)[keep],
        "index": index[keep],
        "sent": sent[keep],
        "submit": submit[keep],
        "unmatched": int((~matched).sum()),
    }


def _slope(x: np.ndarray, y: np.ndarray) -> float | None:
    """Return the least-squares slope of ``y`` over ``x``, None for fewer than 3 points."""
    if x.size < 3 or np.ptp(x) == 0:
        return None
    return float(np.polyfit(x, y, 1)[0])


def keeping_up(result: RunResult) -> dict[str, float | int | None]:
    """Return how the engine kept up with a run, from its orders' journal stamps.

    Every order says when its tick was sent (the feeder's stamp) and when the engine was done
    with it (``submit_ns``), so the orders trace the engine's progress without asking it
    anything (``/api/status`` answers late exactly when the engine is behind):

    - ``engine_rate``: slope of the orders' tick index over ``submit_ns``, ticks/s, over the
      middle 80 % of the run;
    - ``latency_slope``: slope of the tick-to-order latency over the send time after the first
      10 % (seconds per second): a growing backlog shows as a latency growing at
      ``rate / engine_rate - 1``;
    - ``end_latency_ms``: median latency of the orders of the last 10 % of the ticks;
    - ``send_rate``: what the feeder achieved (less than asked when the socket was full).
    """
    joined = join_orders(result)
    index, sent, submit = joined["index"], joined["sent"], joined["submit"]
    latency = joined["send_submit"]
    n = result.count
    middle = (index >= 0.1 * n) & (index <= 0.9 * n)
    steady = index >= 0.1 * n
    tail = index >= 0.9 * n
    rate = _slope(submit[middle] / 1e9, index[middle].astype(np.float64))
    slope = _slope(sent[steady] / 1e9, latency[steady] / 1e9)
    return {
        "send_rate": round(result.send_rate, 1),
        "engine_rate": None if rate is None else round(rate, 1),
        "latency_slope": None if slope is None else round(slope, 5),
        "end_latency_ms": round(float(np.median(latency[tail])) / 1e6, 3) if tail.any() else None,
        "max_latency_ms": round(float(latency.max()) / 1e6, 3) if latency.size else None,
        "orders": int(latency.size),
    }
