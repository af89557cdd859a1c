"""The openai_link service: RPC, audio sockets, and the conversations it holds.

RPC (``proto/README.md`` §6): ``StartSession`` remembers a conversation and subscribes
to its ``aud/mix`` at the mixer's endpoint (sent again with another endpoint, when the
session's mixer was restarted or replaced, it follows that one; ``context``, the recorded
conversation of a session resumed here, becomes the first call's history); ``AddClient`` opens the
Realtime connection when the first client joins and answers once it is usable
(``unavailable`` if it cannot be had within the connect timeout); ``StopSession`` hangs
up and forgets (idempotent). Direct mode: ``MintClientSecret`` gets an ephemeral key for
the session's configuration; ``DirectCall`` posts a browser's offer with that key and
follows the call's sideband (``session.py``); ``RemoveClient`` of that browser hangs up.
A call that drops under a conversation is reopened by the session itself, with backoff,
while any of its clients is present, and given the conversation so far
(``session.py``); no RPC is needed for that.

Audio: one SUB socket follows every mixer a session names (connected once per
endpoint); one PUB socket, bound on ``VOXRELAY_AUDIO_BIND``, carries ``aud/model``.
Events: the link reads its sessions' ``voice.activity``, ``client.joined`` and
``client.left`` from the bus, to name who spoke in each user turn and to know whether
anyone is still present to reconnect for.
"""

from __future__ import annotations

import asyncio
import logging
from typing import assert_never

import aiohttp

from proto import audio, events, ids, rpc
from services import tools
from services.tools import interview
from services.runtime import ConfigError, configure_ice_hosts, prompt_triggered_checks
from services.runtime.metrics import HopMeter
from services.runtime.service import Service
from services.runtime.sockets import Role, SharedConnections, bind, make_socket
from services.runtime.tasks import TaskOwner
from services.runtime.voice_rtp import install_voice_rtp
from services.runtime.zmq_loop import Rejected, SocketReader, send_nowait

from .bus_events import SessionEvents
from . import calls_api
from .calls_api import CallSettings
from .config import LinkConfig
from .errors import CallRefused, RealtimeUnavailable
from .metrics import FRAMES_DROPPED, SESSIONS
from .session import DirectClient, LinkSession

logger = logging.getLogger(__name__)

PROFILES = ("", interview.PROFILE)
"The kinds of conversation the link holds ('': the default)."

READY_TIMEOUT_S = 5.0
"How long a request waits for the service to finish starting."


class Link:
    def __init__(self, config: LinkConfig, service: Service) -> None:
        self.config = config
        self.service = service
        try:  # what the model may call: each session is offered those of its profile
            self.tools = tools.load(config.tool_modules)
        except tools.ToolError as e:
            raise ConfigError("VOXRELAY_TOOLS", str(e)) from e
        self.sessions: dict[str, LinkSession] = {}
        self._by_mix_topic: dict[bytes, LinkSession] = {}
        self._audio_pub = make_socket(service.ctx, Role.AUDIO_PUB)
        self.audio_endpoint = bind(self._audio_pub, config.service.audio_bind)
        service.tend_publisher(self._audio_pub)
        self._mix_sub = make_socket(service.ctx, Role.AUDIO_SUB)
        self._mixers = SharedConnections(self._mix_sub, "mixer_audio")
        self._mix_reader = SocketReader(self._mix_sub, self._on_mix_frame,
                                        f"{service.instance}-mix", "aud_mix")
        self._mix_hops = HopMeter("mixer_to_link", on_gap=FRAMES_DROPPED.labels("gap").inc)
        SESSIONS.set_function(self.load)
        self._session_events = SessionEvents(service.ctx, config.service.bus, service.instance,
                                             self._on_bus_event)
        self._owner = TaskOwner(f"{service.instance}-sessions")
        self._http: aiohttp.ClientSession | None = None
        self._running = asyncio.Event()
        self._closing = False

    def __repr__(self) -> str:
        return f"Link({self.service.instance})"

    def load(self) -> int:
        return len(self.sessions)

    async def run(self) -> None:
        """Serve sessions until cancelled; then close every one (hanging up its call)."""
        await self._owner.start()
        # One request per call set-up or hang-up, far apart: a pooled keep-alive connection
        # would mostly be one the server has closed since (ServerDisconnectedError).
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self._mix_reader.start()
        self._session_events.start()
        self._running.set()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    # -- RPC --------------------------------------------------------------------

    async def handle(self, request: rpc.AnyRequest) -> rpc.Reply:
        match request:
            case rpc.Ping():
                return rpc.Ok()
            case rpc.StartSession():
                await self._ready()
                return self._start_session(request)
            case rpc.AddClient():
                await self._ready()
                return await self._add_client(request)
            case rpc.StopSession():
                return await self._stop_session(request)
            case rpc.MintClientSecret():
                await self._ready()
                return await self._mint(request)
            case rpc.DirectCall():
                await self._ready()
                return await self._direct_call(request)
            case rpc.RemoveClient():
                return await self._remove_client(request)
            case rpc.GetTranscript() | rpc.GetEvents() | rpc.ListSessions():
                raise rpc.RpcError("bad_request",
                                   f"openai_link does not serve {type(request).__name__}")
            case _:
                assert_never(request)

    async def _ready(self) -> None:
        if self._closing:
            raise rpc.RpcError("unavailable", f"{self.service.instance} is shutting down")
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await self._running.wait()
        except TimeoutError:
            raise rpc.RpcError("unavailable", f"{self.service.instance} is not ready") from None

    def _start_session(self, request: rpc.StartSession) -> rpc.Reply:
        sid = request.session_id
        if not ids.is_id(sid):
            raise rpc.RpcError("bad_request", f"'session_id' must be 32 lowercase hex (got {sid!r})")
        if not request.mixer_audio:
            raise rpc.RpcError("bad_request", "'mixer_audio' is required: the endpoint where "
                               "the session's mixer publishes aud/mix")
        if request.profile not in PROFILES:
            raise rpc.RpcError("bad_request", f"unknown profile {request.profile!r}")
        existing = self.sessions.get(sid)
        if existing is not None:
            if existing.mixer_audio != request.mixer_audio:  # the mixer was replaced
                self._follow_mixer(request.mixer_audio)
                self._mixers.release(existing.mixer_audio)
                logger.info("%r: %r now mixed at %s", self, existing, request.mixer_audio)
                existing.mixer_audio = request.mixer_audio
            return rpc.Ok()
        self._follow_mixer(request.mixer_audio)
        assert self._http is not None
        instructions = request.instructions
        if request.profile == interview.PROFILE:
            instructions = interview.instructions(instructions)
        session = LinkSession(
            sid, CallSettings(instructions=instructions, voice=request.voice),
            request.mixer_audio, config=self.config, http=self._http, spawn=self._owner.spawn,
            publish_event=self.service.events.publish, publish_audio=self._publish_audio,
            tools=self.tools.for_profile(request.profile),
            tool_context=tools.ToolContext(sid, profile=request.profile,
                                           settings={"questions": request.questions}),
        )
        session.history.seed((e.role, e.text, e.started_at) for e in request.context)
        self.sessions[sid] = session
        self._by_mix_topic[session.mix_topic] = session
        self._mix_sub.subscribe(session.mix_topic)
        self._session_events.follow(sid)
        logger.info("%r started %r (aud/mix at %s)", self, session, request.mixer_audio,
                    extra={"session_id": sid})
        return rpc.Ok()

    async def _add_client(self, request: rpc.AddClient) -> rpc.Reply:
        session = self._session(request.session_id)
        if session.direct is not None:
            raise rpc.RpcError("exists", f"session {session.id} is a direct call: its audio "
                               "goes from the browser to the Realtime API, not through voxrelay")
        session.add_client(request.client_id, request.name, request.role)
        try:
            await session.connect()
        except RealtimeUnavailable as e:
            raise rpc.RpcError("unavailable", str(e)) from e
        return rpc.Ok()

    def _session(self, session_id: str) -> LinkSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise rpc.RpcError("not_found", f"no session {session_id}")
        return session

    async def _mint(self, request: rpc.MintClientSecret) -> rpc.Reply:
        session = self._session(request.session_id)
        assert self._http is not None
        try:
            secret = await calls_api.mint_client_secret(self._http, self.config,
                                                        session.settings, request.ttl_s)
        except RealtimeUnavailable as e:
            raise rpc.RpcError("unavailable", str(e)) from e
        logger.info("%r minted an ephemeral key for %r (expires at %d)", self, session,
                    secret.expires_at, extra={"session_id": session.id})
        return rpc.ClientSecret(value=secret.value, expires_at=secret.expires_at,
                                model=self.config.model)

    async def _direct_call(self, request: rpc.DirectCall) -> rpc.Reply:
        """Post the browser's offer with its ephemeral key, then follow the call's sideband."""
        session = self._session(request.session_id)
        if session.direct is None and session.connected:
            raise rpc.RpcError("exists", f"session {session.id} already talks to the Realtime "
                               "API through voxrelay (relay clients are in it)")
        assert self._http is not None
        try:
            answer = await calls_api.create_direct_call(self._http, self.config, request.sdp,
                                                        request.client_secret)
        except CallRefused as e:
            code = "bad_request" if 400 <= e.status < 500 else "unavailable"
            raise rpc.RpcError(code, str(e)) from e
        except RealtimeUnavailable as e:
            raise rpc.RpcError("unavailable", str(e)) from e
        client = DirectClient(request.client_id, request.name or "guest", answer.call_id)
        try:
            await session.attach_direct(client)
        except RealtimeUnavailable as e:
            await calls_api.hangup(self._http, self.config, answer.call_id)
            raise rpc.RpcError("unavailable", f"the call's sideband: {e}") from e
        return rpc.Answer(sdp=answer.sdp, call_id=answer.call_id)

    async def _remove_client(self, request: rpc.RemoveClient) -> rpc.Reply:
        """A direct client left: its call is hung up. Relay clients leave through the edge
        and the mixer; the link hears of that on the bus (idempotent either way)."""
        session = self.sessions.get(request.session_id)
        if session is not None:
            await session.detach_direct(request.client_id)
        return rpc.Ok()

    async def _stop_session(self, request: rpc.StopSession) -> rpc.Reply:
        session = self.sessions.pop(request.session_id, None)
        if session is None:
            return rpc.Ok()
        self._by_mix_topic.pop(session.mix_topic, None)
        self._mix_sub.unsubscribe(session.mix_topic)
        self._mix_hops.forget(session.mix_topic)
        self._session_events.unfollow(session.id)
        self._mixers.release(session.mixer_audio)
        await session.close()
        logger.info("%r stopped %r (%s)", self, session, request.reason or "no reason given",
                    extra={"session_id": session.id})
        return rpc.Ok()

    # -- audio ------------------------------------------------------------------

    def _follow_mixer(self, endpoint: str) -> None:
        try:
            self._mixers.acquire(endpoint)
        except ValueError as e:
            raise rpc.RpcError("bad_request", str(e)) from e

    def _on_mix_frame(self, parts: list[bytes]) -> None:
        try:
            topic, header, pcm = audio.unpack(parts)
        except audio.FrameError as e:
            FRAMES_DROPPED.labels("malformed").inc()
            raise Rejected("decode", str(e)) from e
        if len(pcm) != audio.FRAME_BYTES:
            FRAMES_DROPPED.labels("frame_size").inc()
            raise Rejected("kind", f"{len(pcm)} bytes of PCM on {topic[:60]!r}")
        session = self._by_mix_topic.get(topic)
        if session is None:
            FRAMES_DROPPED.labels("unknown_session").inc()
            return
        self._mix_hops.observe(topic, header)
        session.on_mix_frame(pcm, header.capture_ns)

    def _on_bus_event(self, event: events.AnyEvent) -> None:
        session = self.sessions.get(event.session_id)
        if session is not None:
            session.on_bus_event(event)

    def _publish_audio(self, parts: list[bytes]) -> bool:
        return send_nowait(self._audio_pub, parts)

    # -- closing ----------------------------------------------------------------

    async def close(self) -> None:
        """Stop intake, close every session (bounded), then sockets. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._mix_reader.stop()
        self._session_events.close()
        sessions = list(self.sessions.values())
        self.sessions.clear()
        self._by_mix_topic.clear()
        await asyncio.gather(*(session.close() for session in sessions))
        await self._owner.aclose()
        if self._http is not None:
            await self._http.close()
        self._mix_sub.close(linger=0)
        self._audio_pub.close(linger=0)
        logger.info("%r closed (%d sessions ended)", self, len(sessions))


async def main(config: LinkConfig) -> None:
    configure_ice_hosts(config.ice_hosts)
    prompt_triggered_checks()
    install_voice_rtp()
    service = Service(config.service)
    link = Link(config, service)
    service.audio_endpoint = link.audio_endpoint
    if not config.key_from_env:
        logger.warning("OPENAI_API_KEY is not set: using the simulator key; only a simulator "
                       "(VOXRELAY_OPENAI_BASE_URL) will accept it")
    logger.info("%r: Realtime API %s, model %s, transport %s, connect timeout %g s", link,
                config.base_url, config.model, config.transport, config.connect_timeout_s)
    await service.run(link.handle, load=link.load, tasks=(link.run,))
