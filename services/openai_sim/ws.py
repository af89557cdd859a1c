"""The WebSocket transport: ``GET /v1/realtime?model=…`` and ``?call_id=…`` sideband."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web

from .realtime_session import RealtimeSession, beta_disabled
from .sinks import WebSocketSink

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 24 * 1024 * 1024
"Room for a 15 MiB append in base64; larger messages close the socket with 1009."
SUBPROTOCOL = "realtime"
KEY_SUBPROTOCOL = "openai-insecure-api-key."
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
BETA_CLOSE_CODE = 4000
BETA_CLOSE_REASON = "invalid_request_error.beta_api_shape_disabled"


def offered_subprotocols(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def subprotocol_key(request: web.Request) -> str | None:
    for proto in offered_subprotocols(request):
        if proto.startswith(KEY_SUBPROTOCOL):
            return proto[len(KEY_SUBPROTOCOL):]
    return None


def wants_beta(request: web.Request) -> bool:
    beta_header = request.headers.get("OpenAI-Beta", "")
    return "realtime" in beta_header or BETA_SUBPROTOCOL in offered_subprotocols(request)


async def open_socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=MAX_MESSAGE_BYTES,
                               compress=False, autoping=True)
    await ws.prepare(request)
    return ws


async def refuse_beta(request: web.Request) -> web.WebSocketResponse:
    """Beta handshakes: accepted, told ``beta_api_shape_disabled``, closed with 4000."""
    ws = await open_socket(request)
    sink = WebSocketSink(ws)
    sink.send(beta_disabled().to_event())
    sink.close(BETA_CLOSE_CODE, BETA_CLOSE_REASON)
    await sink.run()
    return ws


async def serve_session(request: web.Request, session: RealtimeSession) -> web.WebSocketResponse:
    """Run a new WebSocket session until either side closes it."""
    ws = await open_socket(request)
    sink = WebSocketSink(ws)
    session.on_close(sink.close)
    session.attach(sink)
    async with asyncio.TaskGroup() as tg:
        writer = tg.create_task(sink.run())
        runner = tg.create_task(session.run())
        await read_events(ws, session)
        session.close()
        if not writer.done():
            sink.close(1000, "")
        await runner
    return ws


async def serve_sideband(request: web.Request, session: RealtimeSession,
                         closers: list[Any]) -> web.WebSocketResponse:
    """Attach a WebSocket to a WebRTC call's session: same events, same commands."""
    ws = await open_socket(request)
    sink = WebSocketSink(ws)
    closers.append(sink.close)
    session.attach(sink)
    try:
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(sink.run())
            await read_events(ws, session)
            if not writer.done():
                sink.close(1000, "")
    finally:
        session.detach(sink)
        closers.remove(sink.close)
    return ws


async def read_events(ws: web.WebSocketResponse, session: RealtimeSession) -> None:
    async for msg in ws:
        match msg.type:
            case WSMsgType.TEXT:
                session.handle_message(msg.data)
            case WSMsgType.BINARY:
                session.handle_message(msg.data)
            case WSMsgType.ERROR:
                logger.info("WebSocket error: %s", ws.exception())
                return
            case _:
                return
