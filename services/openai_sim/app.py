"""The simulator's HTTP surface: REST endpoints, the WebSocket, and test controls.

Routes (the Realtime API's, under ``/v1``):
  POST /v1/realtime/client_secrets         mint an ephemeral ``ek_…`` key
  POST /v1/realtime/calls                  SDP offer in, 201 + SDP answer + Location
  POST /v1/realtime/calls/{call_id}/hangup end a WebRTC call
  GET  /v1/realtime?model=… | ?call_id=…   WebSocket session | sideband
  POST /v1/realtime, /v1/realtime/sessions the dead beta endpoints: beta_api_shape_disabled
Simulator controls (not part of the API):
  GET /healthz
  GET /_sim/calls    live calls and sockets, each with its conversation's ``items``
                     (``id``, ``type``; for messages ``role`` and ``text``)
  POST /_sim/drop    end calls abruptly, as a network failure or an API restart would
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.runtime.tasks import TaskOwner

from . import ids
from . import ws as ws_transport
from .config import SimConfig
from .errors import RealtimeError, http_error
from .keys import EPHEMERAL_TTL_DEFAULT_S, EPHEMERAL_TTL_RANGE_S, AuthError, Grant, KeyStore
from .realtime_session import BETA_MESSAGE, RealtimeSession, Transport
from .rtc import InvalidOffer, RtcCall
from .session_config import default_session, merge, validate_session_update
from .voice import Voice

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
SHUTDOWN_GRACE_S = 3.0
CALL_NOT_FOUND = "No session found for the provided call_id"


@dataclass
class SimState:
    config: SimConfig
    keys: KeyStore
    voice: Voice
    owner: TaskOwner
    calls: dict[str, RtcCall] = field(default_factory=dict)
    sockets: dict[str, tuple[web.Request, RealtimeSession]] = field(default_factory=dict)


STATE = web.AppKey("state", SimState)


def create_app(config: SimConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    state = SimState(config, KeyStore(config.api_key), Voice(config.espeak), TaskOwner("openai_sim"))
    app[STATE] = state
    app.router.add_post("/v1/realtime/client_secrets", create_client_secret)
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", hangup_call)
    app.router.add_get("/v1/realtime", realtime_socket)
    app.router.add_post("/v1/realtime", beta_endpoint)
    app.router.add_post("/v1/realtime/sessions", beta_endpoint)
    app.router.add_post("/v1/realtime/transcription_sessions", beta_endpoint)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/_sim/calls", list_calls)
    app.router.add_post("/_sim/drop", drop_calls)
    app.cleanup_ctx.append(_lifetime)
    app.on_shutdown.append(_end_live_sessions)
    return app


async def _lifetime(app: web.Application):  # type: ignore[no-untyped-def]
    state = app[STATE]
    await state.owner.start()
    yield
    await state.owner.aclose()


async def _end_live_sessions(app: web.Application) -> None:
    """On shutdown, before connections are cut: end calls and sockets so clients hear of it."""
    state = app[STATE]
    for call in list(state.calls.values()):
        call.end()
    for _, session in list(state.sockets.values()):
        session.end(1001, "server shutting down")
    try:
        async with asyncio.timeout(SHUTDOWN_GRACE_S):
            while state.calls or state.sockets:
                await asyncio.sleep(0.02)
    except TimeoutError:
        logger.warning("shutdown: %d call(s) did not end in time", len(state.calls))


def _authorize(request: web.Request) -> Grant:
    return request.app[STATE].keys.check(request.headers.get("Authorization"))


def _auth_failed(e: AuthError) -> web.Response:
    return http_error(401, e.message, code=e.code)


def _refused(e: RealtimeError, status: int = 400) -> web.Response:
    return http_error(status, e.message, code=e.code, param=e.param, type=e.type)


async def _json_body(request: web.Request) -> Any:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError as e:
        raise RealtimeError(
            None,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)",
        ) from e


# -- client secrets ----------------------------------------------------------------


async def create_client_secret(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        grant = _authorize(request)
    except AuthError as e:
        return _auth_failed(e)
    if grant.ephemeral:
        return http_error(401, "Ephemeral keys cannot create client secrets.", code="invalid_api_key")
    try:
        body = await _json_body(request)
        ttl, session = _parse_secret_request(body)
    except RealtimeError as e:
        return _refused(e)
    value, expires_at = state.keys.mint(session, ttl)
    rendered = {"type": session["type"], "object": "realtime.session", "id": ids.session_id(),
                **{k: v for k, v in session.items() if k != "type"}, "expires_at": 0}
    return web.json_response({"value": value, "expires_at": expires_at, "session": rendered})


def _parse_secret_request(body: Any) -> tuple[int, dict[str, Any]]:
    if not isinstance(body, dict):
        raise RealtimeError("invalid_type", "The request body must be a JSON object.")
    for key in body:
        if key not in ("expires_after", "session"):
            raise RealtimeError("unknown_parameter", f"Unknown parameter: '{key}'.", param=key)
    ttl = EPHEMERAL_TTL_DEFAULT_S
    expires_after = body.get("expires_after")
    if expires_after is not None:
        if not isinstance(expires_after, dict) or expires_after.get("anchor", "created_at") != "created_at":
            raise RealtimeError("invalid_value", "Invalid value for 'expires_after.anchor': "
                                "only 'created_at' is supported.", param="expires_after.anchor")
        ttl = expires_after.get("seconds", ttl)
        lo, hi = EPHEMERAL_TTL_RANGE_S
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not lo <= ttl <= hi:
            raise RealtimeError("integer_out_of_range",
                                f"Invalid 'expires_after.seconds': integer must be between {lo} "
                                f"and {hi}, got {ttl}.", param="expires_after.seconds")
    return ttl, _session_from(body.get("session"))


def _session_from(raw: Any) -> dict[str, Any]:
    if raw is None:
        return default_session()
    update = validate_session_update(raw)
    base = default_session(update.get("model", default_session()["model"]))
    return merge(base, update)


# -- WebRTC calls ------------------------------------------------------------------


async def create_call(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        grant = _authorize(request)
    except AuthError as e:
        return _auth_failed(e)
    try:
        sdp, session = await _read_offer(request, grant)
    except RealtimeError as e:
        return _refused(e)
    call = RtcCall(state.config, state.voice, session)
    try:
        answer = await call.answer(sdp)
    except InvalidOffer as e:
        await call.pc.close()
        return http_error(400, f"Failed to parse offer: {e}", code="invalid_offer")
    state.calls[call.id] = call
    state.owner.spawn(_run_call(state, call), f"call-{call.id}")
    logger.info("call %s answered", call.id)
    return web.Response(status=201, text=answer, content_type="application/sdp",
                        headers={"Location": f"/v1/realtime/calls/{call.id}"})


async def _run_call(state: SimState, call: RtcCall) -> None:
    try:
        await call.run(state.owner)
    finally:
        state.calls.pop(call.id, None)
        logger.info("call %s ended", call.id)


async def _read_offer(request: web.Request, grant: Grant) -> tuple[str, dict[str, Any]]:
    session = grant.session or default_session()
    if request.content_type == "multipart/form-data":
        sdp = None
        reader = await request.multipart()
        async for part in reader:
            if part.name == "sdp":
                sdp = await part.text()
            elif part.name == "session":
                try:
                    raw = json.loads(await part.text())
                except ValueError as e:
                    raise RealtimeError("invalid_json", "The 'session' part is not valid JSON.",
                                        param="session") from e
                session = merge(session, validate_session_update(raw))
        if sdp is None:
            raise RealtimeError("missing_required_parameter", "Missing required parameter: 'sdp'.",
                                param="sdp")
        return sdp, session
    if request.content_type in ("application/sdp", "text/plain"):
        return await request.text(), session
    raise RealtimeError(
        "unsupported_content_type",
        f"Unsupported content type: '{request.content_type}'. Send application/sdp or "
        "multipart/form-data.",
    )


async def hangup_call(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        _authorize(request)
    except AuthError as e:
        return _auth_failed(e)
    call = state.calls.get(request.match_info["call_id"])
    if call is None:
        return http_error(404, CALL_NOT_FOUND, code="call_id_not_found", param="")
    call.end()
    return web.Response(status=200)


async def beta_endpoint(request: web.Request) -> web.Response:
    return http_error(400, BETA_MESSAGE, code="beta_api_shape_disabled")


# -- WebSocket ---------------------------------------------------------------------


async def realtime_socket(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if ws_transport.wants_beta(request):
        return await ws_transport.refuse_beta(request)
    key = ws_transport.subprotocol_key(request)
    try:
        grant = state.keys.check_key(key) if key else _authorize(request)
    except AuthError as e:
        return _auth_failed(e)
    call_id = request.query.get("call_id")
    if call_id is not None:
        call = state.calls.get(call_id)
        if call is None or grant.ephemeral or call.ended:
            return http_error(404, CALL_NOT_FOUND, code="call_id_not_found", param="")
        return await ws_transport.serve_sideband(request, call.session, call.sideband_closers)
    session_config = grant.session or default_session(request.query.get("model") or "gpt-realtime")
    session = RealtimeSession(state.config, state.voice, Transport.WEBSOCKET, session=session_config)
    return await _tracked(state, request, session, ws_transport.serve_session(request, session))


async def _tracked(state: SimState, request: web.Request, session: RealtimeSession,
                   serving: Coroutine[Any, Any, web.WebSocketResponse]) -> web.StreamResponse:
    """Serve a socket while it is listed for the drop switch and shutdown."""
    state.sockets[session.id] = (request, session)
    timer = None
    if state.config.drop_after_s > 0:
        timer = asyncio.get_running_loop().call_later(state.config.drop_after_s, _abort, request)
    try:
        return await serving
    finally:
        state.sockets.pop(session.id, None)
        if timer is not None:
            timer.cancel()


def _abort(request: web.Request) -> None:
    """Cut the TCP connection under a socket, as a network failure would (client sees 1006)."""
    if request.transport is not None:
        request.transport.abort()


# -- simulator controls ------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "calls": len(request.app[STATE].calls)})


async def list_calls(request: web.Request) -> web.Response:
    """Live WebRTC calls and WebSocket sessions, each with its conversation's items."""
    state = request.app[STATE]
    calls = [{"call_id": c.id, "session_id": c.session.id, "transport": "webrtc",
              "connection_state": c.pc.connectionState, "items": _items(c.session)}
             for c in state.calls.values()]
    calls += [{"call_id": None, "session_id": sid, "transport": "websocket",
               "connection_state": "connected", "items": _items(session)}
              for sid, (_, session) in state.sockets.items()]
    return web.json_response({"calls": calls})


def _items(session: RealtimeSession) -> list[dict[str, Any]]:
    """The conversation in order, as a test reads it: id, type, and for messages their
    role and text (text parts, or audio parts' transcripts, joined by spaces)."""
    listed: list[dict[str, Any]] = []
    for item in session.conversation.items:
        entry: dict[str, Any] = {"id": item["id"], "type": item["type"]}
        if item["type"] == "message":
            parts = [part.get("text") or part.get("transcript") or ""
                     for part in item.get("content") or []]
            entry["role"] = item["role"]
            entry["text"] = " ".join(part for part in parts if part)
        listed.append(entry)
    return listed


async def drop_calls(request: web.Request) -> web.Response:
    """Fault injection: end calls abruptly (all, or ``{"call_id": …}``) without a hangup."""
    state = request.app[STATE]
    try:
        body = await _json_body(request)
    except RealtimeError as e:
        return _refused(e)
    wanted = body.get("call_id") if isinstance(body, dict) else None
    dropped = [c.id for c in list(state.calls.values()) if wanted in (None, c.id)]
    for call_id in dropped:
        state.calls[call_id].end()
    for session_id, (socket_request, _) in list(state.sockets.items()):
        if wanted in (None, session_id):
            _abort(socket_request)
            dropped.append(session_id)
    return web.json_response({"dropped": dropped})
