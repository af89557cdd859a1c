"""API keys and ephemeral client secrets (``ek_…``), checked like the real service."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from services.runtime import Secret

from . import ids

MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
    "(with blank username) if you're accessing the API from your browser and are prompted for "
    "a username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
EPHEMERAL_TTL_DEFAULT_S = 600
EPHEMERAL_TTL_RANGE_S = (10, 7200)


class AuthError(Exception):
    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Grant:
    """Who is calling: a standard key, or an ephemeral key bound to a session config."""

    ephemeral: bool
    session: dict[str, Any] | None = None


@dataclass
class _Ephemeral:
    expires_at: float
    session: dict[str, Any]


def mask(key: str) -> str:
    """A key as error messages show it: enough to recognise, not to use."""
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


class KeyStore:
    def __init__(self, api_key: Secret | None, clock: Any = time.time) -> None:
        self._api_key = api_key
        self._ephemeral: dict[str, _Ephemeral] = {}
        self._clock = clock

    def mint(self, session: dict[str, Any], ttl_s: int) -> tuple[str, int]:
        self._expire()
        value = ids.ephemeral_key()
        expires_at = int(self._clock() + ttl_s)
        self._ephemeral[value] = _Ephemeral(expires_at, session)
        return value, expires_at

    def check(self, authorization: str | None) -> Grant:
        """The grant for an ``Authorization`` header value, or AuthError (HTTP 401)."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError(MISSING_KEY_MESSAGE, None)
        return self.check_key(authorization[7:].strip())

    def check_key(self, key: str) -> Grant:
        if key.startswith("ek_"):
            found = self._ephemeral.get(key)
            if found is not None and found.expires_at > self._clock():
                return Grant(ephemeral=True, session=found.session)
        elif self._api_key is not None:
            if key == self._api_key.reveal():
                return Grant(ephemeral=False)
        elif key.startswith("sk-") and len(key) > 3:
            return Grant(ephemeral=False)
        raise AuthError(
            f"Incorrect API key provided: {mask(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_api_key",
        )

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._ephemeral.items() if e.expires_at <= now]:
            del self._ephemeral[key]
