"""The ProjectX REST session: login, the Bearer JWT and its renewal, the gateway's errors.

Every REST call is a JSON ``POST`` under ``{broker.rest_url}/api`` with a Bearer JWT from
``Auth/loginKey``, through one :class:`~engine.brokers.live_base.RestClient` and one token
bucket of 200 requests per 60 s. The JWT lives 24 h: it is renewed with ``Auth/validate``
after :data:`TOKEN_RENEW_AFTER_S` and whenever a call gets HTTP 401 (``Auth/loginKey`` again
when validation fails). A 401 is answered before the gateway acts, so the call is then sent
once more when it is a read, a cancel or a modify (:data:`RETRY_AFTER_401`); the adapter looks
a refused ``Order/place`` up by its tag before sending it again. ``GatewayLogout`` on a hub
alerts ``token_expired`` and logs in again by itself; hubs still on the old token then
reconnect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

import httpx

from engine.broker_config import BrokerConfig
from engine.brokers.live_base import (
    Alert,
    BrokerError,
    Guard,
    RestClient,
    TokenBucket,
    TokenExpired,
    secret,
)
from engine.brokers.projectx.signalr import HubConnection
from engine.config_errors import ConfigError

#: seconds after a token was issued that it is renewed (it lives 24 h)
TOKEN_RENEW_AFTER_S = 23 * 3600.0
#: seconds before a failed scheduled renewal is tried again
RENEW_RETRY_S = 60.0
#: requests per window of the gateway's limit for everything but History/retrieveBars
RATE_REQUESTS, RATE_WINDOW_S = 200, 60.0
#: calls sent once more after a 401 and a renewed token (reads, cancel, modify)
RETRY_AFTER_401 = frozenset(
    {
        "/Account/search",
        "/Contract/search",
        "/Contract/searchById",
        "/Order/search",
        "/Order/searchOpen",
        "/Order/cancel",
        "/Order/modify",
        "/Position/searchOpen",
        "/Trade/search",
    }
)
#: calls that must never trigger a renewal themselves
AUTH_PATHS = frozenset({"/Auth/loginKey", "/Auth/validate"})


class LoginRefusedError(BrokerError):
    """``Auth/loginKey`` answered ``success: false``; the message is its ``errorMessage``."""


def error_of(response: httpx.Response) -> BrokerError | None:
    """Return the adapter's exception for an HTTP error answer of the gateway.

    Parameters
    ----------
    response : httpx.Response
        Any answer of the gateway.

    Returns
    -------
    BrokerError or None
        None below HTTP 400; :class:`~engine.brokers.live_base.TokenExpired` for 401; else a
        BrokerError with the body's ``errorMessage`` (or ``title``, or text) as the message.
    """
    if response.status_code < 400:
        return None
    message = response.reason_phrase or "error"
    try:
        body = response.json()
        if isinstance(body, dict):
            message = body.get("errorMessage") or body.get("title") or message
    except ValueError:
        if response.text.strip():
            message = response.text.strip()[:200]
    text = f"HTTP {response.status_code}: {message}"
    if response.status_code == 401:
        return TokenExpired(text, 401)
    return BrokerError(text, response.status_code)


def message_of(data: dict) -> str:
    """Return the ``errorMessage`` of a ``success: false`` answer, else its ``errorCode``."""
    return data.get("errorMessage") or f"errorCode {data.get('errorCode')}"


class GatewaySession:
    """One login to the gateway: the HTTP client, the JWT and its renewals.

    Parameters
    ----------
    broker : BrokerConfig
        URLs, timeout and the names of the credentials' variables.
    on_alert : Alert
        Told ``token_expired``, ``token_renewed`` and ``broker_error``.
    spawn : callable
        Runs a coroutine as a task that the owner cancels when it closes.
    hubs : callable
        Returns the hub connections, which reconnect after a renewal when still on the old
        token.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        on_alert: Alert,
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task],
        hubs: Callable[[], list[HubConnection]],
    ) -> None:
        self.broker = broker
        self.on_alert = on_alert
        self.spawn = spawn
        self.hubs = hubs
        #: the HTTP client, None before :meth:`start`
        self.rest: RestClient | None = None
        #: the current JWT
        self.token = ""
        #: counts the tokens set: a call refused under an older one needs no renewal
        self.gen = 0
        self._buckets = (TokenBucket(RATE_REQUESTS, RATE_WINDOW_S),)
        self._token_at = 0.0
        self._expired = False
        self._renew_lock = asyncio.Lock()
        self._renewing: asyncio.Task | None = None

    async def start(self) -> None:
        """Open the HTTP client and log in.

        Raises
        ------
        LoginRefusedError
            The gateway refused the credentials.
        ConfigError
            A credential's variable is not set.
        """
        broker = self.broker
        self.rest = RestClient(f"{broker.rest_url}/api", broker.timeout_s, error_of, self.on_alert)
        await self.login()

    async def close(self) -> None:
        """Close the HTTP client."""
        if self.rest is not None:
            await self.rest.close()

    def hub_url(self, hub: str) -> str:
        """Return the URL of hub ``hub`` (``market`` or ``user``) with the current token."""
        return f"{self.broker.stream_url}/{hub}?access_token={quote(self.token, safe='')}"

    async def post(
        self, path: str, body: dict | None, *, check: bool = True, guard: Guard | None = None
    ) -> dict:
        """POST ``body`` to ``path``; return the JSON object.

        A 401 renews the token; the call is then sent once more when it is in
        :data:`RETRY_AFTER_401`.

        Parameters
        ----------
        path : str
            Under ``/api``, e.g. ``"/Order/searchOpen"``.
        body : dict or None
            The JSON body.
        check : bool
            Raise on ``success: false``.
        guard : Guard, optional
            Asked before the request leaves; see :meth:`RestClient.request`.

        Raises
        ------
        BrokerError
            Not started, an HTTP error, an answer that is not a JSON object, or (when
            ``check``) ``success: false`` with the gateway's ``errorMessage``.
        """
        if self.rest is None:
            raise BrokerError("ProjectX adapter not started")
        gen = self.gen
        try:
            response = await self.rest.request("POST", path, self._buckets, json=body, guard=guard)
        except TokenExpired as error:
            if path in AUTH_PATHS:
                raise
            if not await self._renew_after(gen, error.message) or path not in RETRY_AFTER_401:
                raise
            try:
                response = await self.rest.request(
                    "POST", path, self._buckets, json=body, guard=guard
                )
            except TokenExpired as again:
                self._token_expired(again.message)
                raise
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise BrokerError(f"{path}: not a JSON object", response.status_code)
        if check and not data.get("success", False):
            code = str(data.get("errorCode", ""))
            raise BrokerError(f"{path}: {message_of(data)}", response.status_code, code)
        return data

    async def login(self) -> None:
        """Get a new token from ``Auth/loginKey``.

        Raises
        ------
        LoginRefusedError
            The gateway refused the credentials.
        ConfigError
            A credential's variable is not set.
        """
        broker = self.broker
        user = secret(broker.env_name("user_name"), "broker.user_name_env")
        key = secret(broker.env_name("api_key"), "broker.api_key_env")
        assert self.rest is not None
        self.rest.headers.pop("Authorization", None)
        data = await self.post("/Auth/loginKey", {"userName": user, "apiKey": key}, check=False)
        if not data.get("success") or not data.get("token"):
            raise LoginRefusedError(message_of(data), 200, str(data.get("errorCode", "")))
        self._set_token(data["token"])

    async def _validate(self) -> bool:
        if not self.token:
            return False
        try:
            data = await self.post("/Auth/validate", None, check=False)
        except BrokerError:
            return False
        if not data.get("success"):
            return False
        if data.get("newToken"):
            self._set_token(data["newToken"])
        return True

    def _set_token(self, token: str) -> None:
        assert self.rest is not None
        self.token = token
        self.gen += 1
        self._token_at = time.monotonic()
        self.rest.headers["Authorization"] = f"Bearer {token}"

    async def renew(self) -> bool:
        """Get a working token: ``Auth/validate``, else ``Auth/loginKey``; alert on success."""
        async with self._renew_lock:
            return await self._renew_locked()

    async def _renew_locked(self) -> bool:
        how = "Auth/validate"
        ok = await self._validate()
        if not ok:
            how = "Auth/loginKey"
            try:
                await self.login()
                ok = True
            except (BrokerError, ConfigError) as error:
                self.on_alert("broker_error", f"ProjectX login failed: {error}")
        if ok:
            self._expired = False
            self.on_alert("token_renewed", f"ProjectX session renewed with {how}")
            for hub in self.hubs():
                # a hub still on the old token reconnects with the new one
                if hub.connected_url is not None and hub.connected_url != hub.url():
                    hub.disconnect()
        return ok

    async def _renew_after(self, gen: int, message: str) -> bool:
        """Renew after token generation ``gen`` was refused (unless already renewed since)."""
        self._token_expired(message)
        async with self._renew_lock:
            if self.gen != gen:
                return True
            return await self._renew_locked()

    def _token_expired(self, message: str) -> None:
        if not self._expired:
            self._expired = True
            self.on_alert("token_expired", message)

    def renew_in_background(self, message: str) -> None:
        """Alert ``token_expired`` with ``message`` and renew in a task (one at a time)."""
        if self.rest is None:
            return  # not started: start() logs in
        if self._renewing is None or self._renewing.done():
            self._renewing = self.spawn(self._renew_after(self.gen, message))

    def on_logout(self, message: str) -> None:
        """Renew in the background after a hub's ``GatewayLogout`` carrying ``message``."""
        self.renew_in_background(f"GatewayLogout: {message}")

    async def keep_token(self) -> None:
        """Renew the token every :data:`TOKEN_RENEW_AFTER_S`, until cancelled."""
        while True:
            wait = self._token_at + TOKEN_RENEW_AFTER_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                renewed = await self.renew()
            except Exception as error:  # noqa: BLE001 - the renewals must outlive any failure
                self.on_alert("broker_error", f"ProjectX token renewal: {error!r}")
                renewed = False
            if not renewed:
                await asyncio.sleep(RENEW_RETRY_S)
