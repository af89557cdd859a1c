"""The Realtime API's REST surface for WebRTC calls, and the session the link asks for.

``POST {base}/realtime/calls`` takes the SDP offer and the session as
``multipart/form-data`` (parts ``sdp`` and ``session``) with the standard API key, and
answers 201 with the SDP answer and ``Location: /v1/realtime/calls/<call id>``; any other
status carries a JSON error body, which becomes a :class:`CallRefused` that says what
the API said. ``POST {base}/realtime/calls/{call_id}/hangup`` ends the call.

Direct mode uses the same surface for a browser: ``POST /realtime/client_secrets`` (standard
key) mints the ephemeral key it holds, and its offer is posted as it would post it itself
(``application/sdp``, that ephemeral key: :func:`create_direct_call`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from .config import LinkConfig
from .errors import CallRefused, RealtimeUnavailable, redact

logger = logging.getLogger(__name__)

TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
TURN_SILENCE_MS = 200
"""How long the model's turn detection waits in silence before the user's turn ends.
Asked for explicitly rather than left to the API's default (the docs say 500 ms, the
server's default session says 200): with silence kept off the bus, a pause reaches the
model as the microphone's quiet tail (``media_edge.uplink.MIC_TAIL_FRAMES``, 300 ms)
and, over WebSocket, nothing after it, so the wait must end inside that tail."""
HANGUP_TIMEOUT_S = 2.0
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class CallSettings:
    """What a conversation asks of the model; empty means the API's default."""

    instructions: str = ""
    voice: str = ""
    tools: tuple[dict[str, Any], ...] = ()
    "Function tools offered to the model (``session.update``'s ``tools``)."


@dataclass(frozen=True)
class CallAnswer:
    sdp: str
    call_id: str


def session_config(settings: CallSettings) -> dict[str, Any]:
    """The GA session (``type: realtime``) for ``session.update``: voice, instructions,
    input transcription, server VAD that answers and lets the user barge in, and the
    tools the model may call."""
    session: dict[str, Any] = {"type": "realtime", "output_modalities": ["audio"]}
    if settings.instructions:
        session["instructions"] = settings.instructions
    session["audio"] = {
        "input": {
            "transcription": {"model": TRANSCRIPTION_MODEL},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": TURN_SILENCE_MS,
                               "create_response": True, "interrupt_response": True},
        },
    }
    if settings.voice:
        session["audio"]["output"] = {"voice": settings.voice}
    if settings.tools:
        session["tools"] = [dict(t) for t in settings.tools]
        session["tool_choice"] = "auto"
    return session


def call_session(model: str, settings: CallSettings) -> dict[str, Any]:
    """The ``session`` part of the call request (a ``RealtimeSessionCreateRequest``)."""
    session: dict[str, Any] = {"type": "realtime", "model": model}
    if settings.instructions:
        session["instructions"] = settings.instructions
    session["audio"] = {"input": {"transcription": {"model": TRANSCRIPTION_MODEL}}}
    if settings.voice:
        session["audio"]["output"] = {"voice": settings.voice}
    return session


def _headers(config: LinkConfig, accept: str, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key or config.api_key.reveal()}", "Accept": accept}


async def create_call(http: aiohttp.ClientSession, config: LinkConfig, offer_sdp: str,
                      settings: CallSettings) -> CallAnswer:
    """Post the offer; raises RealtimeUnavailable (CallRefused for a non-201 answer)."""
    form = aiohttp.FormData()
    form.add_field("sdp", offer_sdp, content_type="application/sdp")
    form.add_field("session", json.dumps(call_session(config.model, settings)),
                   content_type="application/json")
    return await _post_offer(http, config, form, None)


async def create_direct_call(http: aiohttp.ClientSession, config: LinkConfig, offer_sdp: str,
                             client_secret: str) -> CallAnswer:
    """Post a browser's offer as the browser would: ``application/sdp`` with the ephemeral
    key it was given (the key carries the session's configuration)."""
    return await _post_offer(http, config, offer_sdp, client_secret)


async def _post_offer(http: aiohttp.ClientSession, config: LinkConfig,
                      body: str | aiohttp.FormData, key: str | None) -> CallAnswer:
    url = f"{config.base_url}/realtime/calls"
    headers = _headers(config, "application/sdp", key)
    if isinstance(body, str):
        headers["Content-Type"] = "application/sdp"
    try:
        async with http.post(url, data=body, headers=headers) as r:
            text = await r.text()
            if r.status != 201:
                code, message = _error_of(text)
                message = redact(redact(message, config.api_key.reveal()), key or "")
                raise CallRefused(r.status, code, message)
            location = r.headers.get("Location", "")
    except aiohttp.ClientError as e:
        raise RealtimeUnavailable(f"cannot reach the Realtime API at {url}: {e}") from e
    call_id = location.rstrip("/").rsplit("/", 1)[-1]
    if not call_id:
        raise RealtimeUnavailable(f"{url} answered 201 without a call id in Location")
    if not text.startswith("v=0"):
        raise RealtimeUnavailable(f"{url} answered 201 without an SDP answer")
    return CallAnswer(sdp=text, call_id=call_id)


@dataclass(frozen=True)
class ClientSecret:
    value: str
    expires_at: int


async def mint_client_secret(http: aiohttp.ClientSession, config: LinkConfig,
                             settings: CallSettings, ttl_s: int) -> ClientSecret:
    """An ephemeral key for a session like the link's own (``POST /realtime/client_secrets``
    with the standard key); raises RealtimeUnavailable (CallRefused when refused)."""
    body = {"expires_after": {"anchor": "created_at", "seconds": ttl_s},
            "session": {**session_config(settings), "model": config.model}}
    url = f"{config.base_url}/realtime/client_secrets"
    try:
        async with http.post(url, json=body, headers=_headers(config, "application/json"),
                             timeout=aiohttp.ClientTimeout(total=config.connect_timeout_s)) as r:
            text = await r.text()
            if r.status != 200:
                code, message = _error_of(text)
                raise CallRefused(r.status, code, redact(message, config.api_key.reveal()))
    except (aiohttp.ClientError, TimeoutError) as e:
        raise RealtimeUnavailable(f"cannot reach the Realtime API at {url}: "
                                  f"{e or type(e).__name__}") from e
    try:
        answer = json.loads(text)
        return ClientSecret(value=str(answer["value"]), expires_at=int(answer["expires_at"]))
    except (ValueError, KeyError, TypeError) as e:
        raise RealtimeUnavailable(f"{url} answered without a client secret: {e}") from e


async def hangup(http: aiohttp.ClientSession, config: LinkConfig, call_id: str) -> bool:
    """End the call server-side; False (logged) if that failed. Never raises on I/O."""
    url = f"{config.base_url}/realtime/calls/{call_id}/hangup"
    try:
        async with http.post(url, headers=_headers(config, "application/json"),
                             timeout=aiohttp.ClientTimeout(total=HANGUP_TIMEOUT_S)) as r:
            if r.status == 200:
                return True
            code, message = _error_of(await r.text())
            logger.info("hangup of call %s: HTTP %s %s: %s", call_id, r.status, code,
                        redact(message, config.api_key.reveal()))
    except (aiohttp.ClientError, TimeoutError) as e:
        logger.info("hangup of call %s failed: %s", call_id, e or type(e).__name__)
    return False


def _error_of(body: str) -> tuple[str, str]:
    """(code, message) of an OpenAI error body, or of whatever text came instead."""
    try:
        error = json.loads(body)["error"]
        return str(error.get("code") or error.get("type") or "error"), str(error.get("message"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "error", body.strip()[:MAX_ERROR_CHARS] or "(empty body)"
