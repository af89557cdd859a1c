"""The HTTP API (JSON; errors as ``{"error": {"code", "message"}}``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proto import events

from .conductor import ApiError, Conductor, JoinRequest
from .history import add_history_routes
from .metrics import REQUESTS, watch
from .placement import NoInstance
from .recordings import add_recording_routes
from .sessions import token_matches
from .web_routes import add_web_routes

logger = logging.getLogger(__name__)

CONDUCTOR = web.AppKey("conductor", Conductor)
VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer", "verse")
MAX_TEXT = 16_384
MAX_NAME = 64
MAX_SDP = 64 * 1024
EVENTS_LIMIT = 10_000


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
    try:
        response = await handler(request)
    except ApiError as e:
        response = error_response(e.status, e.code, e.message)
    except NoInstance as e:
        response = error_response(503, "unavailable", f"{e}; the stack is starting or degraded")
    except web.HTTPRequestEntityTooLarge:
        response = error_response(413, "body_too_large", "request body too large")
    except web.HTTPException as e:
        response = error_response(e.status, e.reason.lower().replace(" ", "_"), e.reason)
    REQUESTS.labels(route, str(response.status)).inc()
    return response


def create_api(conductor: Conductor, max_body: int) -> web.Application:
    app = web.Application(client_max_size=max_body, middlewares=[errors_middleware])
    app[CONDUCTOR] = conductor
    watch(conductor)
    app.router.add_post("/v1/sessions", create_session)
    app.router.add_get("/v1/sessions", list_sessions)
    app.router.add_get("/v1/sessions/{sid}", get_session)
    app.router.add_delete("/v1/sessions/{sid}", end_session)
    app.router.add_post("/v1/sessions/{sid}/clients", join)
    app.router.add_delete("/v1/sessions/{sid}/clients/{cid}", leave)
    app.router.add_get("/v1/sessions/{sid}/transcript", transcript)
    app.router.add_get("/v1/sessions/{sid}/events", event_log)
    add_history_routes(app, conductor)
    add_recording_routes(app, conductor.config.recordings_dir)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    add_web_routes(app)
    return app


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "request body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, default: str, limit: int) -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"'{key}' must be a string")
    if len(value) > limit:
        raise ApiError(400, "invalid_field", f"'{key}' is longer than {limit} characters")
    return value


def _choice(body: dict[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = body.get(key, default)
    if value not in choices:
        raise ApiError(400, "invalid_field", f"'{key}' must be one of {', '.join(choices)}")
    return value


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("t")


def _authorized_session(request: web.Request):  # type: ignore[no-untyped-def]
    session = request.app[CONDUCTOR].get(request.match_info["sid"])
    if not token_matches(session, _bearer(request)):
        raise ApiError(401, "unauthorized", "a valid session token is required "
                       "(Authorization: Bearer <token>)")
    return session


async def create_session(request: web.Request) -> web.Response:
    body = await _body(request)
    record = body.get("record", False)
    if not isinstance(record, bool):
        raise ApiError(400, "invalid_field", "'record' must be a boolean")
    conductor = request.app[CONDUCTOR]
    session = await conductor.create_session(
        name=_text(body, "name", "", MAX_NAME),
        instructions=_text(body, "instructions", "", MAX_TEXT),
        voice=_choice(body, "voice", "alloy", VOICES),
        record=record,
    )
    join_url = f"{conductor.config.base_url}/s/{session.session_id}?t={session.token}"
    return web.json_response({"session_id": session.session_id, "token": session.token,
                              "join_url": join_url}, status=201)


async def list_sessions(request: web.Request) -> web.Response:
    sessions = request.app[CONDUCTOR].sessions.values()
    return web.json_response({"sessions": [s.to_json() for s in sessions]})


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONDUCTOR].get(request.match_info["sid"]).to_json())


async def end_session(request: web.Request) -> web.Response:
    session = _authorized_session(request)
    await request.app[CONDUCTOR].end(session, "ended by request")
    return web.Response(status=204)


async def join(request: web.Request) -> web.Response:
    session = _authorized_session(request)
    body = await _body(request)
    if body.get("type", "offer") != "offer":
        raise ApiError(400, "invalid_field", "'type' must be 'offer'")
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise ApiError(400, "invalid_sdp", "'sdp' must be an SDP offer (starting with v=0)")
    if len(sdp) > MAX_SDP:
        raise ApiError(413, "sdp_too_large", f"'sdp' is larger than {MAX_SDP} bytes")
    client_id = _text(body, "client_id", "", 32)
    if client_id and client_id not in session.clients:
        raise ApiError(404, "client_not_found", f"no client {client_id!r} in this session to "
                       "reconnect as")
    join_request = JoinRequest(
        sdp=sdp,
        name=_text(body, "name", "", MAX_NAME),
        role=_choice(body, "role", "speaker", ("speaker", "listener")),
        transport=_choice(body, "transport", "track", ("track", "datachannel")),
        client_id=client_id,
    )
    client, answer = await request.app[CONDUCTOR].join(session, join_request)
    return web.json_response({"client_id": client.client_id, "sdp": answer, "type": "answer"},
                             status=201)


async def leave(request: web.Request) -> web.Response:
    session = _authorized_session(request)
    await request.app[CONDUCTOR].leave(session, request.match_info["cid"])
    return web.Response(status=204)


async def transcript(request: web.Request) -> web.Response:
    sid = request.match_info["sid"]
    entries = await request.app[CONDUCTOR].transcript(sid)
    return web.json_response({"session_id": sid, "entries": [
        {"speaker": e.speaker, "text": e.text, "started_at": e.started_at, "ended_at": e.ended_at}
        for e in entries]})


async def event_log(request: web.Request) -> web.StreamResponse:
    sid = request.match_info["sid"]
    try:
        after = int(request.query.get("after", "0"))
        limit = min(int(request.query.get("limit", str(EVENTS_LIMIT))), EVENTS_LIMIT)
    except ValueError as e:
        raise ApiError(400, "invalid_query", "'after' and 'limit' must be integers") from e
    logged, cursor = await request.app[CONDUCTOR].event_log(sid, after, limit)
    text = "".join(events.to_json(e) + "\n" for e in logged)
    # The next page: GET …/events?after=<Voxrelay-Next-After>.
    return web.Response(text=text, content_type="application/x-ndjson",
                        headers={"Voxrelay-Next-After": str(cursor)})


async def healthz(request: web.Request) -> web.Response:
    placement = request.app[CONDUCTOR].placement
    services = placement.health()
    ok = all(services.values())
    return web.json_response({"status": "ok" if ok else "degraded", "services": services},
                             status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
