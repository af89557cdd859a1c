"""The mixer process: its RPC surface, its audio sockets and its sessions.

One AUDIO_SUB socket reads every mixed client's ``aud/in`` (connected to each edge that
holds one, subscribed per client); another follows each session's link on ``aud/model``
(``StartSession.link_audio``): the AI's voice, the reference for echo gating. One
AUDIO_PUB socket, bound here and announced in the heartbeat, carries every session's
``aud/mix``: a frame for each tick that mixed a client's frame; ticks that mixed none
(its clients' edges keep their silence off the bus) send nothing, with
``VOXRELAY_BUS_SKIP_SILENCE`` (the next frame's ``silent_before`` counts them). Frames
are decoded once, at the socket; what cannot be used is dropped and
counted (``voxrelay_bus_messages_rejected_total``, sockets ``aud_in`` and ``aud_model``),
never fatal. Clients starting and stopping to speak go on the bus as
``voice.activity`` events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, assert_never

import zmq

from proto import audio, events, rpc, topics
from proto.ids import check_id
from services.runtime.media import SilenceGate
from services.runtime.metrics import HopMeter
from services.runtime.service import Service
from services.runtime.sockets import Role, SharedConnections, bind, make_socket
from services.runtime.zmq_loop import Rejected, SocketReader, send_nowait

from .activity import Transition
from .clock import SharedClock
from .config import MixerConfig
from .jitter import DropReason
from .metrics import (
    ACTIVITY_CHANGES,
    DROPPED,
    FRAMES_MIXED,
    MODEL_FRAMES_DROPPED,
    SESSIONS,
)
from .session import MixerSession, MixFrame

logger = logging.getLogger(__name__)

SPEAKER = "speaker"
LISTENER = "listener"


class Mixer:
    def __init__(self, ctx: zmq.Context[Any], config: MixerConfig, name: str,
                 publish_event: Callable[[events.Event], object] = lambda event: None) -> None:
        self.config = config
        self.name = name
        self.sessions: dict[str, MixerSession] = {}
        self.clock = SharedClock(name)
        "Every session ticks on this one 20 ms clock: one timer wakeup for all of them."
        self._publish_event = publish_event
        self.audio_pub = make_socket(ctx, Role.AUDIO_PUB)
        self.audio_endpoint = bind(self.audio_pub, config.service.audio_bind)
        self._sub = make_socket(ctx, Role.AUDIO_SUB)
        self._reader = SocketReader(self._sub, self._on_frame, f"{name}-aud-in", "aud_in")
        self._in_hops = HopMeter("edge_to_mixer", on_gap=DROPPED[DropReason.GAP].inc)
        self._model_hops = HopMeter("link_to_mixer")
        self._edges: dict[tuple[str, str], str] = {}
        "(session, client) → the edge endpoint its uplink comes from."
        self._edge_audio = SharedConnections(self._sub, "edge_audio")
        self._model_sub = make_socket(ctx, Role.AUDIO_SUB)
        self._model_reader = SocketReader(self._model_sub, self._on_model_frame,
                                          f"{name}-aud-model", "aud_model")
        self._links: dict[str, str] = {}
        "Session → the link endpoint its aud/model comes from."
        self._link_audio = SharedConnections(self._model_sub, "link_audio")

    def load(self) -> int:
        return len(self.sessions)

    async def run(self) -> None:
        """Read client audio until cancelled, then close."""
        self._reader.start()
        self._model_reader.start()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self.close()

    def close(self) -> None:
        """Stop every session and close the sockets (idempotent)."""
        for session in self.sessions.values():
            session.stop("mixer shutting down")
        self.sessions.clear()
        SESSIONS.set(0)
        self._reader.stop()
        self._model_reader.stop()
        self._sub.close(linger=0)
        self._model_sub.close(linger=0)
        self.audio_pub.close(linger=0)

    async def handle(self, request: rpc.AnyRequest) -> rpc.Reply:
        match request:
            case rpc.Ping():
                pass
            case rpc.StartSession():
                await self.start_session(request.session_id, request.link_audio)
            case rpc.StopSession():
                self.stop_session(request.session_id, request.reason)
            case rpc.AddClient():
                self.add_client(request)
            case rpc.RemoveClient():
                self.remove_client(request.session_id, request.client_id)
            case (rpc.GetTranscript() | rpc.GetEvents() | rpc.ListSessions()
                  | rpc.MintClientSecret() | rpc.DirectCall()):
                raise rpc.RpcError("bad_request", f"{self.name} does not serve "
                                   f"{type(request).__name__}")
            case _:
                assert_never(request)
        return rpc.Ok()

    async def start_session(self, session_id: str, link_audio: str = "") -> None:
        """Create the session and return once its clock ticks (idempotent).

        ``link_audio``: where the session's link publishes ``aud/model`` (the echo
        reference); without it the session mixes without echo gating.
        """
        session = self.sessions.get(session_id)
        if session is None:
            session = MixerSession(_checked(session_id, "session_id"), self.config.session,
                                   on_activity=lambda client, change: self._activity(
                                       session_id, client, change))
            self._follow_link(session_id, link_audio)
            self.sessions[session_id] = session
            SESSIONS.set(len(self.sessions))
            gate = SilenceGate(self.config.service.skip_silence, tail_frames=0)
            session.start(lambda frame: self._publish(session, gate, frame), self.clock)
            logger.info("MixerSession(%s): started on %s (echo reference: %s)", session_id,
                        self.name, self._links.get(session_id, "none"),
                        extra={"session_id": session_id})
        else:
            self._follow_link(session_id, link_audio)
        await session.wait_ticking()

    def stop_session(self, session_id: str, reason: str = "") -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        SESSIONS.set(len(self.sessions))
        session.stop(reason)
        for client_id in session.clients:
            self._unroute(session_id, client_id)
        self._unfollow_link(session_id)

    def add_client(self, request: rpc.AddClient) -> None:
        session = self._session(request.session_id)
        client_id = _checked(request.client_id, "client_id")
        if request.role == LISTENER:  # heard nothing from, so never mixed
            self.remove_client(session.session_id, client_id)
            return
        if request.role != SPEAKER:
            raise rpc.RpcError("bad_request", f"'role' must be {SPEAKER!r} or {LISTENER!r} "
                               f"(got {request.role!r})")
        key = (session.session_id, client_id)
        previous = self._edges.get(key)
        if previous == request.edge_audio:
            return
        self._connect(request.edge_audio)
        self._edges[key] = request.edge_audio
        if previous is None:
            self._sub.subscribe(topics.aud_in(*key))
            session.add_client(client_id)
        else:  # the client came back through another edge
            self._disconnect(previous)

    def remove_client(self, session_id: str, client_id: str) -> None:
        session = self._session(session_id)
        if session.remove_client(client_id):
            self._unroute(session_id, client_id)

    def _session(self, session_id: str) -> MixerSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise rpc.RpcError("not_found", f"{self.name} has no session {session_id!r}")
        return session

    def _unroute(self, session_id: str, client_id: str) -> None:
        endpoint = self._edges.pop((session_id, client_id), None)
        if endpoint is not None:
            topic = topics.aud_in(session_id, client_id)
            self._sub.unsubscribe(topic)
            self._in_hops.forget(topic)
            self._disconnect(endpoint)

    def _connect(self, endpoint: str) -> None:
        if not endpoint:
            raise rpc.RpcError("bad_request", "'edge_audio' is required for a speaker")
        _acquire(self._edge_audio, endpoint)

    def _disconnect(self, endpoint: str) -> None:
        self._edge_audio.release(endpoint)

    def _follow_link(self, session_id: str, endpoint: str) -> None:
        """Receive the session's ``aud/model`` from ``endpoint`` (nothing if echo gating is off)."""
        if not endpoint or not self.config.session.echo.enabled:
            return
        if self._links.get(session_id) == endpoint:
            return
        _acquire(self._link_audio, endpoint)
        if session_id in self._links:  # the session moved to another link
            self._link_audio.release(self._links[session_id])
        else:
            self._model_sub.subscribe(topics.aud_model(session_id))
        self._links[session_id] = endpoint

    def _unfollow_link(self, session_id: str) -> None:
        endpoint = self._links.pop(session_id, None)
        if endpoint is not None:
            topic = topics.aud_model(session_id)
            self._model_sub.unsubscribe(topic)
            self._model_hops.forget(topic)
            self._link_audio.release(endpoint)

    def _on_model_frame(self, parts: list[bytes]) -> None:
        try:
            raw_topic, header, pcm = audio.unpack(parts)
            topic = topics.parse(raw_topic)
        except (audio.FrameError, topics.TopicError) as e:
            MODEL_FRAMES_DROPPED.labels("decode").inc()
            raise Rejected("decode", str(e)) from e
        match topic:
            case topics.Topic(channel="aud/model", session_id=str(session_id)) \
                    if header.samples == audio.FRAME_SAMPLES:
                session = self.sessions.get(session_id)
                if session is None:
                    MODEL_FRAMES_DROPPED.labels("unknown").inc()
                else:
                    self._model_hops.observe(raw_topic, header)
                    session.receive_model(pcm, header.silent_before)
            case _:
                MODEL_FRAMES_DROPPED.labels("decode").inc()
                raise Rejected("kind", f"a {header.samples}-sample frame on {raw_topic[:80]!r}")

    def _activity(self, session_id: str, client_id: str, change: Transition) -> None:
        ACTIVITY_CHANGES.labels(str(change.active).lower()).inc()
        logger.debug("MixerSession(%s): client %s %s speaking", session_id, client_id,
                     "started" if change.active else "stopped")
        self._publish_event(events.VoiceActivity(session_id=session_id, client_id=client_id,
                                                 active=change.active, at=change.at_ns / 1e9))

    def _on_frame(self, parts: list[bytes]) -> None:
        try:
            raw_topic, header, pcm = audio.unpack(parts)
            topic = topics.parse(raw_topic)
        except (audio.FrameError, topics.TopicError) as e:
            DROPPED[DropReason.DECODE].inc()
            raise Rejected("decode", str(e)) from e
        match topic:
            case topics.Topic(channel="aud/in", session_id=str(session_id),
                              client_id=str(client_id)) if header.samples == audio.FRAME_SAMPLES:
                session = self.sessions.get(session_id)
                if session is None:
                    DROPPED[DropReason.UNKNOWN].inc()
                else:
                    self._in_hops.observe(raw_topic, header)
                    session.receive(client_id, header.seq, header.capture_ns, pcm,
                                    header.silent_before)
            case _:
                DROPPED[DropReason.DECODE].inc()
                raise Rejected("kind", f"a {header.samples}-sample frame on {raw_topic[:80]!r}")

    def _publish(self, session: MixerSession, gate: SilenceGate, frame: MixFrame) -> None:
        silent_before = admit(gate, frame)
        if silent_before is None:
            return
        send_nowait(self.audio_pub, audio.pack(session.topic, frame.seq, frame.capture_ns,
                                               frame.pcm, silent_before))
        FRAMES_MIXED.inc()


def admit(gate: SilenceGate, frame: MixFrame) -> int | None:
    """A mixed frame's ``silent_before``, or None to keep it off the bus: it mixed no
    client's frame and silence stays off the bus (the link makes that silence itself, on
    its own clock). Slots the session left empty count as such silence too, not as
    frames lost."""
    gate.skip(frame.empty_before)
    return gate.admit_sound(frame.speakers > 0)


def _acquire(connections: SharedConnections, endpoint: str) -> None:
    try:
        connections.acquire(endpoint)
    except ValueError as e:
        raise rpc.RpcError("bad_request", str(e)) from e


def _checked(value: str, what: str) -> str:
    try:
        return check_id(value, what)
    except ValueError as e:
        raise rpc.RpcError("bad_request", str(e)) from e


async def main(config: MixerConfig) -> None:
    service = Service(config.service)
    mixer = Mixer(service.ctx, config, service.instance, service.events.publish)
    service.audio_endpoint = mixer.audio_endpoint
    service.tend_publisher(mixer.audio_pub)
    await service.run(mixer.handle, load=mixer.load, tasks=(mixer.run,))
