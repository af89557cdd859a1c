"""The HTTP API (JSON; errors as ``{"error": {"code", "message"}}``).

Who may call what is ``auth.py``; what a request may ask is ``limits.py``. Cross-origin
pages may call the API only from the origins in ``VOXRELAY_CORS_ORIGINS`` (none by
default: the web client is served from the API's own origin).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proto import events

from . import interview
from .auth import Authorizer, credential
from .conductor import ApiError, Conductor, JoinRequest
from .history import add_history_routes
from .limits import REJECTED, RateLimited, RatePerAddress, check_offer, refuse
from .metrics import REQUESTS, watch
from .placement import NoInstance
from .recordings import add_recording_routes
from .web_routes import add_web_routes

logger = logging.getLogger(__name__)

CONDUCTOR = web.AppKey("conductor", Conductor)
AUTH = web.AppKey("auth", Authorizer)
SESSION_RATE = web.AppKey("session_rate", RatePerAddress)
VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer", "verse")
MAX_TEXT = 16_384
MAX_NAME = 64
EVENTS_LIMIT = 10_000
CLIENT_SECRET_TTL_S = 600
"How long an ephemeral key lasts unless the request says (the Realtime API's default)."
INTERVIEW_PAGES = 20
"Pages of recorded events an interview's per-question transcript reads at most."
TENANT = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
DEFAULT_TENANT = "default"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
    try:
        response = await handler(request)
    except RateLimited as e:
        response = error_response(e.status, e.code, e.message)
        response.headers["Retry-After"] = str(e.retry_after_s)
    except ApiError as e:
        response = error_response(e.status, e.code, e.message)
    except NoInstance as e:
        response = error_response(503, "unavailable", f"{e}; the stack is starting or degraded")
    except web.HTTPRequestEntityTooLarge:
        REJECTED.labels("body").inc()
        response = error_response(413, "body_too_large", "request body too large")
    except web.HTTPException as e:
        response = error_response(e.status, e.reason.lower().replace(" ", "_"), e.reason)
    except Exception:
        logger.exception("%s %s failed", request.method, route)
        response = error_response(500, "internal_error", "the server failed on this request; "
                                  "it is logged")
    REQUESTS.labels(route, str(response.status)).inc()
    return response


def cors_middleware(origins: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """Let pages of ``origins`` call the API (with a bearer credential, no cookies)."""

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        allowed = origin in origins
        if request.method == "OPTIONS" and allowed:
            response: web.StreamResponse = web.Response(status=204, headers={
                "Access-Control-Allow-Methods": "GET, POST, DELETE",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "600"})
        else:
            response = await handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return cors


def create_api(conductor: Conductor, authorizer: Authorizer) -> web.Application:
    config = conductor.config
    middlewares = [errors_middleware]
    if config.cors_origins:
        middlewares.insert(0, cors_middleware(config.cors_origins))
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=middlewares)
    app[CONDUCTOR] = conductor
    app[AUTH] = authorizer
    app[SESSION_RATE] = RatePerAddress(config.session_rate_per_min, config.session_rate_burst)
    watch(conductor)
    app.router.add_post("/v1/tokens", create_tenant_token)
    app.router.add_post("/v1/sessions", create_session)
    app.router.add_get("/v1/sessions", list_sessions)
    app.router.add_get("/v1/sessions/{sid}", get_session)
    app.router.add_delete("/v1/sessions/{sid}", end_session)
    app.router.add_post("/v1/sessions/{sid}/tokens", create_session_token)
    app.router.add_post("/v1/sessions/{sid}/clients", join)
    app.router.add_delete("/v1/sessions/{sid}/clients/{cid}", leave)
    app.router.add_get("/v1/sessions/{sid}/transcript", transcript)
    app.router.add_get("/v1/sessions/{sid}/events", event_log)
    app.router.add_get("/v1/sessions/{sid}/interview", interview_transcript)
    app.router.add_post("/v1/realtime/client_secrets", client_secret)
    app.router.add_post("/v1/realtime/calls", realtime_call)
    add_history_routes(app, conductor, authorizer)
    add_recording_routes(app, config.recordings_dir, authorizer)
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


def _tenant(body: dict[str, Any], default: str) -> str:
    tenant = body.get("tenant", default)
    if not isinstance(tenant, str) or not TENANT.fullmatch(tenant):
        raise ApiError(400, "invalid_field", "'tenant' must be 1-63 characters of a-z, 0-9, "
                       "'.', '_' and '-', starting with a letter or digit")
    return tenant


def _ttl(body: dict[str, Any], default: float) -> float:
    ttl = body.get("ttl_s", default)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 10 <= ttl <= 366 * 86400:
        raise ApiError(400, "invalid_field", "'ttl_s' must be a number of seconds in "
                       "10..31622400")
    return float(ttl)


async def create_tenant_token(request: web.Request) -> web.Response:
    """The admin mints a token for a tenant's backend: ``{tenant, ttl_s?}``."""
    request.app[AUTH].admin(request)
    body = await _body(request)
    conductor = request.app[CONDUCTOR]
    tenant = _tenant(body, "")
    token, claims = conductor.signer.mint("tenant", tenant, tenant,
                                          _ttl(body, conductor.config.token_ttl_s))
    return web.json_response({"token": token, "tenant": tenant, "expires_at": claims.exp},
                             status=201)


async def create_session(request: web.Request) -> web.Response:
    access = request.app[AUTH].tenant_wide(request)
    body = await _body(request)
    record = body.get("record", False)
    if not isinstance(record, bool):
        raise ApiError(400, "invalid_field", "'record' must be a boolean")
    tenant = _tenant(body, access.tenant or DEFAULT_TENANT)
    if access.role == "tenant" and tenant != access.tenant:
        raise ApiError(403, "forbidden", f"this token creates sessions of {access.tenant!r} only")
    conductor = request.app[CONDUCTOR]
    limit = conductor.config.max_sessions_per_tenant
    if conductor.active_sessions(tenant) >= limit:
        raise refuse("tenant_sessions", 429, "too_many_sessions",
                     f"{tenant!r} has {limit} active sessions; end one first")
    request.app[SESSION_RATE].take(request.remote or "?")
    profile = _choice(body, "profile", "", interview.PROFILES)
    session = await conductor.create_session(
        name=_text(body, "name", "", MAX_NAME),
        instructions=_text(body, "instructions", "", MAX_TEXT),
        voice=_choice(body, "voice", "alloy", VOICES),
        record=record,
        tenant_id=tenant,
        profile=profile,
        questions=interview.session_questions(body, profile,
                                              conductor.config.interview_questions),
    )
    return web.json_response({"session_id": session.session_id, "tenant": tenant,
                              "token": session.token,
                              "join_url": _join_url(conductor, session.session_id,
                                                    session.token)}, status=201)


def _join_url(conductor: Conductor, session_id: str, token: str) -> str:
    return f"{conductor.config.base_url}/s/{session_id}?t={token}"


async def create_session_token(request: web.Request) -> web.Response:
    """A fresh session token (a new link for a session that outlives its first one)."""
    session, _ = request.app[AUTH].session(request)
    body = await _body(request)
    conductor = request.app[CONDUCTOR]
    token, claims = conductor.signer.mint("session", session.tenant_id, session.session_id,
                                          _ttl(body, conductor.config.token_ttl_s))
    return web.json_response({"token": token, "expires_at": claims.exp,
                              "join_url": _join_url(conductor, session.session_id, token)},
                             status=201)


async def list_sessions(request: web.Request) -> web.Response:
    access = request.app[AUTH].tenant_wide(request)
    sessions = request.app[CONDUCTOR].sessions.values()
    return web.json_response({"sessions": [
        s.to_json() for s in sessions if access.role == "admin" or s.tenant_id == access.tenant]})


async def get_session(request: web.Request) -> web.Response:
    session, _ = request.app[AUTH].session(request)
    return web.json_response(session.to_json())


async def end_session(request: web.Request) -> web.Response:
    session, _ = request.app[AUTH].session(request)
    await request.app[CONDUCTOR].end(session, "ended by request")
    return web.Response(status=204)


async def join(request: web.Request) -> web.Response:
    session, _ = request.app[AUTH].session(request)
    body = await _body(request)
    if body.get("type", "offer") != "offer":
        raise ApiError(400, "invalid_field", "'type' must be 'offer'")
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise ApiError(400, "invalid_sdp", "'sdp' must be an SDP offer (starting with v=0)")
    config = request.app[CONDUCTOR].config
    check_offer(sdp, config.max_sdp_lines, config.max_candidates)
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
    session, _ = request.app[AUTH].session(request)
    await request.app[CONDUCTOR].leave(session, request.match_info["cid"])
    return web.Response(status=204)


async def transcript(request: web.Request) -> web.Response:
    access = await request.app[AUTH].readable(request)
    sid = request.match_info["sid"]
    entries = await request.app[CONDUCTOR].transcript(sid, access.tenant_filter)
    return web.json_response({"session_id": sid, "entries": [
        {"speaker": e.speaker, "text": e.text, "started_at": e.started_at, "ended_at": e.ended_at}
        for e in entries]})


async def event_log(request: web.Request) -> web.StreamResponse:
    access = await request.app[AUTH].readable(request)
    sid = request.match_info["sid"]
    try:
        after = int(request.query.get("after", "0"))
        limit = min(int(request.query.get("limit", str(EVENTS_LIMIT))), EVENTS_LIMIT)
    except ValueError as e:
        raise ApiError(400, "invalid_query", "'after' and 'limit' must be integers") from e
    logged, cursor = await request.app[CONDUCTOR].event_log(sid, after, limit,
                                                            access.tenant_filter)
    text = "".join(events.to_json(e) + "\n" for e in logged)
    # The next page: GET …/events?after=<Voxrelay-Next-After>.
    return web.Response(text=text, content_type="application/x-ndjson",
                        headers={"Voxrelay-Next-After": str(cursor)})


async def client_secret(request: web.Request) -> web.Response:
    """Direct mode: an ephemeral Realtime key for a session's configuration (the session
    in ``session_id``, or the one a session token names)."""
    auth = request.app[AUTH]
    body = await _body(request)
    sid = body.get("session_id") or auth.access(request).session_id
    if not isinstance(sid, str) or not sid:
        raise ApiError(400, "invalid_field", "'session_id' names the session (a session token "
                       "names its own)")
    session, _ = auth.session_named(request, sid)
    ttl = body.get("ttl_s", CLIENT_SECRET_TTL_S)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 10 <= ttl <= 7200:
        raise ApiError(400, "invalid_field", "'ttl_s' must be an integer of 10–7200 seconds")
    name = _text(body, "name", "", MAX_NAME)
    secret = await request.app[CONDUCTOR].mint_client_secret(session, ttl, name)
    return web.json_response({"value": secret.value, "expires_at": secret.expires_at,
                              "model": secret.model}, status=201,
                             headers={"Cache-Control": "no-store"})


async def realtime_call(request: web.Request) -> web.Response:
    """Direct mode: a browser's SDP offer for its own call to the Realtime API, posted as
    it would post it to the API (``application/sdp``, ``Authorization: Bearer`` the
    ephemeral key signaling handed out); answered with the API's SDP answer."""
    conductor = request.app[CONDUCTOR]
    if request.content_type != "application/sdp":
        raise ApiError(415, "unsupported_content_type", "send the SDP offer as application/sdp")
    presented = credential(request) if request.headers.get("Authorization") else None
    issued = conductor.issued_keys.redeem(presented) if presented else None
    if issued is None:
        raise ApiError(401, "invalid_client_secret", "present an unused, unexpired ephemeral "
                       "key from POST /v1/realtime/client_secrets (Authorization: Bearer ek_…)")
    session = conductor.get(issued.session_id)
    try:
        sdp = (await request.read()).decode()
    except UnicodeDecodeError as e:
        raise ApiError(400, "invalid_sdp", f"the offer is not UTF-8 text: {e}") from e
    if not sdp.startswith("v=0"):
        raise ApiError(400, "invalid_sdp", "the body must be an SDP offer (starting with v=0)")
    check_offer(sdp, conductor.config.max_sdp_lines, conductor.config.max_candidates)
    client, answer = await conductor.direct_call(session, sdp, presented or "", issued.name)
    return web.Response(status=201, text=answer.sdp, content_type="application/sdp", headers={
        "Location": f"/v1/realtime/calls/{answer.call_id}", "Cache-Control": "no-store",
        "Voxrelay-Session-Id": session.session_id, "Voxrelay-Client-Id": client.client_id})


async def interview_transcript(request: web.Request) -> web.Response:
    """Each question asked in the session, with what was said while it was current."""
    access = await request.app[AUTH].readable(request)
    sid = request.match_info["sid"]
    conductor = request.app[CONDUCTOR]
    recorded: list[dict[str, Any]] = []
    after = 0
    for _ in range(INTERVIEW_PAGES):
        logged, after = await conductor.event_log(sid, after, EVENTS_LIMIT, access.tenant_filter)
        recorded += [msgspec.to_builtins(e) for e in logged if isinstance(e, events.QuestionReady)]
        if len(logged) < EVENTS_LIMIT:
            break
    entries = await conductor.transcript(sid, access.tenant_filter)
    transcript = [{"speaker": e.speaker, "role": e.role, "text": e.text,
                   "started_at": e.started_at, "ended_at": e.ended_at} for e in entries]
    return web.json_response({"session_id": sid,
                              "questions": interview.per_question(recorded, transcript)})


async def healthz(request: web.Request) -> web.Response:
    placement = request.app[CONDUCTOR].placement
    services = placement.health()
    ok = all(services.values())
    return web.json_response({"status": "ok" if ok else "degraded", "services": services},
                             status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
