"""One conversation as the link holds it: its clients, its Realtime connection, its events.

The connection is opened when the first client joins (``connect``) and lives in a task
of the link's TaskOwner. Mixer frames go to the connection's uplink track once it is
usable; the model's frames go out on ``aud/model/<session>``; Realtime events go through
the session's :class:`Translator` onto the bus. If the API ends the call, the session
says so on the bus and the next client to join opens a new connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from proto import audio, events, topics
from services.runtime.metrics import frame_age

from . import realtime_events as rt
from .attribution import Attribution
from .calls_api import CallSettings
from .config import LinkConfig
from .errors import RealtimeUnavailable
from .metrics import DISCONNECTS, FRAMES, FRAMES_DROPPED, count_realtime_error
from .realtime_rtc import RealtimeConnection
from .translate import Translator
from .turn_timing import TurnTiming

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 6.0
"How long closing may take (hang-up and peer close are bounded below this)."

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


class LinkSession:
    def __init__(
        self,
        session_id: str,
        settings: CallSettings,
        mixer_audio: str,
        *,
        config: LinkConfig,
        http: aiohttp.ClientSession,
        spawn: Spawn,
        publish_event: Callable[[events.Event], object],
        publish_audio: Callable[[list[bytes]], bool],
    ) -> None:
        self.id = session_id
        self.settings = settings
        self.mixer_audio = mixer_audio
        self.mix_topic = topics.aud_mix(session_id)
        self.model_topic = topics.aud_model(session_id)
        self.config = config
        self.attribution = Attribution()
        "The clients, in join order, and when each spoke (from the mixer's voice.activity)."
        self.translator = Translator(session_id, speaker=self.attribution.speaker,
                                     secret=config.api_key.reveal())
        self.timing = TurnTiming(session_id, name_of=self.attribution.name_of)
        "Where each exchange's time went (a turn.summary per reply)."
        self._age_at_model = frame_age("model")
        self._http = http
        self._spawn = spawn
        self._publish_event = publish_event
        self._publish_audio = publish_audio
        self._connection: RealtimeConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._model_seq = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"LinkSession({self.id})"

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.ready

    def add_client(self, client_id: str, name: str, role: str = "speaker") -> None:
        self.attribution.add_client(client_id, name, role)

    def on_bus_event(self, event: events.AnyEvent) -> None:
        """Voice activity, presence and edges' reports of this session's clients."""
        self.timing.bus_event(event)
        match event:
            case events.VoiceActivity(client_id=client_id, active=active, at=at):
                self.attribution.observe(client_id, active, at or event.ts)
            case events.ClientJoined(client_id=client_id):
                self.attribution.present(client_id, True)
            case events.ClientLeft(client_id=client_id, reason=reason) if reason != "replaced":
                self.attribution.present(client_id, False)
            case _:
                pass

    async def connect(self) -> None:
        """Open the Realtime connection unless it is open; raises RealtimeUnavailable."""
        async with self._connect_lock:
            if self._closed:
                raise RealtimeUnavailable(f"session {self.id} is stopping")
            if self.connected:
                return
            connection = RealtimeConnection(
                self.config, self._http, self.settings, name=self.id,
                on_event=self._on_realtime_event, on_audio=self._on_model_audio)
            connection.uplink.on_sent = self._uplink_sent
            self._connection = connection
            self._task = self._spawn(self._carry(connection), f"realtime-{self.id}")
            try:
                await connection.wait_ready()
            except RealtimeUnavailable as e:
                if self._connection is connection:
                    self._connection = None
                if not self._closed:
                    self._publish_event(events.ErrorEvent(
                        session_id=self.id, code="realtime_unavailable", message=str(e),
                        source="openai_link"))
                raise

    async def _carry(self, connection: RealtimeConnection) -> None:
        try:
            await connection.run()
        finally:
            if self._connection is connection:
                self._connection = None
                if not self._closed:
                    self._disconnected(connection)

    def _disconnected(self, connection: RealtimeConnection) -> None:
        DISCONNECTS.inc()
        logger.warning("%r: %r ended; the next client to join reconnects", self, connection)
        self._publish_event(events.ErrorEvent(
            session_id=self.id, code="realtime_disconnected",
            message="the Realtime API ended the call", source="openai_link"))
        for event in self.translator.reset():
            self._publish_event(event)

    # -- media and events -------------------------------------------------------

    def on_mix_frame(self, pcm: bytes, capture_ns: int) -> None:
        connection = self._connection
        if connection is None or not connection.ready:
            FRAMES_DROPPED.labels("not_connected").inc()
            return
        FRAMES.labels("uplink").inc()
        connection.uplink.push(pcm, capture_ns)

    def _uplink_sent(self, capture_ns: int) -> None:
        self._age_at_model(capture_ns)
        self.timing.uplink_age(max(0, time.time_ns() - capture_ns) / 1e9)

    def _on_model_audio(self, pcm: bytes) -> None:
        self.timing.model_frame(pcm)
        self._model_seq += 1
        if self._publish_audio(audio.pack(self.model_topic, self._model_seq, time.time_ns(), pcm)):
            FRAMES.labels("downlink").inc()
        else:
            FRAMES_DROPPED.labels("downlink_hwm").inc()

    def _on_realtime_event(self, event: rt.AnyServerEvent | rt.OtherEvent, text: str) -> None:
        if isinstance(event, rt.SpeechStopped):
            self.timing.speech_stopped()
        for produced in self.translator.translate(event, text):
            self._publish_event(produced)
            if isinstance(produced, events.ErrorEvent) and produced.source == "openai":
                count_realtime_error(produced.code)
            summary = self.timing.translated(produced)
            if summary is not None:
                self._publish_event(summary)

    # -- closing ----------------------------------------------------------------

    async def close(self) -> None:
        """Hang up and close the connection, if any (idempotent)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)
            if not done:
                logger.warning("%r: the Realtime connection did not close in %s s", self,
                               CLOSE_TIMEOUT_S)
        self._connection = None
