"""The fake ProjectX gateway's state and REST answers, without the servers (see ``projectx``).

It reproduces the documented shapes (``../shared/BROKERS.md``, project-x-py's source): every
call answers ``{..., success, errorCode, errorMessage}``; ``Auth/loginKey`` issues Bearer JWTs,
renewed by ``Auth/validate`` -> ``newToken``.

Orders: Market orders fill at once at the contract's last price (or at the first one pushed);
Limit, Stop and StopLimit orders fill at the print that reaches them. Every fill is pushed on
the user hub as ``GatewayUserTrade``, ``GatewayUserOrder`` and ``GatewayUserPosition``
(``{"action", "data"}`` records) and nets into the account's positions. ``customTag`` is
unique per account: a second order with a used tag is refused.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from tests.fakes.projectx_hubs import FakeHubs

#: contracts served unless others are given: an active and an expired E-mini, an active micro
DEFAULT_CONTRACTS: tuple[dict, ...] = (
    {"id": "CON.F.US.ENQ.Z24", "name": "NQZ4", "description": "E-mini NASDAQ-100: December 2024",
     "tickSize": 0.25, "tickValue": 5.0, "activeContract": False, "symbolId": "F.US.ENQ"},
    {"id": "CON.F.US.ENQ.H25", "name": "NQH5", "description": "E-mini NASDAQ-100: March 2025",
     "tickSize": 0.25, "tickValue": 5.0, "activeContract": True, "symbolId": "F.US.ENQ"},
    {"id": "CON.F.US.MNQ.H25", "name": "MNQH5",
     "description": "Micro E-mini NASDAQ-100: March 2025",
     "tickSize": 0.25, "tickValue": 0.5, "activeContract": True, "symbolId": "F.US.MNQ"},
)  # fmt: skip
#: order types the fake matches: Limit, Market, StopLimit, Stop
SUPPORTED_TYPES = (1, 2, 3, 4)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _ok(**fields: object) -> dict:
    return {**fields, "success": True, "errorCode": 0, "errorMessage": None}


def _fail(code: int, message: str, **fields: object) -> dict:
    return {**fields, "success": False, "errorCode": code, "errorMessage": message}


class FakeGateway:
    """The gateway's accounts, contracts, tokens, order book and positions; its REST handlers.

    Call its methods only on the fake's loop (:class:`~tests.fakes.projectx.FakeProjectX`
    serves it and offers thread-safe controls).

    Parameters
    ----------
    contracts : sequence of dict, optional
        Contract records (``id, name, description, tickSize, tickValue, activeContract,
        symbolId``). Default :data:`DEFAULT_CONTRACTS`.
    accounts : sequence of dict, optional
        Active accounts. Default one account, ``account_id`` 7001.
    """

    def __init__(self, contracts=DEFAULT_CONTRACTS, accounts=None) -> None:
        self.user_name = "fake-user"
        self.api_key = "fake-api-key-0123"
        self.accounts = [dict(a) for a in accounts] if accounts else [
            {"id": 7001, "name": "50KTC-V2-7001", "balance": 50_000.0, "canTrade": True,
             "isVisible": True, "simulated": True},
        ]  # fmt: skip
        self.account_id = self.accounts[0]["id"]
        self.contracts = [dict(c) for c in contracts]
        #: every REST request received: {"path", "body", "headers"} (headers lower-cased)
        self.requests: list[dict] = []
        #: the Order/* requests among them
        self.orders: list[dict] = []
        #: gateway order records by id
        self.book: dict[int, dict] = {}
        self.trades: list[dict] = []
        #: the account's positions by contract id: gateway records plus a signed ``net``
        self.positions: dict[str, dict] = {}
        self.prices: dict[str, float] = {}
        self.logins = 0
        self.validations = 0
        self._tokens: set[str] = set()
        #: both hubs (they read the valid tokens at every upgrade)
        self.hubs = FakeHubs(self._tokens)
        #: per hub: invocations received ((target, arguments)), handshakes, pings received
        self.invocations = self.hubs.invocations
        self.handshakes = self.hubs.handshakes
        self.pings_received = self.hubs.pings_received
        self._ids = itertools.count(9_100_001)
        self._reject: str | None = None
        #: order type -> messages refusing the next placements of that type
        self._typed_rejects: dict[int, list[str]] = {}
        #: refuse Stop and StopLimit orders whose stop the last price has already reached
        self._refuse_crossed = False

    # -- REST ------------------------------------------------------------------------------------

    def _token(self) -> str:
        header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
        exp = int(datetime.now(UTC).timestamp()) + 86_400
        claims = _b64(orjson.dumps({"sub": self.user_name, "exp": exp, "jti": next(self._ids)}))
        token = f"{header}.{claims}.{_b64(b'fake-signature')}"
        self._tokens.add(token)
        return token

    def _login(self, body: dict) -> dict:
        if body.get("userName") != self.user_name or body.get("apiKey") != self.api_key:
            return _fail(3, "Invalid user name or API key.", token=None)
        self.logins += 1
        return _ok(token=self._token())

    def _validate(self, body: dict) -> dict:
        self.validations += 1
        return _ok(newToken=self._token())

    def _account_search(self, body: dict) -> dict:
        return _ok(accounts=self.accounts)

    def _contract_search(self, body: dict) -> dict:
        text = str(body.get("searchText", "")).upper()
        found = [
            c
            for c in self.contracts
            if text in c["name"].upper()
            or text in c["id"].upper()
            or text in c["description"].upper()
        ]
        return _ok(contracts=found)

    def _contract_by_id(self, body: dict) -> dict:
        found = next((c for c in self.contracts if c["id"] == body.get("contractId")), None)
        if found is None:
            return _fail(1, "Contract not found.", contract=None)
        return _ok(contract=found)

    def _place(self, body: dict) -> dict:
        if body.get("accountId") != self.account_id:
            return _fail(1, "Account not found.", orderId=None)
        if not any(c["id"] == body.get("contractId") for c in self.contracts):
            return _fail(8, "Contract not found.", orderId=None)
        if self._reject is not None:
            message, self._reject = self._reject, None
            return _fail(2, message, orderId=None)
        if self._typed_rejects.get(body.get("type")):
            return _fail(2, self._typed_rejects[body["type"]].pop(0), orderId=None)
        if self._refuse_crossed and self._crossed(body):
            return _fail(2, "Invalid stop price: the market is already through it.", orderId=None)
        kind, side, size = body.get("type"), body.get("side"), body.get("size")
        tag = body.get("customTag")
        problem = None
        if kind not in SUPPORTED_TYPES or side not in (0, 1):
            problem = f"Invalid order type {kind} or side {side}."
        elif not isinstance(size, int) or size <= 0:
            problem = f"Invalid order size {size}."
        elif kind in (1, 3) and body.get("limitPrice") is None:
            problem = "Limit price is required."
        elif kind in (3, 4) and body.get("stopPrice") is None:
            problem = "Stop price is required."
        elif tag and any(o["customTag"] == tag for o in self.book.values()):
            problem = f"An order with custom tag '{tag}' already exists for this account."
        if problem is not None:
            return _fail(2, problem, orderId=None)
        order = self._new_order(body["contractId"], kind, side, size, tag)
        order["limitPrice"] = body.get("limitPrice") if kind in (1, 3) else None
        order["stopPrice"] = body.get("stopPrice") if kind in (3, 4) else None
        self.hubs.user("GatewayUserOrder", order)
        self._match(order["contractId"])
        return _ok(orderId=order["id"])

    def _new_order(self, contract_id: str, kind: int, side: int, size: int, tag) -> dict:
        order = {
            "id": next(self._ids), "accountId": self.account_id, "contractId": contract_id,
            "symbolId": next(c["symbolId"] for c in self.contracts if c["id"] == contract_id),
            "creationTimestamp": _now(), "updateTimestamp": _now(), "status": 1, "type": kind,
            "side": side, "size": size, "limitPrice": None, "stopPrice": None, "fillVolume": 0,
            "filledPrice": None, "customTag": tag,
        }  # fmt: skip
        self.book[order["id"]] = order
        return order

    def _crossed(self, body: dict) -> bool:
        price, stop = self.prices.get(body.get("contractId")), body.get("stopPrice")
        if body.get("type") not in (3, 4) or price is None or stop is None:
            return False
        return stop <= price if body.get("side") == 0 else stop >= price

    def _open_order(self, body: dict) -> dict | None:
        order = self.book.get(body.get("orderId"))  # type: ignore[arg-type]
        if body.get("accountId") != self.account_id or order is None or order["status"] != 1:
            return None
        return order

    def _cancel(self, body: dict) -> dict:
        order = self._open_order(body)
        if order is None:
            return _fail(2, f"Order {body.get('orderId')} is not open.")
        order.update(status=3, updateTimestamp=_now())
        self.hubs.user("GatewayUserOrder", order)
        return _ok()

    def _modify(self, body: dict) -> dict:
        order = self._open_order(body)
        if order is None:
            return _fail(2, f"Order {body.get('orderId')} is not open.")
        for key in ("size", "limitPrice", "stopPrice"):
            if body.get(key) is not None:
                order[key] = body[key]
        order["updateTimestamp"] = _now()
        self.hubs.user("GatewayUserOrder", order)
        self._match(order["contractId"])
        return _ok()

    def _search_open(self, body: dict) -> dict:
        if body.get("accountId") != self.account_id:
            return _ok(orders=[])
        return _ok(orders=[o for o in self.book.values() if o["status"] in (1, 6)])

    def _in_window(self, body: dict, stamp: str) -> bool:
        start, end = body.get("startTimestamp"), body.get("endTimestamp")
        moment = datetime.fromisoformat(stamp)
        if start and moment < datetime.fromisoformat(start):
            return False
        return not (end and moment > datetime.fromisoformat(end))

    def _search(self, body: dict) -> dict:
        mine = body.get("accountId") == self.account_id
        orders = [
            o for o in self.book.values() if mine and self._in_window(body, o["creationTimestamp"])
        ]
        return _ok(orders=orders)

    def _trade_search(self, body: dict) -> dict:
        mine = body.get("accountId") == self.account_id
        trades = [t for t in self.trades if mine and self._in_window(body, t["creationTimestamp"])]
        return _ok(trades=trades)

    def _positions(self, body: dict) -> dict:
        if body.get("accountId") != self.account_id:
            return _ok(positions=[])
        public = [{k: v for k, v in p.items() if k != "net"} for p in self.positions.values()]
        return _ok(positions=[p for p in public if p["size"]])

    def _close_contract(self, body: dict) -> dict:
        position = self.positions.get(str(body.get("contractId")))
        if body.get("accountId") != self.account_id or not position or not position["net"]:
            return _fail(2, "No open position for this contract.")
        contract_id = position["contractId"]
        if contract_id not in self.prices:
            return _fail(2, "No market price for this contract.")
        side = 1 if position["net"] > 0 else 0
        order = self._new_order(contract_id, 2, side, abs(position["net"]), None)
        self.hubs.user("GatewayUserOrder", order)
        self._fill(order, order["size"], self.prices[contract_id])
        return _ok()

    _handlers: dict[str, Callable[[FakeGateway, dict], dict]] = {
        "Auth/loginKey": _login,
        "Auth/validate": _validate,
        "Account/search": _account_search,
        "Contract/search": _contract_search,
        "Contract/searchById": _contract_by_id,
        "Order/place": _place,
        "Order/cancel": _cancel,
        "Order/modify": _modify,
        "Order/searchOpen": _search_open,
        "Order/search": _search,
        "Trade/search": _trade_search,
        "Position/searchOpen": _positions,
        "Position/closeContract": _close_contract,
    }

    # -- matching --------------------------------------------------------------------------------

    def _push_trades(self, contract_id: str, prices: list[float], volume: int) -> None:
        symbol = next(c["symbolId"] for c in self.contracts if c["id"] == contract_id)
        for price in prices:
            self.prices[contract_id] = price
            trade = [{"symbolId": symbol, "price": price, "timestamp": _now(), "type": 0,
                      "volume": volume}]  # fmt: skip
            quote = {"symbol": symbol, "symbolName": contract_id, "lastPrice": price,
                     "bestBid": price - 0.25, "bestAsk": price, "volume": volume,
                     "lastUpdated": _now(), "timestamp": _now()}  # fmt: skip
            self.hubs.market(contract_id, trade, quote)
            self._match(contract_id)

    def _match(self, contract_id: str) -> None:
        price = self.prices.get(contract_id)
        if price is None:
            return
        for order in [o for o in self.book.values() if o["contractId"] == contract_id]:
            if order["status"] != 1:
                continue
            buy, kind = order["side"] == 0, order["type"]
            if kind in (3, 4) and not order.get("triggered"):
                stop = order["stopPrice"]
                order["triggered"] = price >= stop if buy else price <= stop
                if not order["triggered"]:
                    continue
            if kind in (1, 3):
                limit = order["limitPrice"]
                if (buy and price > limit) or (not buy and price < limit):
                    continue
            self._fill(order, order["size"] - order["fillVolume"], price)

    def _fill(self, order: dict, size: int, price: float) -> None:
        done = order["fillVolume"]
        order["filledPrice"] = ((order["filledPrice"] or 0.0) * done + price * size) / (done + size)
        order["fillVolume"] = done + size
        order["updateTimestamp"] = _now()
        if order["fillVolume"] >= order["size"]:
            order["status"] = 2
        signed = size if order["side"] == 0 else -size
        trade = {
            "id": next(self._ids), "accountId": self.account_id, "contractId": order["contractId"],
            "creationTimestamp": _now(), "price": price, "profitAndLoss": None, "fees": 1.4,
            "side": order["side"], "size": size, "voided": False, "orderId": order["id"],
        }  # fmt: skip
        self.trades.append(trade)
        position = self._net(order["contractId"], signed, price)
        self.hubs.user("GatewayUserTrade", trade)
        self.hubs.user("GatewayUserOrder", {k: v for k, v in order.items() if k != "triggered"})
        self.hubs.user("GatewayUserPosition", {k: v for k, v in position.items() if k != "net"})

    def _net(self, contract_id: str, signed: int, price: float) -> dict:
        position = self.positions.setdefault(contract_id, {
            "id": next(self._ids), "accountId": self.account_id, "contractId": contract_id,
            "creationTimestamp": _now(), "type": 0, "size": 0, "averagePrice": 0.0, "net": 0,
        })  # fmt: skip
        net = position["net"]
        if net == 0 or (net > 0) == (signed > 0):
            average = (position["averagePrice"] * abs(net) + price * abs(signed)) / abs(
                net + signed
            )
        elif abs(signed) > abs(net):
            average = price  # flipped: the new side opened at this fill
        else:
            average = position["averagePrice"] if net + signed else 0.0
        net += signed
        position.update(net=net, size=abs(net), averagePrice=average)
        position["type"] = 1 if net > 0 else 2 if net < 0 else 0
        return position

    def _expire(self, logout: bool) -> None:
        self._tokens.clear()
        if logout:
            self.hubs.logout()
