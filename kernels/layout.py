"""Column layout of the state book and the event ring, and the engine's enumerations.

The whole trading state is one float64 matrix, the *book*, so that a kernel call from Python
pays the dispatch of one array instead of a dozen. Rows ``0 .. n-1`` hold the instruments, the
rows after them the session calendar, and the last row the account. Integer columns
(timestamps, counters) hold int64 bit patterns, so nanosecond timestamps keep full precision:
kernels read them with ``kernels.jit.get_int``, Python through ``book.view(np.int64)``.

Events leave the kernels through an int64 ring (``events``), one row per order, fill or risk
event; its price and P&L columns hold float64 bit patterns (``events.view(np.float64)``).
"""

# -- sides ------------------------------------------------------------------------------------
FLAT = 0  #: no position
LONG = 1  #: long position or buy
SHORT = -1  #: short position or sell

# -- instrument row: parameters (written once from config) -------------------------------------
I_TICK_SIZE = 0  #: price increment
I_LOT_SIZE = 1  #: units per lot
I_POINT_VALUE = 2  #: currency per 1.0 of price per unit
I_ALPHA_FAST = 3  #: 2 / (fast + 1)
I_ALPHA_SLOW = 4  #: 2 / (slow + 1)
I_SLOW = 5  #: slow period; a signal needs more ticks than this
I_QUANTITY = 6  #: lots per entry (fixed sizing)
I_TARGET_TICKS = 7  #: target distance in ticks
I_STOP_TICKS = 8  #: stop distance in ticks
I_TRAIL_TICKS = 9  #: trailing distance in ticks, 0 = off
I_BREAKEVEN_TICKS = 10  #: profit in ticks that moves the stop to entry, 0 = off
I_SLIPPAGE_TICKS = 11  #: adverse ticks on market fills
I_MAX_POSITION = 12  #: lots allowed open
I_ATR_PERIOD = 13  #: Wilder period of the ATR
I_RSI_PERIOD = 14  #: Wilder period of the RSI
I_RISK_PER_TRADE = 15  #: currency risked per entry, 0 = fixed quantity
I_TARGET_ATR = 16  #: target as ATR multiple, 0 = use ticks
I_STOP_ATR = 17  #: stop as ATR multiple, 0 = use ticks
# -- instrument row: market -------------------------------------------------------------------
I_LTP = 18  #: last traded price
I_LTP_TICKS = 19  #: last price on the tick grid, round(ltp / tick_size)
I_TICKS = 20  #: accepted ticks so far (k of the pinned semantics)
I_DAY_HIGH = 21  #: session-day high
I_DAY_LOW = 22  #: session-day low
I_DAY_VOLUME = 23  #: session-day volume
I_DAY_TURNOVER = 24  #: session-day sum of price * size; VWAP = turnover / volume
# -- instrument row: current and last closed time bar ------------------------------------------
I_BAR_OPEN = 25  #: open of the bar being built
I_BAR_HIGH = 26  #: high of the bar being built
I_BAR_LOW = 27  #: low of the bar being built
I_BAR_CLOSE = 28  #: close of the bar being built
I_BAR_VOLUME = 29  #: volume of the bar being built
I_BARS = 30  #: bars closed so far
I_LAST_HIGH = 31  #: high of the last closed bar
I_LAST_LOW = 32  #: low of the last closed bar
I_LAST_CLOSE = 33  #: close of the last closed bar
# -- instrument row: indicators ----------------------------------------------------------------
I_EMA_FAST = 34  #: fast tick EMA
I_EMA_SLOW = 35  #: slow tick EMA
I_DIFF = 36  #: ema_fast - ema_slow on this tick
I_PREV_DIFF = 37  #: the previous tick's diff
I_SIGNAL = 38  #: +1 long, -1 short, 0 none, from this tick
I_ATR = 39  #: Wilder ATR, NaN until warm
I_ATR_SUM = 40  #: sum of true ranges during warm-up
I_RSI = 41  #: Wilder RSI, NaN until warm
I_RSI_GAIN = 42  #: average (warm-up: summed) gain
I_RSI_LOSS = 43  #: average (warm-up: summed) loss
I_PREV_BAR_CLOSE = 44  #: close of the bar before the last closed one
# -- instrument row: position and bracket ------------------------------------------------------
I_SIDE = 45  #: FLAT, LONG or SHORT
I_QTY = 46  #: units open (unsigned)
I_ENTRY_TICKS = 47  #: average entry on the tick grid
I_TARGET = 48  #: bracket target in ticks, 0 = none
I_STOP = 49  #: bracket stop in ticks, 0 = none
I_STOP_KIND = 50  #: exit reason the stop carries: R_STOP, R_TRAIL or R_BREAKEVEN
I_MAE_TICKS = 51  #: worst excursion of the open trade, ticks (<= 0)
I_MFE_TICKS = 52  #: best excursion of the open trade, ticks (>= 0)
I_REALIZED = 53  #: realized P&L of the instrument since start
I_UNREALIZED = 54  #: unrealized P&L at the LTP
I_TRADES = 55  #: closed trades
I_EXIT_TICKS = 56  #: scratch: exit price in ticks decided by check_bracket
I_ENTERED_AT = 57  #: I_TICKS value of the entry tick, so exits wait for the next tick
# -- instrument row: int64 columns (jit.get_int in kernels, State.ints in Python) ---------------
I_LAST_TS = 58  #: ts of the last accepted tick, ns
I_ENTRY_TS = 59  #: ts of the open trade's entry, ns
I_BAR_END = 60  #: ts at which the current bar closes, ns
I_BAR_NS = 61  #: bar length, ns
I_DAY_START = 62  #: start of the session day the day statistics belong to, ns
# -- instrument row: live broker ------------------------------------------------------------------
I_PENDING = 63  #: live only: LONG/SHORT = an entry intent awaits the broker, PENDING_EXIT = an exit
I_STOP_RESTING = 64  #: live only: 1 while the broker confirms the position's stop order resting
# -- instrument row: price band ------------------------------------------------------------------
I_REF_PRICE = 65  #: band reference before the first accepted tick (config or restored), 0 = none
#: width of an instrument row
N_INST_COLS = 66

# -- account row (row n of the book) -----------------------------------------------------------
A_DAILY_LOSS_LIMIT = 0  #: day P&L at or below -limit flattens and stops entries for the day
A_MAX_LOSS_LIMIT = 1  #: the maximum loss limit of every A_MAX_LOSS_MODE; inf = off
A_MAX_ORDERS_PER_SEC = 2  #: orders per second before entries are refused
A_REALIZED = 3  #: realized P&L since start
A_UNREALIZED = 4  #: sum of the instruments' unrealized P&L
A_EQUITY = 5  #: realized + unrealized
A_PEAK = 6  #: running peak of equity
A_DRAWDOWN = 7  #: peak - equity
A_MAX_DRAWDOWN = 8  #: largest drawdown seen
A_DAY_REALIZED = 9  #: realized P&L of the session day
A_DAY_PNL = 10  #: day realized + unrealized
# int64 columns of the account row
A_HALT = 11  #: H_* code: why entries are stopped until the operator resumes, 0 = running
A_DAY_HALT = 12  #: H_DAILY_LOSS while the day's loss limit is hit, cleared at the next day
A_PAUSED = 13  #: nonzero while the operator or a stale feed pauses entries
A_EOD_DONE = 14  #: 1 once positions were flattened at flatten_at this day
A_EVENTS = 15  #: events written to the ring since the last drain
A_EVENT_CAP = 16  #: rows in the event ring
A_SEQ = 17  #: sequence number of the next event, never reset
A_SESSION_ROW = 18  #: book row of the current session day
A_SESSION_END = 19  #: one past the last filled session row
A_RATE_WINDOW = 20  #: second (ts // 1e9) the order counter belongs to
A_RATE_COUNT = 21  #: orders sent in that second
A_TICKS = 22  #: ticks accepted
A_REJ_UNKNOWN = 23  #: ticks refused: unknown instrument
A_REJ_NON_FINITE = 24  #: ticks refused: NaN or infinite price
A_REJ_NON_POSITIVE = 25  #: ticks refused: price <= 0
A_REJ_BAD_SIZE = 26  #: ticks refused: size NaN, infinite or negative
A_REJ_STALE = 27  #: ticks refused: older than the instrument's last
A_EVENTS_LOST = 28  #: events that found the ring full (the drivers keep this at 0)
A_N_INST = 29  #: instruments in the book
A_CALENDAR_END = 39  #: ts beyond the calendar's last day; run_ticks stops there for a refill
A_PROFIT_TARGET = 30  #: realized P&L at or above which the profit target is reached; inf = off
A_MAX_CONTRACTS = 31  #: lots open across all instruments that entries may not exceed; inf = off
A_LIVE = 40  #: 1 when a live broker executes the intents: no fill happens inside the kernels
A_PRICE_BAND = 41  #: largest move from the reference price, fraction (0.2 = 20 %); inf = off
A_MAX_TS = 42  #: ticks at or after this ts, ns, are refused (wall clock + skew live)
A_REJ_FUTURE = 43  #: ticks refused: at or after A_MAX_TS
A_REJ_PRICE_BAND = 44  #: ticks refused: outside the price band around the reference
A_MAX_LOSS_MODE = 45  #: ML_* rule of the maximum loss limit
A_FLOOR = 46  #: ML_EOD_TRAILING / ML_STATIC: equity (realized + unrealized) at or below which
#: the maximum loss limit is breached, relative to the starting balance; -inf = off
A_EOD_HIGH = 47  #: highest realized P&L at the end of a trading day (0 = the starting balance)
A_FLOOR_LOCK = 48  #: 1: the end-of-day floor never rises above the starting balance (Topstep)
A_TRAIL_LIMIT = 49  #: ML_INTRADAY_TRAILING: the drawdown from the peak that breaches; else inf
A_REFUSED = 50  #: entries refused by the risk gate, one column per G_* code (50 .. 61)
#: width of the account row
N_ACCOUNT_COLS = 62

#: tick reject reasons by apply_tick code - 1, as named in reports
REJECT_REASONS = (
    "unknown_symbol", "non_finite", "non_positive", "bad_size", "stale_timestamp",
    "future_timestamp", "price_band",
)  # fmt: skip
#: account column counting each reason of REJECT_REASONS
REJECT_COLUMNS = (
    A_REJ_UNKNOWN, A_REJ_NON_FINITE, A_REJ_NON_POSITIVE, A_REJ_BAD_SIZE, A_REJ_STALE,
    A_REJ_FUTURE, A_REJ_PRICE_BAND,
)  # fmt: skip
#: A_MAX_TS when no wall clock bounds the ticks: 2200-01-01 UTC, so that any accepted tick's
#: session calendar can be computed (int64 ns end in 2262)
TS_HORIZON = 7_258_118_400_000_000_000

# -- session calendar rows (int64 columns) -----------------------------------------------------
S_DAY_START = 0  #: local midnight of the day, ns UTC
S_OPEN = 1  #: session open, ns UTC
S_FLATTEN = 2  #: flatten_at, ns UTC
S_CLOSE = 3  #: session close, ns UTC
S_DAY_END = 4  #: next local midnight, ns UTC

# -- maximum loss rules (A_MAX_LOSS_MODE) -------------------------------------------------------
ML_INTRADAY_TRAILING = 0  #: breached when equity falls more than the limit below its peak
ML_EOD_TRAILING = 1  #: floor = highest end-of-day balance - limit, moved only at a day's end
ML_STATIC = 2  #: floor = starting balance - limit
#: maximum loss rule names by code, as ``risk.max_loss_mode`` spells them
MAX_LOSS_MODES = ("intraday_trailing", "eod_trailing", "static")

#: I_PENDING value while an exit intent awaits the broker
PENDING_EXIT = 2

#: width of the book: the widest of its row kinds
N_BOOK_COLS = max(N_INST_COLS, N_ACCOUNT_COLS, 5)

# -- exit reasons ------------------------------------------------------------------------------
R_NONE = 0  #: no exit
R_TARGET = 1  #: the bracket target filled
R_STOP = 2  #: the initial stop filled
R_TRAIL = 3  #: the trailed stop filled
R_BREAKEVEN = 4  #: the stop moved to entry filled
R_EOD = 5  #: flattened at the session's flatten_at
R_RISK = 6  #: flattened by a loss limit
R_KILL = 7  #: flattened by the operator's kill switch
R_MANUAL = 8  #: closed by an operator order
R_ORPHAN = 9  #: live: a leg of an already closed position filled; what it opened is closed
#: exit reason names by code
EXIT_REASONS = (
    "", "target", "stop", "trail", "breakeven", "eod", "risk", "kill", "manual", "orphan",
)  # fmt: skip

# -- risk gate codes (also halt codes) ---------------------------------------------------------
G_OK = 0  #: entry allowed
G_HALTED = 1  #: halted by the kill switch
G_MAX_LOSS = 2  #: halted by the maximum loss limit
G_DAILY_LOSS = 3  #: the day's loss limit is hit
G_PAUSED = 4  #: paused by the operator or a stale feed
G_OUTSIDE_SESSION = 5  #: outside open .. min(flatten_at, close)
G_MAX_POSITION = 6  #: the entry would exceed max_position lots
G_RATE_LIMIT = 7  #: max_orders_per_second reached
G_ZERO_SIZE = 8  #: risk-based sizing gave no whole lot
G_PROFIT_TARGET = 9  #: the account reached its profit target: flattened, no entries until resume
G_MAX_CONTRACTS = 10  #: the entry would exceed max_contracts lots across all instruments
#: risk gate code names by code
GATE_REASONS = (
    "ok",
    "halted",
    "max_loss",
    "daily_loss",
    "paused",
    "outside_session",
    "max_position",
    "rate_limit",
    "zero_size",
    "profit_target",
    "max_contracts",
)

# -- event ring --------------------------------------------------------------------------------
E_KIND = 0  #: K_* event kind
E_SEQ = 1  #: sequence number
E_INST = 2  #: instrument row
E_SIDE = 3  #: side of the order: LONG buys, SHORT sells
E_QTY = 4  #: units
E_TS = 5  #: ts of the tick that caused the event, ns
E_REASON = 6  #: R_* for exits, G_* for refusals and halts
E_ENTRY_TS = 7  #: entry ts of the closed trade, ns
E_PRICE = 8  #: float64: fill price
E_ENTRY_PRICE = 9  #: float64: entry price of the closed trade
E_PNL = 10  #: float64: realized P&L of the fill
E_TARGET = 11  #: float64: target price (entries and stop moves)
E_STOP = 12  #: float64: stop price (entries and stop moves)
E_MAE = 13  #: float64: maximum adverse excursion of the closed trade, price
E_MFE = 14  #: float64: maximum favourable excursion of the closed trade, price
#: width of an event row
N_EVENT_COLS = 15

K_ENTRY = 1  #: a market entry filled, with its bracket
K_EXIT = 2  #: a position closed
K_STOP_MOVED = 3  #: the bracket stop moved (trail or breakeven)
K_REFUSED = 4  #: an entry signal refused by the risk gate
K_HALT = 5  #: a halt started (daily loss, max loss, kill)
K_DAY = 6  #: a new session day began
K_INTENT = 7  #: live: an order for the broker (E_REASON R_NONE = entry, else the exit's reason)
#: event kind names by code
EVENT_KINDS = ("", "entry", "exit", "stop_moved", "refused", "halt", "day", "intent")
