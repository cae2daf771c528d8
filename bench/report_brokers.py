"""The broker section of BENCHMARKS.md: Kite ticker decode and intent -> wire latency.

Kept apart from :mod:`bench.report` (which imports it) so each file holds one report's worth.
"""

from __future__ import annotations

from typing import Any

#: the issue's target for the intent -> wire p99, µs
WIRE_P99_TARGET_US = 200.0


def _ns(seconds: float) -> str:
    return f"{seconds * 1e9:,.1f} ns"


def brokers_section(benches: dict[str, Any], table) -> list[str]:
    """Return the broker tables, or nothing when neither benchmark ran."""
    decode = [x for x in benches.values() if x.extra.get("kind") == "kite_decode"]
    wire = {x.extra["case"]: x for x in benches.values() if x.extra.get("kind") == "order_wire"}
    if not decode and not wire:
        return []
    lines = ["## Brokers", ""]
    if decode:
        rows = []
        for x in sorted(decode, key=lambda x: (x.extra["mode"], x.extra["decoder"])):
            ticks = x.extra["ticks"]
            speedup = x.extra.get("speedup_vs_pykiteconnect")
            rows.append(
                [
                    x.extra["mode"],
                    x.extra["decoder"],
                    _ns(x.median / ticks),
                    _ns(x.p99 / ticks),
                    "" if speedup is None else f"{speedup:g}x",
                ]
            )
        lines += [
            "Kite binary ticker decode (`bench/bench_kite_decode.py`): one frame of "
            f"{decode[0].extra['ticks']} packets per round, per tick; the ratio is "
            "pykiteconnect's median over OTrade's, same run. Target: LTP >= 20x.",
            "",
            *table(["Mode", "Decoder", "median/tick", "p99/tick", "speed-up"], rows, "llrrr"),
            "",
        ]
    if wire:
        rows = []
        for case in ("otrade", "bare_httpx", "raw_write"):
            if case in wire:
                e = wire[case].extra
                rows.append(
                    [case, str(e["orders"]), f"{e['p50_us']:,.1f} µs", f"{e['p99_us']:,.1f} µs"]
                )
        otrade = wire.get("otrade")
        verdict = ""
        if otrade is not None:
            met = otrade.extra["p99_us"] <= WIRE_P99_TARGET_US
            verdict = f" Target p99 <= {WIRE_P99_TARGET_US:g} µs: {'met' if met else '**missed**'}."
        lines += [
            "Intent -> order request's first byte at a local server (`bench/bench_order_wire.py`):"
            " from the drained intent to `bench/order_sink.py` reading the request, loopback"
            " included; `bare_httpx` is one `httpx.AsyncClient.post` of the same form and"
            " `raw_write` prepared bytes on an open connection (this machine's floor), same run."
            + verdict,
            "",
            *table(["Case", "Orders", "p50", "p99"], rows, "lrrr"),
            "",
        ]
    return lines
