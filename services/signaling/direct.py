"""Direct mode's ephemeral keys: which session each key signaling handed out opens.

In direct mode a browser talks to the Realtime API itself. It asks signaling for an
ephemeral key (``POST /v1/realtime/client_secrets``, with its session token; the
session's link mints it with the standard key, which never leaves the link) and presents
that key, as it would to the API, with its SDP offer (``POST /v1/realtime/calls``).
Signaling remembers each key it handed out, hashed, until it expires, so the offer can
be placed in its session; a key opens one call (a browser that calls again asks for a
new key). Keys live in signaling's memory: after a restart, browsers ask again.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_KEYS = 10_000
"Keys remembered at most (the oldest are forgotten first)."


@dataclass(frozen=True)
class IssuedKey:
    session_id: str
    name: str
    "The display name the browser gave when it asked for the key."
    expires_at: float


class IssuedKeys:
    def __init__(self, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[bytes, IssuedKey] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def issue(self, value: str, key: IssuedKey) -> None:
        self._forget_expired()
        self._keys[_digest(value)] = key
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def redeem(self, value: str) -> IssuedKey | None:
        """The session ``value`` was issued for, once; None if unknown, used or expired."""
        key = self._keys.pop(_digest(value), None)
        if key is None or key.expires_at <= self._clock():
            return None
        return key

    def _forget_expired(self) -> None:
        now = self._clock()
        for digest in [d for d, k in self._keys.items() if k.expires_at <= now]:
            del self._keys[digest]


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()
