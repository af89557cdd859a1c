"""The browser's WebSocket fallback: signaling carries a client's audio itself.

A browser whose WebRTC connection to a media edge is not connected within 8 s (or failed
twice) opens ``GET /v1/sessions/{sid}/ws?t=<token>&name=…&client_id=…`` on signaling's
port (the token may also come as ``Authorization: Bearer``; browsers cannot set headers
on a WebSocket); any credential that opens the session will do (``auth.py``). A wrong
one is refused (401, or 404 for a session it cannot see) before the upgrade. The client joins
the session like any other (it counts against the client limit; with ``client_id`` the
client whose WebRTC failed moves here): the mixer hears it on signaling's ``aud/in``
publisher, the link opens its Realtime connection if needed.

On the socket:

- browser → server, binary: PCM16 24 kHz mono, any multiple of 10 ms up to 200 ms, cut
  into exact 20 ms frames and published on ``aud/in/<session>/<client>`` (capture time =
  receive time, earlier frames of a message earlier by 20 ms each). Other sizes are
  dropped and counted; the socket stays open.
- browser → server, text: the ``events`` DataChannel's requests, ``latency.ping``
  (answered with ``latency.pong``) and ``client.mute``; anything else is dropped, counted.
- server → browser, binary: the model's voice, one 960-byte 20 ms frame a message. A
  socket that cannot keep up loses frames (counted) rather than queueing them; on
  ``ai.interrupted`` its queue is emptied.
- server → browser, text: first ``{"type": "ws.welcome", "payload": {"session_id",
  "client_id"}}`` (the id to come back as, with ``?client_id=``, after a drop), then the
  session's client-facing events as JSON (``events.to_client_json``), ahead of any
  queued audio.

Limits, per socket (what is over them is dropped and counted in
``voxrelay_ws_messages_dropped_total{reason}``):

- text: a token bucket of ``CLIENT_MESSAGES_PER_S`` (50) requests a second sustained and
  ``CLIENT_MESSAGE_BURST`` (100) at once, as on the edge's DataChannel; a message over it
  is dropped unread (``rate``);
- binary: a size that is not whole 10 ms up to 200 ms (``size``); audio more than 2 s
  ahead of real time (``ahead``; :mod:`services.runtime.pcm_messages`, shared with the
  media edge's DataChannel transport);
- any message over ``MAX_MESSAGE_BYTES`` (64 KiB): aiohttp closes the socket with 1009
  (message too big), counted ``oversized``; another protocol error closes it too
  (``protocol``). The client may come back with ``?client_id=``.

A flood is only dropped: the socket stays open, since what is over the limit costs the
reader no more than its reception, and aiohttp stops reading a socket whose received
messages queue up, so TCP slows the sender. Closing a flooding socket (1008) would add
nothing a client could not undo by reconnecting.

The connection is counted in ``voxrelay_fallbacks_total{kind="browser_websocket"}`` and
logged as ``INT_V2_WEBRTC_FALLBACK``. Signaling publishes ``client.joined`` (edge: its
own instance) and, when the socket closes, ``client.left`` and ``RemoveClient`` to the
mixer. It serves ``RemoveClient``, ``StopSession`` and ``StartSession`` (a replaced link)
for these clients as an edge does, so ``leave``, ``end`` and recovery need nothing more.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import zmq
from aiohttp import WSCloseCode, WSMsgType, web

from proto import audio, events, rpc, topics
from services.runtime.pcm_messages import Dropped, PcmMessages
from services.runtime.ratelimit import CLIENT_MESSAGE_BURST, CLIENT_MESSAGES_PER_S, TokenBucket

from .conductor import Conductor
from .metrics import FALLBACKS, WS_DROPPED, WS_DROPPED_AHEAD, WS_DROPPED_RATE, WS_FRAMES
from .auth import Authorizer
from .sessions import Session
from .ws_audio import WsAudio

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
HEARTBEAT_S = 10.0
"aiohttp pings the browser this often and closes a socket that stops answering."
AUDIO_BACKLOG_FRAMES = 5
"Model frames (100 ms) queued per socket before newer ones are dropped."
EVENT_BACKLOG = 1000
MAX_NAME = 64
WELCOME = "ws.welcome"


class PingPayload(msgspec.Struct):
    ping_id: str | int


class MutePayload(msgspec.Struct):
    muted: bool


class LatencyPing(msgspec.Struct, tag="latency.ping", tag_field="type"):
    payload: PingPayload
    ts: float | None = None


class ClientMute(msgspec.Struct, tag="client.mute", tag_field="type"):
    payload: MutePayload
    ts: float | None = None


class LatencyPong(msgspec.Struct, tag="latency.pong", tag_field="type"):
    ts: float | None = None


_decoder = msgspec.json.Decoder(LatencyPing | ClientMute | LatencyPong)
_encoder = msgspec.json.Encoder()


@dataclass(eq=False)
class WsClient:
    """One browser's socket: its audio stream state and its outgoing queues."""

    session_id: str
    client_id: str
    ws: web.WebSocketResponse
    topic: bytes
    next_seq: int = 0
    muted: bool = False
    events: collections.deque[str] = field(default_factory=collections.deque)
    frames: collections.deque[bytes] = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    requests: TokenBucket = field(default_factory=lambda: TokenBucket(
        CLIENT_MESSAGES_PER_S, CLIENT_MESSAGE_BURST))
    "One token per text message."
    uplink: PcmMessages = field(default_factory=PcmMessages)
    "The microphone's messages, checked, paced and framed."

    def queue_event(self, text: str) -> None:
        if len(self.events) < EVENT_BACKLOG:
            self.events.append(text)
            self.wake.set()

    def queue_frame(self, pcm: bytes) -> None:
        if len(self.frames) >= AUDIO_BACKLOG_FRAMES:
            WS_DROPPED.labels("backlog").inc()
            return
        self.frames.append(pcm)
        self.wake.set()

    async def write(self) -> None:
        """Send queued events (first) and model frames until the socket closes."""
        try:
            while not self.ws.closed:
                await self.wake.wait()
                self.wake.clear()
                while (self.events or self.frames) and not self.ws.closed:
                    if self.events:
                        await self.ws.send_str(self.events.popleft())
                    else:
                        await self.ws.send_bytes(self.frames.popleft())
                        WS_FRAMES.labels("downlink").inc()
        except ConnectionError:
            return  # the browser went away: the reader sees it too


class WsBridge:
    """Signaling's WebSocket clients, by session: their joins, audio, events and leaves."""

    def __init__(self, conductor: Conductor, authorizer: Authorizer, ctx: zmq.Context[Any],
                 audio_bind: str, instance: str) -> None:
        self.conductor = conductor
        self.authorizer = authorizer
        self.instance = instance
        self.audio = WsAudio(ctx, audio_bind, self._on_model_frame, instance)
        self._sessions: dict[str, dict[str, WsClient]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/sessions/{sid}/ws", self.connect)

    def load(self) -> int:
        return sum(len(clients) for clients in self._sessions.values())

    # -- a socket's life --------------------------------------------------------------------

    async def connect(self, request: web.Request) -> web.StreamResponse:
        session, _ = self.authorizer.session(request)
        name = request.query.get("name", "")[:MAX_NAME]
        client = await self.conductor.join_local(
            session, name, request.query.get("client_id", ""), self.instance,
            self.audio.endpoint)
        link = self.conductor.placement.registry.get(session.link)
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=HEARTBEAT_S)
        try:
            await ws.prepare(request)
        except BaseException:
            await self._removed(session, client.client_id)
            raise
        conn = WsClient(session.session_id, client.client_id, ws,
                        topics.aud_in(session.session_id, client.client_id))
        await self._register(conn, link.audio if link else "")
        # The client's id, so that after a drop it can come back as itself (?client_id=).
        await ws.send_json({"type": WELCOME, "ts": time.time() * 1000, "payload": {
            "session_id": session.session_id, "client_id": client.client_id}})
        FALLBACKS.labels("browser_websocket").inc()
        logger.warning("INT_V2_WEBRTC_FALLBACK session %s client %s (%s) streams over "
                       "WebSocket", session.session_id, client.client_id, client.name,
                       extra={"session_id": session.session_id})
        client.connected = True
        self.conductor.publisher.publish(events.ClientJoined(
            session_id=session.session_id, client_id=client.client_id, name=client.name,
            role=client.role, transport="websocket", edge=self.instance))
        writer = asyncio.create_task(conn.write(), name=f"ws-{client.client_id[:8]}")
        reason = "closed"
        try:
            await self._read(conn)
        except asyncio.CancelledError:
            reason = "shutdown"
            raise
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await ws.close()
            await self._closed(session, conn, reason)
        return ws

    async def _register(self, conn: WsClient, link_audio: str) -> None:
        clients = self._sessions.setdefault(conn.session_id, {})
        old = clients.get(conn.client_id)
        clients[conn.client_id] = conn
        self.audio.attach(conn.session_id, link_audio)
        if old is not None:  # the same client again: one aud/in stream per client
            conn.next_seq, conn.muted = old.next_seq, old.muted
            conn.requests, conn.uplink = old.requests, old.uplink  # no fresh allowance
            await old.ws.close(message=b"replaced")

    async def _read(self, conn: WsClient) -> None:
        async for message in conn.ws:
            if message.type == WSMsgType.BINARY:
                self._uplink(conn, message.data)
            elif message.type == WSMsgType.TEXT:
                if conn.requests.take():
                    self._request(conn, message.data)
                else:
                    WS_DROPPED_RATE.inc()
            elif message.type == WSMsgType.ERROR:  # aiohttp closes the socket after it
                too_big = getattr(message.data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG
                WS_DROPPED.labels("oversized" if too_big else "protocol").inc()
                logger.info("WsBridge(%s) client %s: %s", self.instance, conn.client_id,
                            str(message.data)[:200])

    async def _closed(self, session: Session, conn: WsClient, reason: str) -> None:
        clients = self._sessions.get(conn.session_id, {})
        if clients.get(conn.client_id) is not conn:
            return  # replaced by a newer socket of the same client
        del clients[conn.client_id]
        if not clients:
            self._sessions.pop(conn.session_id, None)
            self.audio.detach(conn.session_id)
        client = session.clients.get(conn.client_id)
        if client is None or client.edge != self.instance:
            return  # left through the API, or moved to a media edge
        client.connected = False
        self.conductor.publisher.publish(events.ClientLeft(
            session_id=conn.session_id, client_id=conn.client_id, reason=reason))
        logger.info("WsBridge(%s) client %s left session %s (%s)", self.instance,
                    conn.client_id, conn.session_id, reason)
        await self._removed(session, conn.client_id)

    async def _removed(self, session: Session, client_id: str) -> None:
        if session.state == "active":
            await self.conductor.best_effort(rpc.RemoveClient(
                session_id=session.session_id, client_id=client_id), session.mixer)

    # -- audio and events ---------------------------------------------------------------

    def _uplink(self, conn: WsClient, pcm: bytes) -> None:
        try:
            frames = conn.uplink.frames(pcm, time.time_ns())
        except Dropped as e:
            if e.reason == "ahead":
                WS_DROPPED_AHEAD.inc()
            else:
                WS_DROPPED.labels(e.reason).inc()
            return
        if conn.muted:
            return
        for frame, capture_ns in frames:
            seq, conn.next_seq = conn.next_seq, conn.next_seq + 1
            if self.audio.publish(audio.pack(conn.topic, seq, capture_ns, frame)):
                WS_FRAMES.labels("uplink").inc()
            else:
                WS_DROPPED.labels("hwm").inc()

    def _request(self, conn: WsClient, text: str) -> None:
        try:
            request = _decoder.decode(text)
        except msgspec.DecodeError:
            WS_DROPPED.labels("invalid").inc()
            return
        match request:
            case LatencyPing(payload=payload, ts=ts):
                conn.queue_event(_encoder.encode({
                    "type": "latency.pong", "ts": time.time(),
                    "payload": {"ping_id": payload.ping_id, "client_ts": ts}}).decode())
            case ClientMute(payload=payload):
                if payload.muted != conn.muted:
                    conn.muted = payload.muted
                    self.conductor.publisher.publish(events.ClientMuted(
                        session_id=conn.session_id, client_id=conn.client_id,
                        muted=payload.muted))
            case LatencyPong():
                pass  # signaling does not ping WebSocket clients (aiohttp's heartbeat does)

    def _on_model_frame(self, session_id: str, pcm: bytes) -> None:
        for conn in self._sessions.get(session_id, {}).values():
            conn.queue_frame(pcm)

    def on_event(self, event: events.AnyEvent) -> None:
        """Forward a bus event to the session's WebSocket clients (interrupts first)."""
        clients = self._sessions.get(event.session_id)
        if not clients:
            return
        if isinstance(event, events.AiInterrupted):
            for conn in clients.values():
                conn.frames.clear()
        if events.tag(event) in events.CLIENT_FACING:
            text = events.to_client_json(event)
            for conn in clients.values():
                conn.queue_event(text)

    # -- RPC, as an edge ---------------------------------------------------------------------

    async def handle(self, request: rpc.AnyRequest) -> rpc.Reply:
        """``RemoveClient``/``StopSession`` close sockets; ``StartSession`` follows a new link."""
        match request:
            case rpc.RemoveClient(session_id=sid, client_id=cid):
                conn = self._sessions.get(sid, {}).get(cid)
                if conn is not None:
                    await conn.ws.close(message=b"removed")
            case rpc.StopSession(session_id=sid):
                for conn in list(self._sessions.get(sid, {}).values()):
                    await conn.ws.close(message=b"session ended")
            case rpc.StartSession(session_id=sid, link_audio=link_audio):
                if sid in self._sessions:
                    self.audio.attach(sid, link_audio)
            case _:
                raise rpc.RpcError("bad_request",
                                   f"signaling does not serve {type(request).__name__}")
        return rpc.Ok()

    async def close(self) -> None:
        for clients in list(self._sessions.values()):
            for conn in list(clients.values()):
                await conn.ws.close(message=b"server shutdown")
