"""Who may do what through the HTTP API and the WebSocket.

A request presents one credential, as ``Authorization: Bearer <credential>`` or, where a
browser cannot set headers (the join link, the WebSocket), as ``?t=<credential>``:

==================  ========================================================================
admin key           ``VOXRELAY_ADMIN_KEY``: everything, in every tenant; mints tenant tokens
tenant token        (``POST /v1/tokens``): create sessions in its tenant; list, read, join
                    and end that tenant's sessions and history
session token       (returned by ``POST /v1/sessions``, in the join link): join, read, leave
                    and end its one session, while signaling holds it active
==================  ========================================================================

A session of another tenant is answered as if it did not exist (404), so a token cannot
probe for other tenants' session ids. Ending a session revokes its tokens: a session token
opens only a session signaling holds and that is still active, and is answered 404
``session_not_found`` or 409 ``session_ended`` after (a recorded session stays readable
with the tenant's or the admin's credential).

Dev mode: with no admin key and signaling listening on loopback only, a request without a
credential acts as the admin (the household default: nothing reaches the API from
elsewhere). Listening on any other address requires an admin key (``config.py``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from .conductor import ApiError, Conductor
from .config import SignalingConfig
from .sessions import Session
from .tokens import TokenError, TokenSigner

Role = Literal["admin", "tenant", "session"]


@dataclass(frozen=True)
class Access:
    role: Role
    tenant: str = ""
    "The tenant a tenant or session token belongs to ('' for the admin: any)."
    session_id: str = ""
    "The one session a session token opens."

    @property
    def tenant_filter(self) -> str:
        """What the recorder's reads are limited to ('' = every tenant)."""
        return "" if self.role == "admin" else self.tenant


ADMIN = Access("admin")


def credential(request: web.Request) -> str | None:
    """The credential a request presents (header first, then ``?t=``)."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.query.get("t")


class Authorizer:
    def __init__(self, config: SignalingConfig, conductor: Conductor,
                 signer: TokenSigner) -> None:
        self.config = config
        self.conductor = conductor
        self.signer = signer

    def access(self, request: web.Request) -> Access:
        """What the request's credential opens (401 if none or not valid)."""
        presented = credential(request)
        if not presented:
            if self.config.dev_mode:
                return ADMIN
            raise ApiError(401, "unauthorized", "a credential is required "
                           "(Authorization: Bearer <admin key or token>)")
        admin_key = self.config.admin_key.reveal()
        if admin_key and secrets.compare_digest(presented.encode(), admin_key.encode()):
            return ADMIN
        try:
            claims = self.signer.verify(presented)
        except TokenError as e:
            raise ApiError(401, e.code, str(e)) from e
        if claims.scope == "tenant":
            return Access("tenant", tenant=claims.tenant)
        return Access("session", tenant=claims.tenant, session_id=claims.sub)

    def admin(self, request: web.Request) -> Access:
        access = self.access(request)
        if access.role != "admin":
            raise ApiError(403, "forbidden", "this needs the admin key")
        return access

    def tenant_wide(self, request: web.Request) -> Access:
        """The admin or a tenant token (listings, history, new sessions)."""
        access = self.access(request)
        if access.role == "session":
            raise ApiError(403, "forbidden", "a session token opens only its own session")
        return access

    def session(self, request: web.Request) -> tuple[Session, Access]:
        """The held session of the request's ``{sid}``, if the credential opens it."""
        return self.session_named(request, request.match_info["sid"])

    def session_named(self, request: web.Request, sid: str) -> tuple[Session, Access]:
        """The held session ``sid``, if the request's credential opens it."""
        access = self.access(request)
        self._check_session_token(access, sid)
        session = self.conductor.get(sid)  # 404 session_not_found
        if access.role == "tenant" and session.tenant_id != access.tenant:
            raise ApiError(404, "session_not_found", f"no session {sid!r}")
        return session, access

    async def readable(self, request: web.Request) -> Access:
        """Check the credential may read the request's ``{sid}``, held or long ended."""
        access = self.access(request)
        sid = request.match_info["sid"]
        self._check_session_token(access, sid)
        if access.role == "tenant":
            held = self.conductor.sessions.get(sid)
            owner = held.tenant_id if held is not None else await self.conductor.owner(sid)
            if owner != access.tenant:
                raise ApiError(404, "session_not_found", f"no session {sid!r}")
        return access

    def _check_session_token(self, access: Access, sid: str) -> None:
        if access.role != "session":
            return
        if access.session_id != sid:
            raise ApiError(401, "unauthorized", "this token is for another session")
        held = self.conductor.sessions.get(sid)
        if held is None:
            raise ApiError(404, "session_not_found", f"no session {sid!r} (a session's links "
                           "stop working when it ends)")
        if held.state != "active":
            raise ApiError(409, "session_ended", "the session has ended, and its links with it")
