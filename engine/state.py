"""The engine's whole trading state: one preallocated book matrix and one event ring.

Sized once from the config; nothing here grows while ticks flow. See ``kernels.layout`` for
the columns.
"""

from __future__ import annotations

import numpy as np

from engine.config import EngineConfig
from engine.sessions import CALENDAR_DAYS, fill_calendar, trading_day
from kernels import close_day, layout
from kernels.record import RC_FLAGS

_INT64_MIN = np.iinfo(np.int64).min
#: nanoseconds in a day (ignoring daylight saving, which only widens the margin)
DAY_NS = 86_400_000_000_000
#: bit of ``A_PAUSED`` set by the operator's pause, cleared by resume
PAUSE_OPERATOR = 1
#: bit of ``A_PAUSED`` set while the live feed is disconnected or stale, cleared by its ticks
PAUSE_FEED = 2
#: bit of ``A_PAUSED`` set while the live broker's token is expired, cleared when renewed
PAUSE_BROKER = 4
#: bit of ``A_PAUSED`` set while the broker's positions or orders disagree with the journal,
#: cleared by the operator (``reconcile`` once fixed at the broker, or ``adopt``)
PAUSE_RECONCILE = 8
#: bit of ``A_PAUSED`` set while the journal cannot be written, cleared once it takes every line
PAUSE_JOURNAL = 16


class State:
    """Own the book (instruments, account, session calendar) and the event ring.

    Parameters
    ----------
    cfg : EngineConfig
        Sizes the arrays and supplies every parameter the kernels read.
    """

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.symbols: tuple[str, ...] = tuple(inst.symbol for inst in cfg.instruments)
        self.index: dict[str, int] = {symbol: i for i, symbol in enumerate(self.symbols)}
        self.n = len(self.symbols)
        self.acct = self.n + CALENDAR_DAYS
        self.book = np.zeros((self.acct + 1, layout.N_BOOK_COLS), np.float64)
        self.ints = self.book.view(np.int64)
        self.calendar = self.ints[self.n : self.acct]
        self.events = np.zeros((cfg.state.event_capacity, layout.N_EVENT_COLS), np.int64)
        self.event_floats = self.events.view(np.float64)
        #: each tick's code from the last ``run_ticks`` (0 accepted, else its reject reason)
        self.codes = np.zeros(cfg.state.chunk_ticks, np.int8)
        #: the flight recorder's buffer and its control words (``kernels.record``); a recorder
        #: swaps its own buffer in and turns ``RC_ON`` on; ``record_off`` stays off, for the
        #: calls that resume a batch already recorded
        self.record = np.zeros(0, np.int64)
        self.record_ctl = np.zeros(RC_FLAGS + 2 * self.n, np.int64)
        self.record_off = np.zeros_like(self.record_ctl)
        self._write_parameters()

    def _write_parameters(self) -> None:
        cfg, book, ints = self.cfg, self.book, self.ints
        risk = cfg.risk
        for i, inst in enumerate(cfg.instruments):
            row = book[i]
            row[layout.I_TICK_SIZE] = inst.tick_size
            row[layout.I_LOT_SIZE] = inst.lot_size
            row[layout.I_POINT_VALUE] = inst.point_value
            row[layout.I_SLIPPAGE_TICKS] = cfg.broker.slippage_ticks
            row[layout.I_MAX_POSITION] = risk.max_position
            row[layout.I_ATR] = np.nan
            row[layout.I_RSI] = np.nan
            ints[i, layout.I_LAST_TS] = _INT64_MIN
            row[layout.I_REF_PRICE] = inst.reference_price or 0.0
        self.apply_strategy(cfg)
        acct = book[self.acct]
        acct[layout.A_DAILY_LOSS_LIMIT] = risk.daily_loss_limit or np.inf
        limit = acct[layout.A_MAX_LOSS_LIMIT] = risk.max_loss_limit or np.inf
        mode = layout.MAX_LOSS_MODES.index(risk.max_loss_mode)
        ints[self.acct, layout.A_MAX_LOSS_MODE] = mode
        ints[self.acct, layout.A_FLOOR_LOCK] = int(risk.max_loss_locks_at_start)
        # each rule's threshold, the other one's out of reach: the drawdown from the peak, or
        # the floor (at the start: the limit below the starting balance)
        intraday = mode == layout.ML_INTRADAY_TRAILING
        acct[layout.A_TRAIL_LIMIT] = limit if intraday else np.inf
        acct[layout.A_PROFIT_TARGET] = risk.profit_target or np.inf
        acct[layout.A_MAX_CONTRACTS] = risk.max_contracts or np.inf
        acct[layout.A_FLOOR] = -np.inf if intraday else -limit
        acct[layout.A_MAX_ORDERS_PER_SEC] = risk.max_orders_per_second
        band = risk.price_band_pct
        acct[layout.A_PRICE_BAND] = np.inf if band is None else band / 100.0
        ints[self.acct, layout.A_MAX_TS] = layout.TS_HORIZON
        ints[self.acct, layout.A_N_INST] = self.n
        ints[self.acct, layout.A_LIVE] = int(cfg.broker.live)
        ints[self.acct, layout.A_EVENT_CAP] = self.events.shape[0]
        ints[self.acct, layout.A_SESSION_ROW] = self.n
        ints[self.acct, layout.A_SESSION_END] = self.n + 1
        ints[self.acct, layout.A_CALENDAR_END] = _INT64_MIN  # empty until ensure_calendar
        #: ``A_CALENDAR_END`` as a Python int, so the per-batch check costs no array read
        self.calendar_end = _INT64_MIN

    def apply_strategy(self, cfg: EngineConfig) -> None:
        """Write ``cfg``'s strategy and bracket parameters into every instrument row.

        Market data, indicators and positions are kept, so a change applied between ticks takes
        effect from the next tick: EMAs continue from their current values with the new
        periods, and an open bracket keeps its levels until its next move.
        """
        strategy, bracket = cfg.strategy, cfg.bracket
        self.cfg = cfg
        for i in range(self.n):
            row = self.book[i]
            row[layout.I_ALPHA_FAST] = 2.0 / (strategy.fast + 1)
            row[layout.I_ALPHA_SLOW] = 2.0 / (strategy.slow + 1)
            row[layout.I_SLOW] = strategy.slow
            row[layout.I_QUANTITY] = strategy.quantity
            row[layout.I_RISK_PER_TRADE] = strategy.risk_per_trade or 0.0
            row[layout.I_ATR_PERIOD] = strategy.atr_period
            row[layout.I_RSI_PERIOD] = strategy.rsi_period
            row[layout.I_TARGET_TICKS] = bracket.target_ticks
            row[layout.I_STOP_TICKS] = bracket.stop_ticks
            row[layout.I_TRAIL_TICKS] = bracket.trail_ticks
            row[layout.I_BREAKEVEN_TICKS] = bracket.breakeven_ticks
            row[layout.I_TARGET_ATR] = bracket.target_atr
            row[layout.I_STOP_ATR] = bracket.stop_atr
            self.ints[i, layout.I_BAR_NS] = strategy.bar_seconds * 1_000_000_000

    def tick_codes(self, n: int) -> np.ndarray:
        """Return the scratch array ``run_ticks`` writes the codes of ``n`` ticks to.

        Grown (once, outside the tick path) for a batch larger than ``state.chunk_ticks``:
        a backtest runs its whole file in one call.
        """
        if n > self.codes.shape[0]:
            self.codes = np.zeros(n, np.int8)
        return self.codes

    # -- session calendar ----------------------------------------------------------------------

    def ensure_calendar(self, ts_min: int, ts_max: int) -> None:
        """Make the calendar cover ticks from ``ts_min`` to ``ts_max`` (ns, UTC).

        Cheap when already covered. Otherwise refill it from the current day (from ``ts_min``'s
        day on the first call), or later when ``ts_max`` would still fall beyond it.
        """
        ints, session = self.ints, self.cfg.session
        calendar_end = ints[self.acct, layout.A_CALENDAR_END]
        if ts_max < calendar_end:
            return
        started = calendar_end != _INT64_MIN
        current_start = int(ints[ints[self.acct, layout.A_SESSION_ROW], layout.S_DAY_START])
        anchor = current_start if started else ts_min
        anchor = max(anchor, ts_max - (CALENDAR_DAYS - 2) * DAY_NS)
        fill_calendar(self.calendar, trading_day(anchor, session), session)
        if started and self.calendar[0, layout.S_DAY_START] != current_start:
            # the current day fell out of the calendar: the kernels start a new day
            close_day(self.book)
        ints[self.acct, layout.A_SESSION_ROW] = self.n
        ints[self.acct, layout.A_SESSION_END] = self.acct
        ints[self.acct, layout.A_CALENDAR_END] = self.calendar[-1, layout.S_DAY_END]
        self.calendar_end = int(ints[self.acct, layout.A_CALENDAR_END])

    # -- account and control ---------------------------------------------------------------------

    def account(self, column: int) -> float:
        """Return a float column of the account row."""
        return float(self.book[self.acct, column])

    def account_int(self, column: int) -> int:
        """Return an int64 column of the account row."""
        return int(self.ints[self.acct, column])

    def set_account_int(self, column: int, value: int) -> None:
        """Set an int64 column of the account row (halts, pause), between kernel calls."""
        self.ints[self.acct, column] = value

    def rejected_ticks(self) -> dict[str, int]:
        """Return the ticks refused by the kernels, by reason, nonzero reasons only."""
        row = self.ints[self.acct]
        counts = zip(layout.REJECT_REASONS, layout.REJECT_COLUMNS, strict=True)
        return {name: int(row[column]) for name, column in counts if row[column]}

    def refused_entries(self) -> dict[str, int]:
        """Return entry signals refused by the risk gate, by reason, nonzero reasons only."""
        row = self.ints[self.acct]
        counts = {
            name: int(row[layout.A_REFUSED + g]) for g, name in enumerate(layout.GATE_REASONS)
        }
        return {name: count for name, count in counts.items() if count and name != "ok"}

    def session_open(self, ts: int) -> bool:
        """Return whether entries are allowed at ``ts`` by the session (open until flatten_at)."""
        row = self.ints[self.ints[self.acct, layout.A_SESSION_ROW]]
        closes = min(row[layout.S_FLATTEN], row[layout.S_CLOSE])
        return bool(row[layout.S_OPEN] <= ts < closes)

    def halt_reason(self) -> str | None:
        """Return why entries are stopped (halt, day loss limit, pause, feed), or None."""
        for column in (layout.A_HALT, layout.A_DAY_HALT):
            code = self.account_int(column)
            if code:
                return layout.GATE_REASONS[code]
        paused = self.account_int(layout.A_PAUSED)
        if paused & PAUSE_OPERATOR:
            return "paused"
        if paused & PAUSE_JOURNAL:
            return "journal"
        if paused & PAUSE_RECONCILE:
            return "reconcile"
        if paused & PAUSE_BROKER:
            return "broker_token"
        return "feed" if paused & PAUSE_FEED else None

    def paused(self) -> bool:
        """Return whether the operator paused entries."""
        return bool(self.account_int(layout.A_PAUSED) & PAUSE_OPERATOR)

    def set_pause(self, bit: int, on: bool) -> None:
        """Set or clear one ``PAUSE_*`` bit."""
        paused = self.account_int(layout.A_PAUSED)
        self.set_account_int(layout.A_PAUSED, paused | bit if on else paused & ~bit)

    def resume(self) -> None:
        """Lift an operator or max-loss halt and the operator's pause.

        A feed pause stays until the feed's ticks flow again. The loss window restarts here:
        the running equity peak is reset to the current equity, otherwise the same drawdown
        would halt again on the next tick.
        """
        self.set_account_int(layout.A_HALT, 0)
        self.set_pause(PAUSE_OPERATOR, False)
        self.book[self.acct, layout.A_PEAK] = self.book[self.acct, layout.A_EQUITY]
        self.book[self.acct, layout.A_DRAWDOWN] = 0.0

    def vwap(self, i: int) -> float:
        """Return instrument ``i``'s volume-weighted average price of the session day.

        The LTP while the day has no volume yet.
        """
        row = self.book[i]
        volume = row[layout.I_DAY_VOLUME]
        return float(row[layout.I_DAY_TURNOVER] / volume if volume > 0 else row[layout.I_LTP])

    def positions(self) -> dict[str, dict]:
        """Return the open positions by symbol with their bracket levels, in prices."""
        out: dict[str, dict] = {}
        for i, symbol in enumerate(self.symbols):
            row = self.book[i]
            side = int(row[layout.I_SIDE])
            if side == layout.FLAT:
                continue
            tick = row[layout.I_TICK_SIZE]
            bracketed = int(row[layout.I_STOP_KIND]) != layout.R_NONE
            out[symbol] = {
                "side": "long" if side == layout.LONG else "short",
                "qty": int(row[layout.I_QTY]),
                "entry_price": float(row[layout.I_ENTRY_TICKS] * tick),
                "target": float(row[layout.I_TARGET] * tick) if bracketed else None,
                "stop": float(row[layout.I_STOP] * tick) if bracketed else None,
                "unrealized_pnl": float(row[layout.I_UNREALIZED]),
                "entry_ts": int(self.ints[i, layout.I_ENTRY_TS]),
            }
        return out
