"""The baseline bridge's HTTP API: the part of voxrelay's that a load generator uses.

- ``POST /v1/sessions`` ``{name?, instructions?, voice?}`` → 201 ``{session_id, token,
  join_url}``;
- ``POST /v1/sessions/{sid}/clients`` ``{sdp, type: "offer", name?}`` → 201 ``{client_id,
  sdp, type: "answer"}``, once the session's Realtime call is usable;
- ``DELETE /v1/sessions/{sid}/clients/{cid}``, ``DELETE /v1/sessions/{sid}`` → 204;
- ``GET /healthz`` → 200 ``{pid}`` (the process to measure).

Requests about a session carry its token as ``Authorization: Bearer``. Errors are
``{"error": {"code", "message"}}``, as voxrelay's are.
"""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from .bridge import Bridge, InvalidOffer, Session
from .realtime import Persona, RealtimeUnavailable

BRIDGE = web.AppKey("bridge", Bridge)
MAX_BODY_BYTES = 256 * 1024
TEXT_FIELDS = ("name", "instructions", "voice")


class RequestError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def make_app(bridge: Bridge) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_errors])
    app[BRIDGE] = bridge
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/sessions", create_session)
    app.router.add_post("/v1/sessions/{sid}/clients", join)
    app.router.add_delete("/v1/sessions/{sid}/clients/{cid}", leave)
    app.router.add_delete("/v1/sessions/{sid}", end_session)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as e:
        return web.json_response({"error": {"code": e.code, "message": str(e)}},
                                 status=e.status)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"pid": os.getpid()})


async def create_session(request: web.Request) -> web.Response:
    body = await _body(request, required=False)
    fields = {key: _text(body, key) for key in TEXT_FIELDS}
    session = request.app[BRIDGE].create(
        Persona(instructions=fields["instructions"], voice=fields["voice"]), fields["name"])
    join_url = f"{request.url.origin()}/join/{session.session_id}?token={session.token}"
    return web.json_response({"session_id": session.session_id, "token": session.token,
                              "join_url": join_url}, status=201)


async def join(request: web.Request) -> web.Response:
    session = _session(request)
    body = await _body(request, required=True)
    if body.get("type") != "offer" or not isinstance(body.get("sdp"), str):
        raise RequestError(400, "invalid_request", "expected {sdp, type: 'offer'}")
    try:
        client, answer = await session.join(body["sdp"], _text(body, "name"))
    except InvalidOffer as e:
        raise RequestError(400, "invalid_offer", str(e)) from e
    except RealtimeUnavailable as e:
        raise RequestError(502, "realtime_unavailable", str(e)) from e
    return web.json_response({"client_id": client.client_id, "sdp": answer, "type": "answer"},
                             status=201)


async def leave(request: web.Request) -> web.Response:
    session = _session(request)
    if not await session.remove(request.match_info["cid"]):
        raise RequestError(404, "client_not_found", "no such client in this session")
    return web.Response(status=204)


async def end_session(request: web.Request) -> web.Response:
    session = _session(request)
    await request.app[BRIDGE].end(session.session_id)
    return web.Response(status=204)


def _session(request: web.Request) -> Session:
    """The session the path names, if the request carries its token."""
    session = request.app[BRIDGE].sessions.get(request.match_info["sid"])
    if session is None:
        raise RequestError(404, "session_not_found", "no such session")
    if request.headers.get("Authorization") != f"Bearer {session.token}":
        raise RequestError(401, "unauthorized", "this session's token is required")
    return session


async def _body(request: web.Request, *, required: bool) -> dict[str, Any]:
    if not required and not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as e:
        raise RequestError(400, "invalid_json", "the body is not JSON") from e
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_json", "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise RequestError(400, "invalid_request", f"'{key}' must be a string")
    return value
