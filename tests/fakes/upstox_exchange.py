"""The fake Upstox's exchange: order-book entries, positions, and how prices fill orders.

Orders fill against the last traded prices: MARKET at once at the LTP (at the next tick when
there is none), LIMIT when the price reaches the limit (at the LTP when marketable on arrival,
else at the limit), SL-M when the trigger is crossed (at that tick's price), SL by triggering
first and then resting as a limit. Entries and positions are dicts shaped like the official
SDK's ``OrderBookData`` and ``PositionData`` models; an entry's keys starting with ``_`` are
the fake's own and never sent.
"""

from __future__ import annotations

import time

#: statuses after which an order no longer changes
FINAL = ("complete", "cancelled", "rejected")


def ist_now() -> str:
    """Return the current India time as Upstox stamps orders."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 19800))


def new_order(order_id: str, body: dict, symbol: str) -> dict:
    """Return the order-book entry of a valid place request, open or trigger pending.

    Parameters
    ----------
    order_id : str
        The id the fake gives it.
    body : dict
        The place request's JSON.
    symbol : str
        Trading symbol of its instrument key.

    Returns
    -------
    dict
        The entry, marked ``_new`` until its first match.
    """
    key = body["instrument_token"]
    stop = body["order_type"] in ("SL", "SL-M")
    return {
        "exchange": key.split("_")[0],
        "product": body["product"],
        "price": float(body["price"]),
        "quantity": body["quantity"],
        "status": "trigger pending" if stop else "open",
        "guid": None,
        "tag": body.get("tag"),
        "instrument_token": key,
        "placed_by": "FAKE01",
        "tradingsymbol": symbol,
        "trading_symbol": symbol,
        "order_type": body["order_type"],
        "validity": body["validity"],
        "trigger_price": float(body["trigger_price"]),
        "disclosed_quantity": body["disclosed_quantity"],
        "transaction_type": body["transaction_type"],
        "average_price": 0.0,
        "filled_quantity": 0,
        "pending_quantity": body["quantity"],
        "status_message": None,
        "status_message_raw": None,
        "exchange_order_id": f"1100000{order_id[-8:]}",
        "parent_order_id": None,
        "order_id": order_id,
        "variety": "SIMPLE",
        "order_timestamp": ist_now(),
        "exchange_timestamp": ist_now(),
        "is_amo": body["is_amo"],
        "order_request_id": "1",
        "order_ref_id": f"ref-{order_id}",
        "_new": True,
    }


def public(order: dict) -> dict:
    """Return ``order`` as Upstox sends it, without the fake's own keys."""
    return {name: value for name, value in order.items() if not name.startswith("_")}


def match(
    book: dict[str, dict], ltp: float, key: str, positions: dict, instruments: dict[str, str]
) -> None:
    """Fill or trigger every open order of ``key`` that the last traded price ``ltp`` crosses.

    Parameters
    ----------
    book : dict of str to dict
        The order book by order id.
    ltp : float
        Last traded price of ``key``.
    key : str
        Instrument key.
    positions, instruments
        As for :func:`execute`.
    """
    for order in list(book.values()):
        if order["instrument_token"] != key or order["status"] in FINAL:
            continue
        # a limit marketable on arrival fills at the LTP, a resting one at its limit
        arriving = order.pop("_new", False)
        buy = order["transaction_type"] == "BUY"
        kind = order["order_type"]
        if order["status"] == "trigger pending":
            trigger = order["trigger_price"]
            if not (ltp >= trigger if buy else ltp <= trigger):
                continue
            if kind == "SL-M":
                execute(order, order["pending_quantity"], ltp, positions, instruments)
                continue
            order["status"] = "open"
        if kind == "MARKET":
            execute(order, order["pending_quantity"], ltp, positions, instruments)
        elif kind in ("LIMIT", "SL") and (ltp <= order["price"] if buy else ltp >= order["price"]):
            price = ltp if arriving else order["price"]
            execute(order, order["pending_quantity"], price, positions, instruments)


def execute(
    order: dict, qty: int, price: float, positions: dict, instruments: dict[str, str]
) -> None:
    """Fill ``qty`` more of ``order`` at ``price`` and move its instrument's position.

    Parameters
    ----------
    order : dict
        The order-book entry.
    qty : int
        Units filled.
    price : float
        Their price.
    positions : dict
        Position by (instrument key, product), created on the first fill.
    instruments : dict of str to str
        Trading symbol by instrument key (a new position's name).
    """
    filled = order["filled_quantity"]
    order["average_price"] = (order["average_price"] * filled + price * qty) / (filled + qty)
    order["filled_quantity"] = filled + qty
    order["pending_quantity"] = order["quantity"] - order["filled_quantity"]
    if order["pending_quantity"] <= 0:
        order["status"] = "complete"
    order["exchange_timestamp"] = ist_now()
    signed = qty if order["transaction_type"] == "BUY" else -qty
    key = order["instrument_token"]
    symbol = instruments.get(key, key)
    position = positions.setdefault((key, order["product"]), new_position(key, order, symbol))
    held, entry = position["quantity"], position["average_price"]
    if held == 0 or (held > 0) == (signed > 0):
        entry = (entry * abs(held) + price * abs(signed)) / (abs(held) + abs(signed))
    elif abs(signed) > abs(held):
        entry = price  # flipped: the new position entered at this fill
    position["quantity"] = held + signed
    position["average_price"] = entry if position["quantity"] else 0.0
    side = "buy" if signed > 0 else "sell"
    position[f"day_{side}_quantity"] += qty
    position[f"day_{side}_value"] += qty * price
    position[f"{side}_value"] += qty * price
    position[f"day_{side}_price"] = position[f"day_{side}_value"] / position[f"day_{side}_quantity"]
    position[f"{side}_price"] = position[f"day_{side}_price"]
    position["last_price"] = price


def new_position(key: str, order: dict, symbol: str) -> dict:
    """Return an empty day position of ``key`` in ``order``'s product, named ``symbol``."""
    return {
        "exchange": key.split("_")[0],
        "multiplier": 1.0,
        "value": 0.0,
        "pnl": 0.0,
        "product": order["product"],
        "instrument_token": key,
        "average_price": 0.0,
        "buy_value": 0.0,
        "overnight_quantity": 0,
        "day_buy_value": 0.0,
        "day_buy_price": 0.0,
        "overnight_buy_amount": 0.0,
        "overnight_buy_quantity": 0,
        "day_buy_quantity": 0,
        "day_sell_value": 0.0,
        "day_sell_price": 0.0,
        "overnight_sell_amount": 0.0,
        "overnight_sell_quantity": 0,
        "day_sell_quantity": 0,
        "quantity": 0,
        "last_price": 0.0,
        "unrealised": 0.0,
        "realised": 0.0,
        "sell_value": 0.0,
        "tradingsymbol": symbol,
        "trading_symbol": symbol,
        "close_price": 0.0,
        "buy_price": 0.0,
        "sell_price": 0.0,
    }
