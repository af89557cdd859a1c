"""Signed access tokens: compact JWTs (RFC 7519), HS256 only.

A token names its scope and what it opens:

- ``scope: "session"``: one session (``sub``) of one tenant — the join link's token.
- ``scope: "tenant"``: every session of one tenant — for a tenant's backend.

Each carries ``iat``, ``exp`` and a random ``jti``. Verification accepts only the
header this module writes (``alg: HS256``; never ``none`` or another algorithm), checks
the signature in constant time before it reads the claims, decodes the claims strictly
(unknown scopes, wrong types and missing fields are refused) and refuses expired tokens.
Revocation is not here: a session token opens only a session signaling holds active, so
ending the session revokes it (``auth.py``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from typing import Literal

import msgspec

MAX_TOKEN_CHARS = 2048
"Longer presented tokens are refused unread."
HEADER = {"alg": "HS256", "typ": "JWT"}
Scope = Literal["session", "tenant"]


class Claims(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    scope: Scope
    tenant: str
    sub: str
    "The session id for a session token; the tenant for a tenant token."
    iat: int
    exp: int
    jti: str


class TokenError(ValueError):
    """A presented token that opens nothing; ``code`` is the API's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_claims_decoder = msgspec.json.Decoder(Claims)
_header_decoder = msgspec.json.Decoder(dict[str, str])
_encode = msgspec.json.Encoder().encode


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise TokenError("invalid_token", "the token is not base64url") from e


_HEADER_B64 = _b64(_encode(HEADER))


class TokenSigner:
    """Mints and verifies tokens with one secret (``VOXRELAY_TOKEN_SECRET``)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("a token secret needs at least 32 bytes")
        self._secret = secret

    def mint(self, scope: Scope, tenant: str, sub: str, ttl_s: float,
             now: float | None = None) -> tuple[str, Claims]:
        issued = int(time.time() if now is None else now)
        claims = Claims(scope=scope, tenant=tenant, sub=sub, iat=issued,
                        exp=issued + max(1, int(ttl_s)), jti=secrets.token_urlsafe(12))
        signing_input = f"{_HEADER_B64}.{_b64(_encode(claims))}"
        return f"{signing_input}.{_b64(self._sign(signing_input))}", claims

    def verify(self, token: str, now: float | None = None) -> Claims:
        """The token's claims, or :class:`TokenError` (``invalid_token``/``token_expired``)."""
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise TokenError("invalid_token", "the token is malformed")
        header_b64, claims_b64, signature_b64 = token.split(".")
        signing_input = f"{header_b64}.{claims_b64}"
        if not hmac.compare_digest(_unb64(signature_b64), self._sign(signing_input)):
            raise TokenError("invalid_token", "the token's signature does not match")
        try:
            header = _header_decoder.decode(_unb64(header_b64))
            claims = _claims_decoder.decode(_unb64(claims_b64))
        except msgspec.DecodeError as e:
            raise TokenError("invalid_token", f"the token's contents are not valid: {e}") from e
        if header.get("alg") != "HS256":
            raise TokenError("invalid_token", "the token is not HS256")
        if claims.exp <= (time.time() if now is None else now):
            raise TokenError("token_expired", "the token has expired; ask for a fresh link")
        return claims

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self._secret, signing_input.encode("ascii", "replace"),
                        hashlib.sha256).digest()
