"""Write BENCHMARKS.md from a pytest-benchmark JSON file.

Usage::

    python bench/report.py bench/results.json [--out BENCHMARKS.md]

The JSON comes from ``pytest bench --benchmark-only --benchmark-json=FILE
--benchmark-save-data``; with the raw per-round timings (``stats.data``) the p99 is computed
here, without them the slowest round stands in for it. ``--out -`` prints to stdout.

The free text between ``<!-- notes -->`` and ``<!-- /notes -->`` in an existing output file is
kept as it is; everything else is regenerated. Standard library only, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

try:
    from bench.report_brokers import brokers_section
    from bench.report_durability import durability_section
except ImportError:  # run as a script: bench/ itself is on the path
    from report_brokers import brokers_section
    from report_durability import durability_section

ROOT = Path(__file__).resolve().parents[1]
NOTES_OPEN = "<!-- notes -->"
NOTES_CLOSE = "<!-- /notes -->"
NOTES_RE = re.compile(re.escape(NOTES_OPEN) + r"(.*?)" + re.escape(NOTES_CLOSE), re.DOTALL)
DEFAULT_NOTES = (
    "\n_Free text about this run (load on the machine, what changed since the last one). "
    "`bench/report.py` keeps whatever is written between the notes markers._\n"
)
MIB_KIB = 1024

#: benchmark names the summary sections look up
PROCESS_1M = "test_engine_process[1inst-1m]"
PROCESS_1_10M = "test_engine_process[1inst-10m]"
PROCESS_10_10M = "test_engine_process[10inst-10m]"
RAW_1M = "test_run_ticks[1inst-1m]"
PYLOOP = "test_pyloop"
ORACLE = "test_oracle"
ON_TICK = "test_on_tick"
FLOOR = "test_update_ema_dispatch_floor"
BACKTEST_1M = "test_backtest_process[1m]"
BACKTEST_10M = "test_backtest_process[10m]"
CONFIG_LOAD = "test_config_load"


@dataclass(frozen=True)
class Bench:
    """One benchmark of the JSON file, reduced to what the report prints."""

    name: str
    group: str
    median: float
    p99: float
    p99_exact: bool
    rounds: int
    iterations: int
    extra: dict

    @property
    def ticks(self) -> int | None:
        """Ticks one call processes, when the benchmark recorded them."""
        ticks = self.extra.get("ticks")
        return int(ticks) if ticks else None

    @property
    def per_tick(self) -> float | None:
        """Median seconds per tick."""
        return self.median / self.ticks if self.ticks else None

    @property
    def ticks_per_s(self) -> float | None:
        """Ticks per second at the median."""
        return self.ticks / self.median if self.ticks and self.median > 0 else None


def percentile(data: list[float], q: float) -> float:
    """Return the nearest-rank ``q`` percentile (0 < q <= 100) of ``data``."""
    ordered = sorted(data)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def load(path: Path) -> tuple[dict, dict[str, Bench]]:
    """Read a pytest-benchmark JSON file; return it and its benchmarks by name."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    benches: dict[str, Bench] = {}
    for raw in doc.get("benchmarks", []):
        stats = raw["stats"]
        data = stats.get("data") or []
        median = statistics_median(data) if data else float(stats["median"])
        benches[raw["name"]] = Bench(
            name=raw["name"],
            group=raw.get("group") or "",
            median=median,
            p99=percentile(data, 99.0) if data else float(stats["max"]),
            p99_exact=bool(data),
            rounds=int(stats.get("rounds", len(data))),
            iterations=int(stats.get("iterations", 1)),
            extra=raw.get("extra_info") or {},
        )
    return doc, benches


def statistics_median(data: list[float]) -> float:
    """Return the median of ``data``."""
    ordered = sorted(data)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


# -- formatting ---------------------------------------------------------------------------------


def fmt_time(seconds: float | None) -> str:
    """Format a duration with three significant digits in ns, µs, ms or s."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    for scale, unit in ((1e-6, "ns"), (1e-3, "µs"), (1.0, "ms")):
        if seconds < scale:
            return f"{_sig3(seconds / scale * 1e3)} {unit}"
    return f"{_sig3(seconds)} s"


def _sig3(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_rate(per_s: float | None) -> str:
    """Format ticks per second as M or k ticks/s."""
    if per_s is None or not math.isfinite(per_s):
        return "n/a"
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f} M/s"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.1f} k/s"
    return f"{per_s:.0f} /s"


def fmt_mib(kib: float | None) -> str:
    """Format KiB as MiB."""
    return "n/a" if kib is None else f"{kib / MIB_KIB:.1f} MiB"


def fmt_count(n: int | None) -> str:
    """Format a tick count as 1M, 100k or the plain number."""
    if n is None:
        return ""
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    """Return a Markdown table; ``align`` has one ``l`` or ``r`` per column (default: l, r...)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# -- sections -----------------------------------------------------------------------------------


def machine_section(doc: dict) -> list[str]:
    """Return the machine and run description."""
    info = doc.get("machine_info") or {}
    extra = info.get("otrade") or {}
    cpu = extra.get("cpu_model") or (info.get("cpu") or {}).get("brand_raw") or "unknown"
    cores = extra.get("cpu_count") or (info.get("cpu") or {}).get("count") or os.cpu_count()
    usable = extra.get("affinity")
    cores_text = f"{cores} logical" + (f", {usable} usable" if usable else "")
    python = info.get("python_version") or platform.python_version()
    impl = info.get("python_implementation") or platform.python_implementation()
    when = doc.get("datetime")
    date = when and datetime.fromisoformat(when).strftime("%Y-%m-%d %H:%M UTC")
    commit = doc.get("commit_info") or {}
    commit_text = "n/a"
    if commit.get("id"):
        commit_text = f"`{commit['id'][:12]}`" + (
            " (uncommitted changes)" if commit.get("dirty") else ""
        )
    load = extra.get("loadavg")
    rows = [
        ["CPU", str(cpu)],
        ["Cores", cores_text],
        ["System", f"{info.get('system', platform.system())} {info.get('release', '')}".strip()],
        ["Python", f"{python} ({impl})"],
        ["numba", extra.get("numba", "n/a")],
        ["numpy", extra.get("numpy", "n/a")],
        ["pytest-benchmark", extra.get("pytest_benchmark") or doc.get("version", "n/a")],
        ["Date", date or "n/a"],
        ["Commit", commit_text],
    ]
    if load:
        rows.append(["Load average at the end (1/5/15 min)", " / ".join(f"{x:.2f}" for x in load)])
    return ["## Machine", "", *table(["", ""], rows, "ll")]


def _ratio(slow: Bench | None, fast: Bench | None) -> float | None:
    """Return how many times less time per tick ``fast`` takes than ``slow``."""
    if slow is None or fast is None or not slow.per_tick or not fast.per_tick:
        return None
    return slow.per_tick / fast.per_tick


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


@dataclass(frozen=True)
class Target:
    """One line of the targets table."""

    what: str
    goal: str
    measured: str
    met: bool | None


def targets(b: dict[str, Bench]) -> list[Target]:
    """Evaluate the performance targets against the benchmarks present."""
    out: list[Target] = []

    def add(what: str, goal: str, value: float | None, fmt: Callable, ok: Callable) -> None:
        out.append(Target(what, goal, fmt(value), None if value is None else bool(ok(value))))

    def rate(name: str) -> float | None:
        return b[name].ticks_per_s if name in b else None

    def median(name: str) -> float | None:
        return b[name].median if name in b else None

    add(
        "Pipeline, 1 instrument (`Engine.process`, 10M ticks)",
        "≥ 20 M ticks/s",
        rate(PROCESS_1_10M),
        fmt_rate,
        lambda v: v >= 20e6,
    )
    add(
        "Pipeline, 1 instrument vs pure-Python loop (`Engine.process`, same 1M ticks)",
        "≥ 2.5x faster per tick",
        _ratio(b.get(PYLOOP), b.get(PROCESS_1M)),
        _x,
        lambda v: v >= 2.5,
    )
    add(
        "Pipeline, 10 instruments interleaved (`Engine.process`, 10M ticks)",
        "≥ 15 M ticks/s",
        rate(PROCESS_10_10M),
        fmt_rate,
        lambda v: v >= 15e6,
    )
    add("`on_tick` called from Python, median", "≤ 1 µs", median(ON_TICK), fmt_time, _le(1e-6))
    add(
        "Whole `run.py backtest` process, 1M-tick CSV, median",
        "≤ 2.5 s",
        median(BACKTEST_1M),
        fmt_time,
        _le(2.5),
    )
    add("Config load, median", "≤ 1 ms", median(CONFIG_LOAD), fmt_time, _le(1e-3))
    rss = None
    if BACKTEST_1M in b and BACKTEST_10M in b:
        small = b[BACKTEST_1M].extra.get("peak_rss_kib")
        big = b[BACKTEST_10M].extra.get("peak_rss_kib")
        if small is not None and big is not None:
            rss = float(big - small)
    add(
        "Peak RSS, 10M-tick backtest minus 1M-tick backtest",
        "≤ 50 MiB",
        rss,
        fmt_mib,
        lambda v: v <= 50 * MIB_KIB,
    )
    return out


def _le(limit: float) -> Callable[[float], bool]:
    return lambda v: v <= limit


def targets_section(b: dict[str, Bench]) -> list[str]:
    """Return the targets table."""
    status = {True: "met", False: "**missed**", None: "not run"}
    rows = [[t.what, t.goal, t.measured, status[t.met]] for t in targets(b)]
    return ["## Targets", "", *table(["Target", "Goal", "Measured", "Status"], rows, "lllr")]


def ratios_section(b: dict[str, Bench]) -> list[str]:
    """Return the per-tick comparisons taken in the same run."""
    rows: list[list[str]] = []

    def versus(label: str, slow: str, fast: str) -> None:
        s, f = b.get(slow), b.get(fast)
        if s is None or f is None:
            return
        per = f"{fmt_time(f.per_tick)} vs {fmt_time(s.per_tick)}"
        rows.append([label, per, _x(_ratio(s, f))])

    versus("`Engine.process` vs pure-Python loop (`bench/pyloop.py`)", PYLOOP, PROCESS_1M)
    versus("raw `run_ticks` vs pure-Python loop", PYLOOP, RAW_1M)
    versus("`Engine.process` vs oracle (`tests/reference.py`)", ORACLE, PROCESS_1M)
    versus("raw `run_ticks` vs oracle", ORACLE, RAW_1M)
    versus("pure-Python loop vs oracle", ORACLE, PYLOOP)
    lines = [
        "## Ratios",
        "",
        "Same run, same one-instrument ticks; per tick = median / ticks. The ratio says how many "
        "times less time per tick the first takes.",
        "",
        *table(["Comparison", "Per tick", "Speed-up"], rows),
    ]
    if ON_TICK in b and FLOOR in b:
        on_tick, floor = b[ON_TICK], b[FLOOR]
        raw = b.get(RAW_1M)
        lines += [
            "",
            f"- `on_tick` from Python takes {fmt_time(on_tick.median)}, "
            f"{on_tick.median / floor.median:.2f}x the dispatch floor "
            f"(`update_ema`, {fmt_time(floor.median)}): about "
            f"{fmt_time(max(on_tick.median - floor.median, 0.0))} of pipeline work on top of "
            "the call.",
        ]
        if raw is not None and raw.per_tick:
            lines.append(
                f"- Inside `run_ticks` a tick costs {fmt_time(raw.per_tick)}: "
                f"{on_tick.median / raw.per_tick:.1f}x less than one `on_tick` call from Python."
            )
    if BACKTEST_1M in b and BACKTEST_10M in b:
        small = b[BACKTEST_1M].extra.get("peak_rss_kib")
        big = b[BACKTEST_10M].extra.get("peak_rss_kib")
        if small is not None and big is not None:
            lines.append(
                f"- Peak RSS of the backtest process: {fmt_mib(small)} for "
                f"{fmt_count(b[BACKTEST_1M].ticks)} ticks, {fmt_mib(big)} for "
                f"{fmt_count(b[BACKTEST_10M].ticks)} ticks ({fmt_mib(big - small)} more)."
            )
    return lines


def _tick_rows(benches: list[Bench]) -> list[list[str]]:
    return [
        [
            f"`{x.name}`",
            fmt_count(x.ticks),
            str(x.extra.get("instruments", "")),
            fmt_time(x.median),
            _p99(x),
            fmt_time(x.per_tick),
            fmt_rate(x.ticks_per_s),
        ]
        for x in benches
    ]


def _p99(x: Bench) -> str:
    return fmt_time(x.p99) + ("" if x.p99_exact else " (max)")


def pipeline_section(b: dict[str, Bench]) -> list[str]:
    """Return the batch pipeline and pure-Python tables."""
    kinds = ("process", "run_ticks", "pyloop", "oracle")
    benches = [x for x in b.values() if x.extra.get("kind") in kinds]
    if not benches:
        return []
    benches.sort(
        key=lambda x: (kinds.index(x.extra["kind"]), x.extra.get("instruments", 0), x.ticks)
    )
    header = ["Benchmark", "Ticks", "Instruments", "Median", "p99", "Per tick", "Ticks/s"]
    return [
        "## Pipeline",
        "",
        "`test_engine_process`: `Engine.process` in `chunk_ticks` chunks, draining events "
        "(the path backtests and the live feed take). `test_run_ticks`: one `run_ticks` call "
        "with a ring that never fills. `test_pyloop` and `test_oracle`: pure Python on the same "
        "ticks.",
        "",
        *table(header, _tick_rows(benches)),
    ]


def kernels_section(b: dict[str, Bench]) -> list[str]:
    """Return the per-kernel table, dispatch from Python included."""
    kernels = [x for x in b.values() if x.extra.get("kind") == "kernel"]
    calls = [x for x in (b.get(ON_TICK), b.get(FLOOR)) if x is not None]
    if not kernels and not calls:
        return []
    floor = b.get(FLOOR)
    rows = []
    for x in [*kernels, *calls]:
        over = fmt_time(max(x.median - floor.median, 0.0)) if floor else "n/a"
        label = x.extra.get("kernel") or x.name.removeprefix("test_")
        rows.append([f"`{label}`", fmt_time(x.median), _p99(x), over])
    return [
        "## Kernels called from Python",
        "",
        "One call each on a warmed state holding an open bracketed position; Numba's dispatch "
        "is included. Over floor = median minus the `update_ema` median.",
        "",
        *table(["Kernel", "Median", "p99", "Over floor"], rows),
    ]


def process_section(b: dict[str, Bench]) -> list[str]:
    """Return the whole-process backtest table."""
    benches = [x for x in b.values() if x.extra.get("kind") == "backtest_process"]
    if not benches:
        return []
    benches.sort(key=lambda x: x.ticks or 0)
    rows = [
        [
            f"`{x.name}`",
            fmt_count(x.ticks),
            fmt_time(x.median),
            _p99(x),
            fmt_rate(x.ticks_per_s),
            fmt_mib(x.extra.get("peak_rss_kib")),
        ]
        for x in benches
    ]
    header = ["Benchmark", "Ticks", "Median", "p99", "Ticks/s", "Peak RSS"]
    return [
        "## Whole backtest process",
        "",
        "`python run.py backtest --config C --ticks F.csv --report R.json` as a child process, "
        "Numba cache warm; peak RSS from the child's own rusage (`os.wait4`).",
        "",
        *table(header, rows),
    ]


def all_section(b: dict[str, Bench]) -> list[str]:
    """Return every benchmark of the file, grouped."""
    rows = [
        [
            x.group or "-",
            f"`{x.name}`",
            f"{x.rounds} x {x.iterations}",
            fmt_time(x.median),
            _p99(x),
            fmt_rate(x.ticks_per_s) if x.ticks and x.ticks > 1 else "",
        ]
        for x in sorted(b.values(), key=lambda x: (x.group, x.name))
    ]
    header = ["Group", "Benchmark", "Rounds x iterations", "Median", "p99", "Ticks/s"]
    return [
        "## All benchmarks",
        "",
        "p99 is over the rounds (a round's time is the mean of its iterations); with fewer than "
        "100 rounds it is the slowest round.",
        "",
        *table(header, rows, "llrrrr"),
    ]


def render(doc: dict, benches: dict[str, Bench], notes: str, source: str) -> str:
    """Return the whole Markdown report."""
    lines = [
        "# OTrade benchmarks",
        "",
        NOTES_OPEN + notes + NOTES_CLOSE,
        "",
        f"Generated by `bench/report.py` from `{source}` (`make bench`). Medians and p99 of "
        "the benchmarks in `bench/`; every ratio is taken within the same run.",
        "",
    ]
    for section in (
        machine_section(doc),
        targets_section(benches),
        ratios_section(benches),
        pipeline_section(benches),
        kernels_section(benches),
        process_section(benches),
        live_section(benches),
        brokers_section(benches, table),
        durability_section(benches, table, fmt_time),
        all_section(benches),
    ):
        if section:
            lines += [*section, ""]
    return "\n".join(lines)


def existing_notes(path: Path) -> str:
    """Return the notes block of an existing report, or the default text."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return DEFAULT_NOTES
    match = NOTES_RE.search(text)
    return match.group(1) if match else DEFAULT_NOTES


def main(argv: list[str] | None = None) -> int:
    """Read the results and write the report; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument(
        "--out",
        default=str(ROOT / "BENCHMARKS.md"),
        help="Markdown file to write, - for stdout (default: BENCHMARKS.md at the repo root)",
    )
    args = parser.parse_args(argv)
    doc, benches = load(args.results)
    if not benches:
        print(f"report: no benchmarks in {args.results}", file=sys.stderr)
        return 1
    try:
        source = args.results.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        source = args.results.name
    if args.out == "-":
        sys.stdout.write(render(doc, benches, DEFAULT_NOTES, source))
        return 0
    out = Path(args.out)
    text = render(doc, benches, existing_notes(out), source)
    out.write_text(text, encoding="utf-8")
    print(f"report: wrote {out}")
    return 0


# -- the live runtime: bench_latency.py and bench_web.py (numbers in extra_info) ----------------


def _us(value: float | None) -> str:
    return "n/a" if value is None else fmt_time(value / 1e6)


def _measured(target: dict) -> str:
    value, unit = target.get("measured"), target.get("unit", "")
    if value is None:
        return "n/a"
    if unit == "µs":
        return _us(value)
    return f"{value:,.1f} {unit}" if unit != "x" else f"{value:.2f}x"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else fmt_rate(value)


def live_section(b: dict[str, Bench]) -> list[str]:
    """Return the live latency, rate and web tables, and their targets."""
    kinds = {k: [x for x in b.values() if x.extra.get("kind") == k] for k in LIVE_KINDS}
    if not any(kinds.values()):
        return []
    status = {True: "met", False: "**missed**", None: "not run"}
    lines = ["## Live runtime", ""]
    goals = [
        [f"`{x.name}`", name, t["goal"], _measured(t), status[t["met"]]]
        for x in (x for group in kinds.values() for x in group)
        for name, t in x.extra.get("targets", {}).items()
    ]
    lines += [*table(["Benchmark", "Target", "Goal", "Measured", "Status"], goals, "lllrr"), ""]
    rows = []
    for x in kinds["live_latency"]:
        e, s, r = x.extra, x.extra["send_submit_us"], x.extra["recv_submit_us"]
        rows.append(
            [f"{e['case']}", e["placement"], str(s["n"])]
            + [_us(s[k]) for k in ("p50", "p90", "p99", "p99.9", "max")]
            + [_us(r["p50"]), _us(r["p99"])]
        )
    if rows:
        head = ["Case", "Placement", "Orders", "p50", "p90", "p99", "p99.9", "max"]
        head += ["recv p50", "recv p99"]
        lines += [
            "Tick to order (`bench/bench_latency.py`): sender stamp -> journal `submit_ns`, then "
            "the engine-internal `recv_ns` -> `submit_ns`. Case = ticks/s (x100: 100-tick "
            "frames).",
            "",
            *table(head, rows, "ll" + "r" * (len(head) - 2)),
            "",
        ]
    for x in kinds["live_rate"]:
        e = x.extra
        steps = ", ".join(
            f"{_rate(s['rate'])} {'ok' if s['sustained'] else 'lags'}" for s in e["steps"]
        )
        lines.append(
            f"- Sustained rate, {e['frames']} frames: flood capacity {_rate(e['capacity'])}, "
            f"highest paced rate without a growing backlog {_rate(e['max_sustained'])} "
            f"(steps: {steps})."
        )
    for x in kinds["web_status"]:
        e = x.extra
        lines.append(
            f"- `/api/status` with ticks at {_rate(e['tick_rate'])} in {e['frames']} frames "
            f"(engine processed {_rate(e.get('engine_ticks_per_s'))}): "
            f"{e['requests_per_s']:,.0f} req/s on {e['connections']} connections, request "
            f"p50 {_us(e['request_us']['p50'])}, p99 {_us(e['request_us']['p99'])}."
        )
    for x in kinds["web_ws"]:
        e = x.extra
        none, loaded = e["none"]["send_submit_us"], e["loaded"]["send_submit_us"]
        lines.append(
            f"- {e['clients']} `/ws` clients at {e['push_hz']:g} Hz, ticks at "
            f"{_rate(e['tick_rate'])}: tick-to-order p99 {_us(loaded['p99'])} vs "
            f"{_us(none['p99'])} without ({e['p99_ratio']}x); p50 {_us(loaded['p50'])} vs "
            f"{_us(none['p50'])}; {e['loaded']['messages']:,} messages received."
        )
    for x in kinds["web_rss"]:
        e = x.extra
        lines.append(
            f"- RSS over {e['seconds']:g} s at {_rate(e['tick_rate'])}: first "
            f"{e['first_mib']} MiB, last {e['last_mib']} MiB, max {e['max_mib']} MiB; after "
            f"warm-up it moved {e['steady_range_mib']} MiB, slope "
            f"{e['slope_mib_per_min']} MiB/min."
        )
    return lines


#: ``extra_info["kind"]`` of the live benchmarks
LIVE_KINDS = ("live_latency", "live_rate", "web_status", "web_ws", "web_rss")


if __name__ == "__main__":
    sys.exit(main())
