"""The command line: ``python run.py [run|simfeed|backtest|doctor|ticks|login]`` (or ``otrade``).

Exit status 0 on success, 2 on a bad config or bad arguments; nothing starts on a bad config.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

from engine.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    dump_config,
    ensure_config,
    load_config,
)

#: files estimated above this many ticks get a progress bar
PROGRESS_MIN_TICKS = 10_000_000


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    command = args.command or "run"
    try:
        if command == "run":
            return _run(args)
        if command == "doctor":
            return _doctor(args)
        if command == "backtest":
            return _backtest(args)
        if command == "simfeed":
            return _simfeed(args)
        if command == "login":
            return _login(args)
        if command == "replay-session":
            return _replay_session(args)
        return _ticks(args)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otrade", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help="engine config (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="paper trade live on the configured feed (default)")
    simfeed = commands.add_parser("simfeed", help="serve simulated ticks over a WebSocket")
    doctor = commands.add_parser("doctor", help="validate the config and print it resolved")
    backtest = commands.add_parser("backtest", help="replay a tick file through the engine")
    backtest.add_argument("--ticks", type=Path, required=True, help="CSV or NPY tick file")
    backtest.add_argument("--report", type=Path, help="write the JSON report here")
    ticks = commands.add_parser("ticks", help="write a simulated tick file for backtests")
    ticks.add_argument("--out", type=Path, required=True, help="output .csv or .npy")
    ticks.add_argument("--count", type=int, default=1_000_000, help="ticks (%(default)s)")
    ticks.add_argument("--seed", type=int, help="seed (default: the config's feed.seed)")
    replay = commands.add_parser(
        "replay-session", help="replay a live session's recording into a journal"
    )
    replay.add_argument(
        "--recording", type=Path, required=True, help="a recording file or the record.dir folder"
    )
    replay.add_argument("--journal", type=Path, required=True, help="the journal to write")
    login = commands.add_parser("login", help="log in to a broker and store the access token")
    login.add_argument("broker", choices=("kite",), help="the broker to log in to")
    from engine.feeds import simfeed as simfeed_module

    simfeed_module.add_arguments(simfeed)
    for sub in (run, simfeed, doctor, backtest, ticks, replay, login):
        sub.add_argument(
            "--config",
            type=Path,
            default=argparse.SUPPRESS,
            help="engine config (default: config/engine.json)",
        )
    return parser


def _run(args: argparse.Namespace) -> int:
    cfg, created = ensure_config(args.config)
    if created:
        print(f"otrade: wrote the default config to {args.config}", flush=True)
    if cfg.feed.name == "replay":
        print(
            f"config error: {args.config}: feed.name: live runs take the 'sim', 'ws' or 'broker'"
            " feed,"
            " got 'replay' (use `backtest --ticks` to replay a file, or `simfeed --replay`"
            " to stream it)",
            file=sys.stderr,
        )
        return 2
    from engine.brokers.live_base import BrokerError
    from engine.journal import JournalError
    from engine.launch import run_live
    from web.server import WebServer  # the composition root: the engine never imports the web

    try:
        run_live(cfg, surface=WebServer)
    except JournalError as error:
        print(f"journal error: {args.config}: {error}", file=sys.stderr)
        return 2
    except BrokerError as error:
        hint = " (run `python run.py login kite`)" if cfg.broker.name == "kite" else ""
        print(f"broker error: {cfg.broker.name}: {error.message}{hint}", file=sys.stderr)
        return 2
    print("otrade: stopped", flush=True)
    return 0


def _simfeed(args: argparse.Namespace) -> int:
    from engine.feeds import simfeed

    return simfeed.serve(load_config(args.config), args)


def _replay_session(args: argparse.Namespace) -> int:
    from engine.replay_session import replay_session

    totals = replay_session(load_config(args.config), args.recording, args.journal)
    print(f"otrade: replayed {orjson.dumps(totals).decode()}", flush=True)
    return 0


def _login(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    from engine.brokers.kite.login import login

    return login(cfg)


def _doctor(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    sys.stdout.write(dump_config(cfg).decode())
    print(f"otrade: {args.config} is valid", file=sys.stderr)
    return 0


def _backtest(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if not args.ticks.exists():
        print(f"otrade: tick file not found: {args.ticks}", file=sys.stderr)
        return 2
    from engine.backtest import run_file

    progress = _Progress(args.ticks)
    try:
        report = run_file(cfg, args.ticks, args.report, progress)
    except ValueError as error:
        print(f"otrade: {error}", file=sys.stderr)
        return 2
    progress.done()
    print(summary_table(report))
    if args.report:
        print(f"report: {args.report}")
    return 0


def _ticks(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    from engine.feeds.sim import write_ticks_csv, write_ticks_npy

    write = write_ticks_npy if args.out.suffix == ".npy" else write_ticks_csv
    instruments = cfg.instruments
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start_ts, retime = time.time_ns(), None
    if cfg.session.enabled:
        # ticks only in trading hours, from today's trading day on, day after day
        from engine.feeds.session_clock import SessionClock
        from engine.sessions import trading_day

        start_ts = 0
        retime = SessionClock(cfg.session, trading_day(time.time_ns(), cfg.session)).retime
    write(
        args.out,
        [inst.symbol for inst in instruments],
        [inst.tick_size for inst in instruments],
        [inst.sim_start_price for inst in instruments],
        n_ticks=args.count,
        seed=cfg.feed.seed if args.seed is None else args.seed,
        start_ts=start_ts,
        step_ticks=cfg.feed.sim_step_ticks,
        ticks_per_second=cfg.feed.ticks_per_second,
        retime=retime,
    )
    print(f"otrade: wrote {args.count:,} ticks to {args.out}")
    return 0


class _Progress:
    """A progress bar on stderr for files estimated above PROGRESS_MIN_TICKS ticks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.enabled: bool | None = None
        self.started = time.monotonic()

    def __call__(self, ticks_read: int, bytes_read: int, bytes_total: int) -> None:
        if self.enabled is None:
            # after the first chunk: ticks per byte so far predicts the file's tick count
            per_byte = ticks_read / max(bytes_read, 1)
            self.enabled = bytes_total * per_byte > PROGRESS_MIN_TICKS and sys.stderr.isatty()
        if self.enabled and bytes_total:
            share = bytes_read / bytes_total
            bar = "#" * int(share * 40)
            elapsed = time.monotonic() - self.started
            print(f"\r[{bar:<40}] {share:6.1%} {elapsed:6.1f}s", end="", file=sys.stderr)

    def done(self) -> None:
        if self.enabled:
            print(file=sys.stderr)


def summary_table(report: dict) -> str:
    """Return the backtest report's headline figures as an aligned table."""
    summary, timing = report["summary"], report["timing"]
    profit_factor = summary["profit_factor"]
    rows = [
        ("ticks", f"{report['ticks']:,}"),
        ("rejected ticks", orjson.dumps(report["rejected_ticks"]).decode()),
        ("trades", f"{summary['trades']:,}"),
        ("wins / losses", f"{summary['wins']:,} / {summary['losses']:,}"),
        ("win rate", f"{summary['win_rate']:.1%}"),
        ("realized P&L", f"{summary['realized_pnl']:,.2f}"),
        ("profit factor", "n/a" if profit_factor is None else f"{profit_factor:.3f}"),
        ("max drawdown", f"{summary['max_drawdown']:,.2f}"),
        ("load", f"{timing['load_s']:.3f} s"),
        ("run", f"{timing['run_s']:.3f} s"),
        ("ticks/s", f"{timing['ticks_per_s']:,.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
