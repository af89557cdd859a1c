"""The recorder's ears: the audio of recorded sessions, taken off the bus into WAV files.

A session is recorded (``VOXRELAY_RECORD_AUDIO``: every session, those created with
``record``, or none) from its ``StartSession`` until its ``StopSession`` or
``session.ended``. Its streams are published by several processes: each client's
microphone (``aud/in/<session>/<client>``) by the media edge holding it (or signaling,
for a WebSocket client), the mix (``aud/mix/<session>``) by its mixer, the model's voice
(``aud/model/<session>``) by its link. One AUDIO_SUB socket reads them all: while a
session is recorded it is subscribed to the session's three topic prefixes and connected
(:class:`SharedConnections`, counted per session) to the endpoints ``StartSession`` named
and to every live audio publisher the heartbeats announce. Publishers filter by
subscription, so a connection costs nothing for sessions not recorded; and a session
that moves (a client rejoining through another edge, a mixer or link replaced after a
crash) is still heard, wherever its audio is published from. A publisher not heard from
for :data:`PUBLISHER_GONE_S` is let go. When the session ends its topics are unsubscribed
and its connections released: nothing of it stays behind.

Frames are decoded once here and handed to the :class:`.audio_writer.AudioWriter` thread;
client names (for the index) come from ``client.joined`` events. Retention
(``retention.py``) sweeps at start and every few minutes, on a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from proto import audio, events, heartbeat, topics
from services.runtime.sockets import Role, SharedConnections, make_socket
from services.runtime.zmq_loop import Rejected, SocketReader

from .audio_config import RecordingConfig
from .audio_metrics import DROPPED
from .audio_writer import AudioWriter, Frame
from .retention import SWEEP_INTERVAL_S, sweep
from .session_audio import StreamKey

logger = logging.getLogger(__name__)

PUBLISHERS = frozenset({"media_edge", "signaling", "mixer", "openai_link"})
"Service kinds that publish audio on the endpoint their heartbeat announces."
PUBLISHER_GONE_S = 10.0
"A publisher whose heartbeat stopped this long ago is disconnected from."
TICK_S = 1.0
MIX = StreamKey("mix")
MODEL = StreamKey("model")


class AudioRecorder:
    def __init__(self, ctx: zmq.Context[Any], config: RecordingConfig, instance: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.instance = instance
        self.writer = AudioWriter(config.directory, name=instance)
        self.sessions: dict[str, set[str]] = {}
        "Recorded session → the endpoints it holds a connection to."
        self._clock = clock
        self._sub = make_socket(ctx, Role.AUDIO_SUB)
        self._connections = SharedConnections(self._sub, "audio")
        self._reader = SocketReader(self._sub, self._on_frame, f"{instance}-aud-rec", "audio")
        self._publishers: dict[str, tuple[str, float]] = {}
        "Instance → (its audio endpoint, when its heartbeat was last heard)."
        self._dropped: dict[tuple[str, StreamKey], int] = {}
        "Frames refused by the writer's full queue, per stream, until its next one is queued."
        self._closed = False

    def connected_to(self, endpoint: str) -> bool:
        """Whether the socket holds a connection to ``endpoint`` now."""
        return endpoint in self._connections

    def start_session(self, session_id: str, record: bool, *endpoints: str) -> None:
        """Record the session if the settings say so (idempotent: a second call only adds
        ``endpoints``, where its audio is also published)."""
        if self._closed or not self.config.records(record):
            return
        if session_id not in self.sessions:
            self.sessions[session_id] = set()
            for topic in _topics(session_id):
                self._sub.subscribe(topic)
            logger.info("AudioRecorder(%s): recording the audio of session %s into %s",
                        self.instance, session_id, self.config.directory / session_id,
                        extra={"session_id": session_id})
        live = (endpoint for endpoint, _ in self._publishers.values())
        for endpoint in (*endpoints, *live):
            if endpoint:
                self._acquire(session_id, endpoint)

    def stop_session(self, session_id: str) -> None:
        """Stop recording: unsubscribe, release the session's connections, finish its
        files (idempotent)."""
        endpoints = self.sessions.pop(session_id, None)
        if endpoints is None:
            return
        if not self._sub.closed:
            for topic in _topics(session_id):
                self._sub.unsubscribe(topic)
            for endpoint in endpoints:
                self._connections.release(endpoint)
        for key in [k for k in self._dropped if k[0] == session_id]:
            del self._dropped[key]
        self.writer.end_session(session_id)
        logger.info("AudioRecorder(%s): session %s no longer recorded", self.instance,
                    session_id, extra={"session_id": session_id})

    def on_event(self, event: events.AnyEvent) -> None:
        match event:
            case events.ClientJoined() if event.session_id in self.sessions:
                self.writer.name_client(event.session_id, event.client_id, event.name)
            case events.SessionEnded():
                self.stop_session(event.session_id)
            case _:
                pass

    def on_heartbeat(self, beat: heartbeat.Heartbeat) -> None:
        if not beat.audio or beat.service not in PUBLISHERS or beat.instance == self.instance:
            return
        previous = self._publishers.get(beat.instance)
        self._publishers[beat.instance] = (beat.audio, self._clock())
        if previous is not None and previous[0] == beat.audio:
            return
        if previous is not None:  # restarted on another endpoint
            self._let_go(previous[0])
        for session_id in self.sessions:
            self._acquire(session_id, beat.audio)

    async def run(self) -> None:
        """Record until cancelled; then finish every file."""
        self.writer.start()
        self._reader.start()
        try:
            next_sweep = self._clock()
            while True:
                self._expire_publishers()
                if self._clock() >= next_sweep:
                    await self._sweep()
                    next_sweep = self._clock() + SWEEP_INTERVAL_S
                await asyncio.sleep(TICK_S)
        finally:
            self._closed = True
            self._reader.stop()
            for session_id in list(self.sessions):
                self.stop_session(session_id)
            self._sub.close(linger=0)
            await self.writer.close()

    async def _sweep(self) -> None:
        config = self.config
        try:
            await asyncio.to_thread(sweep, config.directory, max_age_s=config.max_age_s,
                                    max_bytes=config.max_bytes,
                                    active=frozenset(self.sessions))
        except OSError as e:
            logger.warning("AudioRecorder(%s): retention sweep failed: %s", self.instance, e)

    def _acquire(self, session_id: str, endpoint: str) -> None:
        held = self.sessions[session_id]
        if endpoint in held:
            return
        try:
            self._connections.acquire(endpoint)
        except ValueError as e:
            logger.warning("AudioRecorder(%s): session %s: %s", self.instance, session_id, e)
            return
        held.add(endpoint)

    def _let_go(self, endpoint: str) -> None:
        """Release ``endpoint`` from every session, unless a live publisher still has it."""
        if any(known == endpoint for known, _ in self._publishers.values()):
            return
        for held in self.sessions.values():
            if endpoint in held:
                held.discard(endpoint)
                self._connections.release(endpoint)

    def _expire_publishers(self) -> None:
        now = self._clock()
        for instance, (endpoint, seen) in list(self._publishers.items()):
            if now - seen >= PUBLISHER_GONE_S:
                del self._publishers[instance]
                self._let_go(endpoint)

    def _on_frame(self, parts: list[bytes]) -> None:
        try:
            raw_topic, header, pcm = audio.unpack(parts)
            topic = topics.parse(raw_topic)
        except (audio.FrameError, topics.TopicError) as e:
            DROPPED["decode"].inc()
            raise Rejected("decode", str(e)) from e
        match topic:
            case topics.Topic(channel="aud/in", session_id=str(session_id),
                              client_id=str(client_id)):
                key = StreamKey("client", client_id)
            case topics.Topic(channel="aud/mix", session_id=str(session_id)):
                key = MIX
            case topics.Topic(channel="aud/model", session_id=str(session_id)):
                key = MODEL
            case _:
                DROPPED["decode"].inc()
                raise Rejected("kind", f"topic {raw_topic[:60]!r}")
        if session_id not in self.sessions:
            return  # sent before the session stopped being recorded
        if header.samples != audio.FRAME_SAMPLES:
            DROPPED["decode"].inc()
            raise Rejected("kind", f"a {header.samples}-sample frame on {raw_topic[:60]!r}")
        stream = (session_id, key)
        dropped = self._dropped.pop(stream, 0)
        if not self.writer.frame(Frame(session_id, key, header.seq, header.capture_ns, pcm,
                                       dropped)):
            self._dropped[stream] = dropped + 1


def _topics(session_id: str) -> tuple[bytes, ...]:
    return (topics.aud_in_session(session_id), topics.aud_mix(session_id),
            topics.aud_model(session_id))
