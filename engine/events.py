"""Decode rows of the kernels' event ring into plain records for the journal and reports.

Called once per drained block, never per tick.
"""

from __future__ import annotations

import numpy as np

from kernels import layout


def trade_records(rows: np.ndarray, symbols: tuple[str, ...]) -> list[dict]:
    """Return the closed trades in an event block as report records, in closing order.

    Parameters
    ----------
    rows : np.ndarray
        A block of the int64 event ring (its float columns are read through a float view).
    symbols : tuple of str
        Symbols by instrument row.
    """
    exits = rows[rows[:, layout.E_KIND] == layout.K_EXIT]
    if exits.shape[0] == 0:
        return []
    floats = exits.view(np.float64)
    inst = exits[:, layout.E_INST].tolist()
    # the exit order's side is opposite to the position's
    side = exits[:, layout.E_SIDE].tolist()
    qty = exits[:, layout.E_QTY].tolist()
    entry_ts = exits[:, layout.E_ENTRY_TS].tolist()
    exit_ts = exits[:, layout.E_TS].tolist()
    reason = exits[:, layout.E_REASON].tolist()
    entry_price = floats[:, layout.E_ENTRY_PRICE].tolist()
    exit_price = floats[:, layout.E_PRICE].tolist()
    pnl = floats[:, layout.E_PNL].tolist()
    mae = floats[:, layout.E_MAE].tolist()
    mfe = floats[:, layout.E_MFE].tolist()
    return [
        {
            "symbol": symbols[inst[k]],
            "side": "short" if side[k] == layout.LONG else "long",
            "qty": qty[k],
            "entry_ts": entry_ts[k],
            "entry_price": entry_price[k],
            "exit_ts": exit_ts[k],
            "exit_price": exit_price[k],
            "pnl": pnl[k],
            "exit_reason": layout.EXIT_REASONS[reason[k]],
            "mae": mae[k],
            "mfe": mfe[k],
        }
        for k in range(exits.shape[0])
    ]


def block_records(rows: np.ndarray, symbols: tuple[str, ...], note: dict) -> list[dict]:
    """Decode one drained block of events; ``note`` (the broker order behind a live fill: its
    tag and order id, see ``Engine.fill_note``) goes into the block's entry and exit records."""
    records = [event_record(row, symbols) for row in rows]
    if note:
        for record in records:
            if record["type"] in ("entry", "exit"):
                record.update(note)
    return records


def event_record(row: np.ndarray, symbols: tuple[str, ...]) -> dict:
    """Return one event row as a journal record with a ``type`` field."""
    floats = row.view(np.float64)
    kind = int(row[layout.E_KIND])
    inst = int(row[layout.E_INST])
    record: dict = {
        "type": layout.EVENT_KINDS[kind],
        "seq": int(row[layout.E_SEQ]),
        "tick_t": int(row[layout.E_TS]),
    }
    if inst >= 0:
        record["symbol"] = symbols[inst]
    if kind in (
        layout.K_ENTRY,
        layout.K_EXIT,
        layout.K_STOP_MOVED,
        layout.K_REFUSED,
        layout.K_INTENT,
    ):
        record["side"] = "buy" if row[layout.E_SIDE] == layout.LONG else "sell"
        record["qty"] = int(row[layout.E_QTY])
    if kind == layout.K_ENTRY:
        record["price"] = float(floats[layout.E_PRICE])
        record["avg_price"] = float(floats[layout.E_ENTRY_PRICE])
        if row[layout.E_REASON] == layout.R_NONE:
            record["target"] = float(floats[layout.E_TARGET])
            record["stop"] = float(floats[layout.E_STOP])
    elif kind == layout.K_EXIT:
        record["price"] = float(floats[layout.E_PRICE])
        record["entry_price"] = float(floats[layout.E_ENTRY_PRICE])
        record["entry_ts"] = int(row[layout.E_ENTRY_TS])
        record["pnl"] = float(floats[layout.E_PNL])
        record["reason"] = layout.EXIT_REASONS[int(row[layout.E_REASON])]
    elif kind == layout.K_STOP_MOVED:
        record["target"] = float(floats[layout.E_TARGET])
        record["stop"] = float(floats[layout.E_STOP])
        record["reason"] = layout.EXIT_REASONS[int(row[layout.E_REASON])]
    elif kind == layout.K_INTENT:
        record["price"] = float(floats[layout.E_PRICE])  # the LTP the intent was made at
        reason = int(row[layout.E_REASON])
        record["reason"] = layout.EXIT_REASONS[reason] if reason else "entry"
        if reason == layout.R_NONE:
            record["target"] = float(floats[layout.E_TARGET])
            record["stop"] = float(floats[layout.E_STOP])
    elif kind in (layout.K_REFUSED, layout.K_HALT):
        record["reason"] = layout.GATE_REASONS[int(row[layout.E_REASON])]
    return record


class RefusalFilter:
    """Keep the first refusal of a run of the same reason per symbol; an entry ends the run.

    A closed session or a pause refuses every signal, and one record per run says it (the
    state counts them all).
    """

    def __init__(self) -> None:
        self._reason: dict[str | None, str] = {}

    def keep(self, record: dict) -> bool:
        """Return whether ``record`` (an ``event_record``) should be passed on."""
        kind, symbol = record["type"], record.get("symbol")
        if kind == "refused":
            if self._reason.get(symbol) == record["reason"]:
                return False
            self._reason[symbol] = record["reason"]
        elif kind == "entry":
            self._reason.pop(symbol, None)
        return True
