"""The broker section of BENCHMARKS.md: Kite ticker decode, intent -> wire, live brackets.

Kept apart from :mod:`bench.report` (which imports it) so each file holds one report's worth.
"""

from __future__ import annotations

from typing import Any

#: the issue's target for the intent -> wire p99, µs
WIRE_P99_TARGET_US = 200.0
#: brokers of the brackets table, in order
BRACKET_BROKERS = ("kite", "upstox", "projectx")
#: what bounds each broker's two bracket figures; ``{poll}`` is its adapter's poll interval
BRACKET_BOUNDS = {
    "kite": (
        "fills come as ticker order messages, so both figures are the message's delivery, the"
        " adapter's and the router's work and the requests' way in; the {poll} order-book poll"
        " only matters when a message is lost."
    ),
    "upstox": (
        "the adapter has no order stream and polls the order book every {poll} while an order"
        " is open, and at once after a placement. So entry -> legs is the entry's answer plus"
        " that one poll, while a resting target's fill waits for the next periodic poll:"
        " fill -> cancel is spread over 0 to {poll}, bounded by the poll interval, not by OTrade."
    ),
    "projectx": (
        "fills come on the user hub (SignalR over WebSocket), so both figures are the event's"
        " delivery, the adapter's and the router's work and the requests' way in; the {poll}"
        " `Order/searchOpen` poll only matters when an event is lost."
    ),
}


def _ns(seconds: float) -> str:
    return f"{seconds * 1e9:,.1f} ns"


def brokers_section(benches: dict[str, Any], table) -> list[str]:
    """Return the broker tables, or nothing when neither benchmark ran."""
    decode = [x for x in benches.values() if x.extra.get("kind") == "kite_decode"]
    wire = {x.extra["case"]: x for x in benches.values() if x.extra.get("kind") == "order_wire"}
    brackets = brackets_lines(benches, table)
    if not decode and not wire and not brackets:
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
    return lines + brackets


def _ms(value: float) -> str:
    return f"{value:,.2f} ms" if value < 10 else f"{value:,.1f} ms"


def brackets_lines(benches: dict[str, Any], table) -> list[str]:
    """Return the live brackets table (``bench/bench_brackets.py``), or nothing when it did not
    run.

    Parameters
    ----------
    benches : dict
        The report's benchmarks by name; those with ``extra_info["kind"] == "brackets"`` are
        used, one per broker.
    table : callable
        ``bench.report.table``: header, rows and alignment -> Markdown lines.

    Returns
    -------
    list of str
        Markdown lines ending with a blank line, or an empty list.
    """
    runs = {
        x.extra["broker"]: x.extra for x in benches.values() if x.extra.get("kind") == "brackets"
    }
    if not runs:
        return []
    order = [b for b in BRACKET_BROKERS if b in runs] + sorted(set(runs) - set(BRACKET_BROKERS))
    rows = []
    for broker in order:
        e = runs[broker]
        rows.append(
            [
                broker,
                str(e["rounds"]),
                _ms(e["entry_legs_p50_ms"]),
                _ms(e["entry_legs_p99_ms"]),
                _ms(e["fill_cancel_p50_ms"]),
                _ms(e["fill_cancel_p99_ms"]),
                e["updates"],
            ]
        )
    hold = max(e["hold_s"] for e in runs.values())
    rounds = max(e["rounds"] for e in runs.values())
    lines = [
        "Live brackets at each broker's fake (`bench/bench_brackets.py`, alone:"
        " `pytest bench/bench_brackets.py --benchmark-only`): the engine, the real adapter and"
        " the router wired by `engine.live.Runtime` as `run.py` wires them, in one uvloop"
        " process, the fake in a thread of it. Both stamps of a figure are the fake's"
        " (`time.monotonic_ns()`): *entry -> legs* from the fake filling the market entry to"
        " its receiving the later of the stop and the target; *fill -> cancel* from the fake"
        " filling the target to its receiving the stop's cancel. Rounds alternate long and"
        f" short after a warm-up; the legs rest a random 0-{hold:g} s before the target fills;"
        " a round starts only when the adapter's client-side rate limits have room for it, so"
        f" no figure waits on a limiter. With {rounds} rounds the p99 is about the slowest.",
        "",
        *table(
            [
                "Broker",
                "Rounds",
                "entry -> legs p50",
                "p99",
                "fill -> cancel p50",
                "p99",
                "fills reported by",
            ],
            rows,
            "lrrrrrl",
        ),
        "",
        "What bounds each figure (every one includes the request's way into the fake: loopback,"
        " then uvicorn and FastAPI parsing it on the fake's thread, which shares the GIL with"
        " the engine):",
        "",
        *(
            f"- {broker}: " + BRACKET_BOUNDS[broker].format(poll=f"{runs[broker]['poll_s']:g} s")
            for broker in order
            if broker in BRACKET_BOUNDS
        ),
        "",
    ]
    return lines
