"""One conversation as the link holds it: its clients, its Realtime connection, its events.

The connection is opened when the first client joins (``connect``) and lives in a task
of the link's TaskOwner. Mixer frames go to the connection's uplink track once it is
usable; the model's frames go out on ``aud/model/<session>``; Realtime events go through
the session's :class:`Translator` onto the bus, and the completed transcripts into the
session's :class:`ConversationHistory`.

A call can drop under a conversation (the API ended it, the network failed it; not the
link hanging up). The session then says so on the bus (``error`` ``realtime_disconnected``,
``ai.state`` ``idle``) and, while any of its clients is present (joined through
``AddClient``, not gone per ``client.left``), reopens it by itself: attempts spaced by
exponential backoff with full jitter (:mod:`.backoff`), each bounded by the connect
timeout, counted in ``voxrelay_link_realtime_reconnects_total``. Every new call after
the first is given the conversation so far (:mod:`.history`) before it is used, so the
model remembers it; ``ai.state`` ``listening`` says the conversation is back. An outage
that outlasts the backoff's limit is reported as ``error`` ``realtime_unavailable``;
then, as when nobody was present, the next client to join (``AddClient``, or a
``client.joined`` of a known client) reconnects.

Roll-over: the API ends a call after 60 minutes (``session_expired``). A call older than
``VOXRELAY_OPENAI_ROLLOVER_AFTER_S`` (55 min) is replaced before that, make before
break: at its first quiet moment (:attr:`Translator.quiet` for ``ROLLOVER_QUIET_S``:
nobody speaking, no reply coming or playing) the session opens a new call over the same
transport with the conversation so far, and once that one is usable, and it is still
quiet, the mix goes to the new call and the old one is hung up. No user turn is cut:
the swap never happens while one is in progress, and the old call hears everything
until the swap. If no quiet moment comes within ``VOXRELAY_OPENAI_ROLLOVER_GRACE_S``
(4 min) the call is replaced regardless; if the new call cannot be opened, the old one
carries on and the roll-over is tried again a minute later (counted in
``voxrelay_link_realtime_rollovers_total{result}``).

Transport (``VOXRELAY_OPENAI_TRANSPORT``): with ``webrtc`` or ``websocket`` every call
uses that one. With ``auto`` a session tries WebRTC first; when that is not usable
within ``VOXRELAY_OPENAI_WEBRTC_TIMEOUT_S`` (default the 8 s connect timeout) or fails,
the session opens a WebSocket connection (:mod:`.realtime_ws`) instead, logs a warning
that names the session and why, and counts ``voxrelay_fallbacks_total{kind=
"realtime_websocket"}`` once it is usable. A refusal by the API itself (a non-201
answer to the call: bad key, quota, model) is not a transport problem and is not
retried over WebSocket. Once a transport has worked for a session, its reconnects use
that one only.

Direct mode (:meth:`LinkSession.attach_direct`): a browser holds its own WebRTC call to
the API (made with an ephemeral key, its offer proxied through signaling and the link);
the session then carries that call's sideband WebSocket instead of a call of its own
(``GET {base}/realtime?call_id=…``, standard key: :class:`.realtime_ws.RealtimeWsConnection`
with ``call_id``), so the call's events are translated, recorded and its tools run here
exactly as in relay mode. The link says ``client.joined`` / ``client.left`` for the browser
(transport ``direct``); no roll-over (the browser's call is the browser's); a dropped
sideband is re-attached with backoff while the call lives, and a 404 (the call is over)
ends direct mode. ``detach_direct`` (the client left) and closing hang the call up.
A session holds either relay clients or one direct call, not both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiohttp

from proto import audio, events, topics
from services.runtime.media import SilenceGate
from services.runtime.metrics import frame_age
from services.tools import Tool, ToolContext

from . import realtime_events as rt
from .attribution import Attribution
from .backoff import Backoff
from . import calls_api
from .calls_api import CallSettings
from .config import LinkConfig
from .errors import CallRefused, RealtimeUnavailable
from .history import ConversationHistory
from .metrics import (
    DISCONNECTS,
    FALLBACKS,
    FRAMES_DOWNLINK,
    FRAMES_DROPPED,
    FRAMES_UPLINK,
    RECONNECTS,
    ROLLOVERS,
    count_realtime_error,
)
from .realtime_rtc import RealtimeConnection
from .realtime_ws import RealtimeWsConnection
from .tool_calls import ToolCalls
from .translate import Translator
from .turn_timing import TurnTiming

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 6.0
"How long closing may take (hang-up and peer close are bounded below this)."
ROLLOVER_QUIET_S = 1.0
"How long the conversation must have been quiet for a call to be replaced."
ROLLOVER_POLL_S = 0.1
ROLLOVER_RETRY_S = 60.0
"After a roll-over whose new call could not be opened: when to try again."

Connection = RealtimeConnection | RealtimeWsConnection

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


@dataclasses.dataclass(frozen=True)
class DirectClient:
    """A browser in direct mode: its own WebRTC call to the API, whose sideband we hold."""

    client_id: str
    name: str
    call_id: str


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
        backoff: Backoff | None = None,
        rng: Callable[[], float] = random.random,
        tools: Sequence[Tool] = (),
        tool_context: ToolContext | None = None,
    ) -> None:
        self.id = session_id
        self.tool_calls = ToolCalls(tools, tool_context or ToolContext(session_id), spawn=spawn,
                                    send=self._send_to_model, publish_event=publish_event)
        "The tools the model may call, run here (see :mod:`.tool_calls`)."
        self.settings = dataclasses.replace(settings, tools=self.tool_calls.schemas())
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
        self.history = ConversationHistory()
        "The completed transcripts, replayed to every new call after the first."
        self.backoff = backoff or Backoff()
        "When to retry after the call dropped."
        self._rng = rng
        self._age_at_model = frame_age("model")
        self._http = http
        self._spawn = spawn
        self._publish_event = publish_event
        self._publish_audio = publish_audio
        self._model_gate = SilenceGate(config.service.skip_silence)
        "Keeps the model's silence off the bus (the edges play it as silence)."
        self._connection: Connection | None = None
        self.transport: str | None = None if config.transport == "auto" else config.transport
        "The transport this session's calls use; None until one has worked ('auto')."
        self._task: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._rollover: asyncio.Task[None] | None = None
        self._dropped = False
        "The last call dropped: the next usable one is a reconnection."
        self._connect_lock = asyncio.Lock()
        self._model_seq = 0
        self._closed = False
        self.direct: DirectClient | None = None
        "The browser whose own call this session follows (direct mode), if any."

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
                if self._dropped and self.attribution.anyone_present():
                    self._start_reconnecting()
            case events.ClientLeft(client_id=client_id, reason=reason) if reason != "replaced":
                self.attribution.present(client_id, False)
            case _:
                pass

    async def connect(self) -> None:
        """Open the Realtime connection unless it is open (a client joined); raises
        RealtimeUnavailable, and says so on the bus."""
        try:
            await self._open()
        except RealtimeUnavailable as e:
            if not self._closed:
                self._publish_event(events.ErrorEvent(
                    session_id=self.id, code="realtime_unavailable", message=str(e),
                    source="openai_link"))
            raise

    async def _open(self) -> bool:
        """Open a new connection unless one is usable; True if this opened it."""
        async with self._connect_lock:
            if self._closed:
                raise RealtimeUnavailable(f"session {self.id} is stopping")
            if self.connected:
                return False
            connection = await self._open_by_transport()
            self._plan_rollover(connection, self.config.rollover_after_s)
            if self._dropped:
                self._dropped = False
                logger.info("%r: the conversation carries on over %r (%d entries replayed)",
                            self, connection, len(connection.context))
                for event in self.translator.resume():
                    self._publish_event(event)
            return True

    async def _open_by_transport(self) -> Connection:
        """A usable connection over this session's transport, or WebRTC then WebSocket
        (the direct call's sideband, in direct mode)."""
        if self.direct is not None:
            return await self._attempt("sideband", self.config)
        if self.transport is not None:
            return await self._attempt(self.transport, self.config)
        rtc_config = dataclasses.replace(self.config,
                                         connect_timeout_s=self.config.webrtc_attempt_s)
        try:
            connection = await self._attempt("webrtc", rtc_config)
        except CallRefused:
            raise  # the API said no: another transport would be told the same
        except RealtimeUnavailable as rtc_error:
            if self._closed:
                raise
            logger.warning("%r: WebRTC to the Realtime API is not usable (%s); falling back "
                           "to the WebSocket transport", self, rtc_error,
                           extra={"session_id": self.id})
            try:
                connection = await self._attempt("websocket", self.config)
            except RealtimeUnavailable as ws_error:
                raise RealtimeUnavailable(
                    f"{rtc_error}; the WebSocket fallback failed too: {ws_error}") from ws_error
            FALLBACKS.labels("realtime_websocket").inc()
            logger.warning("%r: the Realtime connection runs over WebSocket", self,
                           extra={"session_id": self.id})
        self.transport = "websocket" if isinstance(connection, RealtimeWsConnection) else "webrtc"
        return connection

    async def _attempt(self, transport: str, config: LinkConfig) -> Connection:
        kind = RealtimeWsConnection if transport in ("websocket", "sideband") else RealtimeConnection
        connection = self._new_connection(kind, config)
        self._connection = connection
        self._task = self._spawn(self._carry(connection), f"realtime-{self.id}")
        try:
            await connection.wait_ready()
        except RealtimeUnavailable:
            if self._connection is connection:
                self._connection = None
            raise
        if self._connection is not connection or not connection.ready:
            raise RealtimeUnavailable("the call ended as it became usable")
        return connection

    def _new_connection(self, kind: type[Connection], config: LinkConfig) -> Connection:
        """A call of this session (not opened yet), given the conversation so far."""
        sideband = {"call_id": self.direct.call_id} if self.direct is not None else {}
        connection = kind(config, self._http, self.settings, name=self.id,
                          on_event=self._on_realtime_event, on_audio=self._on_model_audio,
                          context=self.history.replay(), **sideband)
        connection.uplink.on_sent = self._uplink_sent
        return connection

    async def _carry(self, connection: Connection) -> None:
        try:
            await connection.run()
        finally:
            if self._connection is connection:
                self._connection = None
                if connection.became_ready and not self._closed:
                    self._disconnected(connection)

    def _disconnected(self, connection: Connection) -> None:
        if self.direct is not None:
            # The sideband closed: the call ended (the usual way a direct call ends), or
            # only the socket did. Attaching again tells which.
            logger.info("%r: %r closed; attaching again while the call lives", self,
                        connection, extra={"session_id": self.id})
            for event in self.translator.reset():
                self._publish_event(event)
            self._start_reconnecting()
            return
        DISCONNECTS.inc()
        self._dropped = True
        self._publish_event(events.ErrorEvent(
            session_id=self.id, code="realtime_disconnected",
            message="the Realtime API ended the call", source="openai_link"))
        for event in self.translator.reset():
            self._publish_event(event)
        if self.attribution.anyone_present():
            logger.warning("%r: %r ended; reconnecting", self, connection)
            self._start_reconnecting()
        else:
            logger.warning("%r: %r ended with no client present; the next client to join "
                           "reconnects", self, connection)

    # -- reconnecting -----------------------------------------------------------

    def _start_reconnecting(self) -> None:
        if self._closed or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        self._reconnecting = self._spawn(self._reconnect(), f"reconnect-{self.id}")

    async def _reconnect(self) -> None:
        """Reopen the dropped call, with backoff, while anyone is here to talk."""
        outage = self.backoff.outage(self._rng)
        delay = outage.next_delay()
        error: RealtimeUnavailable | None = None
        while delay is not None:
            await asyncio.sleep(delay)
            if self._closed or self.connected:
                return  # stopped, or a joining client reconnected first
            if not self.attribution.anyone_present():
                logger.info("%r: every client left; the next client to join reconnects", self)
                return
            try:
                opened = await self._open()
            except RealtimeUnavailable as e:
                if isinstance(e, CallRefused) and self.direct is not None:
                    self._direct_over(self.direct, "call_ended", str(e))  # nothing to follow
                    return
                error = e
                delay = outage.next_delay()
                RECONNECTS.labels("failed" if delay is not None else "gave_up").inc()
                logger.warning("%r: reconnect attempt %d failed (%s)%s", self, outage.attempts,
                               e, "" if delay is None else f"; next in {delay:.2f} s")
                continue
            if opened:
                RECONNECTS.labels("ok").inc()
                logger.info("%r: reconnected after %.2f s (attempt %d)", self, outage.elapsed_s,
                            outage.attempts)
            return
        if self._closed:
            return
        message = (f"gave up reconnecting after {outage.attempts} attempts over "
                   f"{outage.elapsed_s:.0f} s: {error}")
        logger.error("%r: %s; the next client to join reconnects", self, message)
        self._publish_event(events.ErrorEvent(
            session_id=self.id, code="realtime_unavailable", message=message,
            source="openai_link"))

    # -- direct mode --------------------------------------------------------------

    async def attach_direct(self, client: DirectClient) -> None:
        """Follow the browser's own call ``client.call_id`` through its sideband (a
        direct call made again replaces the one before, which is hung up); raises
        RealtimeUnavailable if the sideband cannot be had."""
        previous = self.direct
        async with self._connect_lock:
            if self._closed:
                raise RealtimeUnavailable(f"session {self.id} is stopping")
            self._let_go()
            self.direct = client
            self._dropped = False
        if previous is not None and previous.call_id != client.call_id:
            self._spawn(self._hang_up(previous.call_id), f"hangup-{self.id}")
        self.add_client(client.client_id, client.name)
        self._publish_event(events.ClientJoined(
            session_id=self.id, client_id=client.client_id, name=client.name,
            transport="direct"))
        try:
            await self.connect()
        except RealtimeUnavailable as e:
            self._direct_over(client, "sideband_unavailable", str(e))
            raise
        logger.info("%r follows the direct call %s of %s", self, client.call_id, client.name,
                    extra={"session_id": self.id})

    async def detach_direct(self, client_id: str) -> bool:
        """The direct client left: hang its call up. False if it is not this session's."""
        client = self.direct
        if client is None or client.client_id != client_id:
            return False
        self._direct_over(client, "left", "the client left")
        await self._hang_up(client.call_id)
        return True

    def _direct_over(self, client: DirectClient, reason: str, detail: str) -> None:
        """Stop following ``client``'s call (it is over, or it is being hung up)."""
        if self.direct is not client:
            return
        self.direct = None
        self._let_go()
        self.attribution.present(client.client_id, False)
        self._publish_event(events.ClientLeft(session_id=self.id, client_id=client.client_id,
                                              reason=reason))
        logger.info("%r no longer follows the direct call %s (%s)", self, client.call_id,
                    detail, extra={"session_id": self.id})

    def _let_go(self) -> None:
        """Close the current connection without calling it a drop."""
        task, self._task = self._task, None
        self._connection = None  # not current: its end is not "dropped"
        if task is not None and not task.done():
            task.cancel()

    async def _hang_up(self, call_id: str) -> None:
        await calls_api.hangup(self._http, self.config, call_id)

    # -- rolling over before the API's session cap -------------------------------

    def _plan_rollover(self, connection: Connection, after_s: float) -> None:
        if self.config.rollover_after_s <= 0 or self._closed or self.direct is not None:
            return
        if self._rollover is not None and not self._rollover.done():
            self._rollover.cancel()
        self._rollover = self._spawn(self._roll_over_when_due(connection, after_s),
                                     f"rollover-{self.id}")

    async def _roll_over_when_due(self, old: Connection, after_s: float) -> None:
        await asyncio.sleep(after_s)
        forced_at = time.monotonic() + self.config.rollover_grace_s
        if not await self._quiet_moment(old, forced_at):
            return  # the call ended meanwhile (a drop reconnects; a close ends it all)
        forced = time.monotonic() >= forced_at
        try:
            new, new_task = await self._connection_like(old)
        except RealtimeUnavailable as e:
            ROLLOVERS.labels("failed").inc()
            logger.warning("%r: could not open a call to replace %r (%s); it carries on, "
                           "next try in %.0f s", self, old, e, ROLLOVER_RETRY_S)
            if self._connection is old:
                self._plan_rollover(old, ROLLOVER_RETRY_S)
            return
        if not forced and not await self._quiet_moment(old, forced_at):
            new_task.cancel()  # the old call ended meanwhile: the session reconnects
            return
        async with self._connect_lock:
            if self._connection is not old or self._closed:
                new_task.cancel()
                return
            old_task, self._task = self._task, new_task
            self._connection = new
        ROLLOVERS.labels("forced" if forced else "quiet").inc()
        logger.info("%r: %r replaced by %r before the session cap (%s)", self, old, new,
                    "forced: no quiet moment" if forced else "at a quiet moment",
                    extra={"session_id": self.id})
        self._plan_rollover(new, self.config.rollover_after_s)
        if old_task is not None:
            old_task.cancel()  # hangs the old call up; it is not current: no "dropped"

    async def _quiet_moment(self, connection: Connection, forced_at: float) -> bool:
        """Until the conversation has been quiet for ROLLOVER_QUIET_S, or ``forced_at``;
        False if ``connection`` stopped being the session's call meanwhile."""
        quiet_since: float | None = None
        while self._connection is connection and not self._closed:
            now = time.monotonic()
            if not self.translator.quiet:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            if now >= forced_at or (quiet_since is not None
                                    and now - quiet_since >= ROLLOVER_QUIET_S):
                return True
            await asyncio.sleep(ROLLOVER_POLL_S)
        return False

    async def _connection_like(self, old: Connection
                               ) -> tuple[Connection, asyncio.Task[None]]:
        """A new usable call over ``old``'s transport, given the conversation so far, and
        the task that carries it; not yet the session's call."""
        connection = self._new_connection(type(old), self.config)
        task = self._spawn(self._carry(connection), f"realtime-{self.id}")
        try:
            await connection.wait_ready()
        except RealtimeUnavailable:
            task.cancel()
            raise
        if not connection.ready:
            task.cancel()
            raise RealtimeUnavailable("the new call ended as it became usable")
        return connection, task

    # -- media and events -------------------------------------------------------

    def on_mix_frame(self, pcm: bytes, capture_ns: int) -> None:
        connection = self._connection
        if connection is None or not connection.ready:
            FRAMES_DROPPED.labels("not_connected").inc()
            return
        if self.direct is not None:  # the browser sends its own audio
            FRAMES_DROPPED.labels("direct_call").inc()
            return
        FRAMES_UPLINK.inc()
        connection.uplink.push(pcm, capture_ns)

    def _uplink_sent(self, capture_ns: int) -> None:
        self._age_at_model(capture_ns)
        self.timing.uplink_age(max(0, time.time_ns() - capture_ns) / 1e9)

    def _on_model_audio(self, pcm: bytes) -> None:
        self.timing.model_frame(pcm)
        self._model_seq += 1
        silent_before = self._model_gate.admit(pcm)
        if silent_before is None:
            return
        if self._publish_audio(audio.pack(self.model_topic, self._model_seq, time.time_ns(), pcm,
                                          silent_before)):
            FRAMES_DOWNLINK.inc()
        else:
            FRAMES_DROPPED.labels("downlink_hwm").inc()

    def _on_realtime_event(self, event: rt.AnyServerEvent | rt.OtherEvent, text: str) -> None:
        if isinstance(event, rt.SpeechStopped):
            self.timing.speech_stopped()
        for produced in self.translator.translate(event, text):
            self._publish_event(produced)
            self.history.observe(produced)
            if isinstance(produced, events.ErrorEvent) and produced.source == "openai":
                count_realtime_error(produced.code)
            summary = self.timing.translated(produced)
            if summary is not None:
                self._publish_event(summary)
        self.tool_calls.observe(event)

    def _send_to_model(self, event: dict[str, Any]) -> bool:
        """A client event for the current call (False: no usable call, not sent)."""
        connection = self._connection
        if connection is None or not connection.send(event):
            logger.warning("%r: no usable Realtime call for %s; not sent", self, event["type"],
                           extra={"session_id": self.id})
            return False
        if event["type"] == "response.create":
            self.timing.response_requested()
        return True

    # -- closing ----------------------------------------------------------------

    async def close(self) -> None:
        """Stop reconnecting; hang up and close the connection, if any, and a direct
        call (idempotent)."""
        self._closed = True
        direct, self.direct = self.direct, None
        if direct is not None:
            await self._hang_up(direct.call_id)
        self.tool_calls.close()
        rollover, self._rollover = self._rollover, None
        if rollover is not None and not rollover.done():
            rollover.cancel()
            await asyncio.wait({rollover}, timeout=CLOSE_TIMEOUT_S)
        reconnecting, self._reconnecting = self._reconnecting, None
        if reconnecting is not None and not reconnecting.done():
            reconnecting.cancel()
            await asyncio.wait({reconnecting}, timeout=CLOSE_TIMEOUT_S)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)
            if not done:
                logger.warning("%r: the Realtime connection did not close in %s s", self,
                               CLOSE_TIMEOUT_S)
        self._connection = None
