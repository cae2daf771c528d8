"""The durability section of BENCHMARKS.md: the recorder's and fsync's cost, and the soak.

Kept apart from :mod:`bench.report` (which imports it) so each file holds one report's worth.
"""

from __future__ import annotations

from typing import Any

#: the issue's ceiling on what the recorder may add to the single-tick frame path
RECORDER_SLOWDOWN_TARGET = 0.10
#: the issue's ceiling on the soak's RSS growth, KiB
SOAK_RSS_TARGET_KIB = 5 * 1024

FRAME = "test_single_tick_frame[{}]"
FSYNC = "test_journal_fsync[{}]"
SOAK = "test_soak"


def _pair(benches: dict[str, Any], name: str, off: str, on: str):
    return benches.get(name.format(off)), benches.get(name.format(on))


def durability_section(benches: dict[str, Any], table, fmt_time) -> list[str]:
    """Return the recorder, fsync and soak figures, or nothing when none ran."""
    lines: list[str] = []
    rows: list[list[str]] = []
    off, on = _pair(benches, FRAME, "no-recorder", "recorder")
    if off is not None and on is not None:
        slowdown = on.median / off.median - 1.0
        verdict = "met" if slowdown <= RECORDER_SLOWDOWN_TARGET else "**missed**"
        rows.append(
            [
                "single-tick frame (parse + `Engine.process`), recorder off -> on",
                f"{fmt_time(off.per_tick)} -> {fmt_time(on.per_tick)}",
                f"{fmt_time(off.p99 / off.ticks)} -> {fmt_time(on.p99 / on.ticks)}",
                f"{slowdown:+.1%} (target <= +10 %: {verdict})",
            ]
        )
    off, on = _pair(benches, FSYNC, "no-fsync", "fsync")
    if off is not None and on is not None:
        blocks = on.extra.get("blocks_per_round") or 0
        per_block = (on.median - off.median) / blocks if blocks else None
        rows.append(
            [
                "1 s of a 100k ticks/s trading feed, journal fsync off -> on",
                f"{fmt_time(off.median)} -> {fmt_time(on.median)}",
                f"{fmt_time(off.p99)} -> {fmt_time(on.p99)}",
                f"{on.median / off.median:.2f}x; {blocks:.0f} blocks, "
                f"{fmt_time(per_block)} per fsync",
            ]
        )
    if rows:
        lines += [
            "## Durability",
            "",
            "Same run, each case against itself off (`bench/bench_durability.py`).",
            "",
            *table(["Case", "Median", "p99", "Cost"], rows),
        ]
    soak = benches.get(SOAK)
    if soak is not None and soak.extra.get("rss_kib_max") is not None:
        x = soak.extra
        growth = x["rss_kib_max"] - x["rss_kib_min"]
        flat = "met" if growth <= SOAK_RSS_TARGET_KIB else "**missed**"
        lines += [
            "",
            f"Soak (`bench/bench_soak.py`): {x['seconds']:.0f} s at 50k ticks/s in ten-tick "
            f"frames, 20 `/ws` clients, `/api/status` polled at 10 Hz, the recorder on.",
            "",
            f"- RSS after the first minute: {x['rss_kib_min'] / 1024:.1f} to "
            f"{x['rss_kib_max'] / 1024:.1f} MiB ({growth / 1024:.1f} MiB apart; target "
            f"within 5 MiB: {flat}); from the first to the last sample "
            f"{x['rss_growth_kib'] / 1024:+.1f} MiB.",
            f"- Frame latency p99 (the engine's own, over its last frames), worst sample of the "
            f"first minute {x['p99_first_minute_us']:.0f} µs, of the last minute "
            f"{x['p99_last_minute_us']:.0f} µs.",
            f"- Recording: {x['recording_bytes'] / 2**20:.1f} MiB, "
            f"{x['recording_bytes_per_tick']:.1f} bytes per tick (32 per tick + 32 per ten-tick "
            "frame = 35.2 expected, plus one snapshot per file); whole records, one row per tick.",
            f"- Every `/ws` client was served throughout (fewest messages: "
            f"{x['ws_messages_min']:,}).",
        ]
    return lines
