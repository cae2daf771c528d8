"""What the ProjectX adapter looks up at start: the account traded and each instrument's contract.

Choices: a configured ``tick_size`` that differs from the contract's ``tickSize`` stops the
start with a ConfigError (orders would be priced off the gateway's grid); when a
``contract_search`` finds several active contracts, the one whose name without its expiry
code equals the search text is taken, else the first.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from engine.config_errors import ConfigError
from engine.config_models import EngineConfig

#: a contract name's expiry code (month letter and year), as in ``NQH5`` or ``MNQZ24``
EXPIRY_CODE = re.compile(r"[FGHJKMNQUVXZ]\d{1,2}$")

#: ``post(path, body, check=True)``: a gateway call returning its JSON object
Post = Callable[..., Awaitable[dict]]


async def resolve_account(post: Post, cfg: EngineConfig) -> int:
    """Return the id of the account to trade: ``broker.account_id``, else the only active one.

    Parameters
    ----------
    post : Post
        The session's gateway call.
    cfg : EngineConfig
        ``broker.account_id`` is read.

    Raises
    ------
    ConfigError
        The configured account is not active, or there is none or several to choose from
        (the message lists them).
    """
    data = await post("/Account/search", {"onlyActiveAccounts": True})
    accounts = [a for a in data.get("accounts") or [] if isinstance(a, dict)]
    listing = ", ".join(f"{a.get('id')} ({a.get('name')})" for a in accounts) or "none"
    wanted = cfg.broker.account_id
    if wanted is not None:
        if any(a.get("id") == wanted for a in accounts):
            return wanted
        problem = f"{wanted} is not an active ProjectX account; active: {listing}"
    elif len(accounts) == 1:
        return int(accounts[0]["id"])
    elif not accounts:
        problem = "no active ProjectX account"
    else:
        problem = f"several active ProjectX accounts, set one of: {listing}"
    raise ConfigError(f"broker.account_id: {problem}", path="broker.account_id")


async def resolve_contract(post: Post, cfg: EngineConfig, i: int) -> dict:
    """Return the gateway's contract record of ``cfg.instruments[i]``, its tick size checked.

    Parameters
    ----------
    post : Post
        The session's gateway call.
    cfg : EngineConfig
        The instrument's ``projectx`` ids and ``tick_size``, ``broker.live_contracts``.
    i : int
        The instrument's index.

    Returns
    -------
    dict
        The record (``id, name, tickSize, tickValue, ...``).

    Raises
    ------
    ConfigError
        No ``projectx`` ids, a contract that does not resolve, or a ``tick_size`` that differs
        from the contract's (``path`` names the field).
    """
    instrument = cfg.instruments[i]
    contract = await _lookup(post, cfg, i)
    tick = contract.get("tickSize")
    if isinstance(tick, int | float) and abs(tick - instrument.tick_size) > 1e-9 * tick:
        raise ConfigError(
            f"instruments[{i}].tick_size: {instrument.symbol} has tick_size"
            f" {instrument.tick_size} but ProjectX contract {contract.get('id')} has"
            f" tickSize {tick}",
            path=f"instruments[{i}].tick_size",
        )
    return contract


async def _lookup(post: Post, cfg: EngineConfig, i: int) -> dict:
    instrument = cfg.instruments[i]
    ids, path = instrument.projectx, f"instruments[{i}].projectx"
    if ids is None:
        raise ConfigError(f"{path}: required when broker.name is 'projectx'", path=path)
    if ids.contract_id is not None:
        data = await post("/Contract/searchById", {"contractId": ids.contract_id}, check=False)
        contract = data.get("contract") if data.get("success") else None
        if not isinstance(contract, dict):
            reason = data.get("errorMessage") or "no such contract"
            raise ConfigError(
                f"{path}: contract {ids.contract_id} of {instrument.symbol} did not"
                f" resolve: {reason}",
                path=path,
            )
        return contract
    search = ids.contract_search or ""
    body = {"live": cfg.broker.live_contracts, "searchText": search}
    found = [c for c in (await post("/Contract/search", body)).get("contracts") or []]
    # "NQ" also finds "MNQH5": contracts named the search text plus an expiry come first
    exact = [c for c in found if EXPIRY_CODE.sub("", str(c.get("name"))) == search.upper()]
    active = [c for c in exact or found if c.get("activeContract")]
    if not active:
        names = ", ".join(str(c.get("id")) for c in found if isinstance(c, dict)) or "none"
        raise ConfigError(
            f"{path}: no active contract for {instrument.symbol} found by"
            f" contract_search {search!r} (found: {names})",
            path=path,
        )
    return active[0]
