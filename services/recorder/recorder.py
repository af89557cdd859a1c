"""The recorder service: every bus event into the store, and the recorder's RPCs.

Intake is one ``EventSubscriber`` on ``evt/``: each decoded event is queued on the
:class:`~.writer.BatchWriter` (undecodable messages never get here: the subscriber
drops and counts them). RPCs:

- ``StartSession`` / ``StopSession``: the session row; ``Ok`` once committed. They also
  start and stop recording the session's audio, when it is recorded (``audio.py``).
- ``GetTranscript`` / ``GetEvents`` / ``ListSessions``: commit everything received first,
  so a caller sees every event that reached the recorder before it asked.
  ``GetEvents.after_seq`` is a cursor over the recorder's own row ids (``events.id``),
  not a producer's ``seq``: events from many producers interleave in one session. An
  unknown session has an empty event log; its transcript is ``not_found``.

Nothing lost (zguide's Clone pattern): every event names its stream ``(producer,
epoch)`` and its ``seq`` in it. The recorder keeps, per producer, the highest seq up to
which it has every event (``gaps.py``), and fills gaps from the producer's own outbox
(``GetOutbox``, ``fill.py``): when a seq beyond a gap arrives, and at start-up for every
live instance it hears a heartbeat from, from where the store's record of that stream
stops. The stream rule: a newer epoch from a producer is a new stream (the producer
restarted and counts from seq 1 again; what its old stream still missed is lost and
counted); an older epoch is a late event of a replaced stream, stored but not tracked; a
heartbeat with a new ``started_at`` makes the recorder read that instance's outbox
afresh. Events evicted from an outbox before they could be fetched are counted
(``voxrelay_recorder_events_lost_total``) and logged; the store keeps one row per
``(producer, epoch, seq)``, so the live stream and a fill never double an event.

Shutdown (SIGTERM/SIGINT cancel :meth:`Recorder.run`): keep reading the bus until it
has been quiet for ``INTAKE_QUIET_S`` (at most ``INTAKE_DRAIN_S``) so events already
on their way in are kept, close the subscription, then commit everything queued.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import assert_never

from proto import events, heartbeat, ids, rpc
from services.runtime.bus import EventSubscriber
from services.runtime.service import Service

from .audio import AudioRecorder
from .config import RecorderConfig
from .fill import Filler
from .store import CloseSession, OpenSession
from .writer import BatchWriter, WriteLost, WriterClosed

logger = logging.getLogger(__name__)

INTAKE_QUIET_S = 0.1
"On shutdown, stop reading the bus once no event arrived for this long..."
INTAKE_DRAIN_S = 1.0
"...or after this long in any case."
MAX_EVENTS_PER_CALL = 10_000
MAX_SESSIONS_PER_CALL = 500


class Recorder:
    def __init__(self, service: Service, writer: BatchWriter,
                 audio: AudioRecorder | None = None) -> None:
        self.instance = service.instance
        self._writer = writer
        self.audio = audio
        "The audio of recorded sessions into WAV files (``audio.py``), if recorded at all."
        self.filler = Filler(service.ctx, service.instance, writer)
        self._subscriber = EventSubscriber(service.ctx, service.config.bus, service.instance,
                                           on_event=self.on_event,
                                           on_heartbeat=self._on_heartbeat)
        self._last_event_at = 0.0

    def load(self) -> int:
        """Sessions started and not ended."""
        return self._writer.open_sessions

    def on_event(self, event: events.AnyEvent) -> None:
        self._last_event_at = time.monotonic()
        if self.filler.on_event(event):
            self._writer.submit(event)
        if self.audio is not None:
            self.audio.on_event(event)

    def _on_heartbeat(self, beat: heartbeat.Heartbeat) -> None:
        self.filler.on_heartbeat(beat)
        if self.audio is not None:
            self.audio.on_heartbeat(beat)

    async def run(self) -> None:
        """Record until cancelled; then drain the intake and commit everything."""
        self._subscriber.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._writer.run(), name=f"{self.instance}-writer")
                tg.create_task(self.filler.run(), name=f"{self.instance}-filler")
                if self.audio is not None:
                    tg.create_task(self.audio.run(), name=f"{self.instance}-audio")
        finally:
            await self._drain_intake()
            self._subscriber.close()
            await self._writer.close()
            logger.info("Recorder(%s): stopped", self.instance)

    async def _drain_intake(self) -> None:
        deadline = time.monotonic() + INTAKE_DRAIN_S
        while (now := time.monotonic()) < deadline:
            quiet_for = now - self._last_event_at
            if quiet_for >= INTAKE_QUIET_S:
                return
            await asyncio.sleep(INTAKE_QUIET_S - quiet_for)

    async def handle(self, request: rpc.AnyRequest) -> rpc.Reply:
        try:
            return await self._serve(request)
        except (WriteLost, WriterClosed) as e:
            raise rpc.RpcError("unavailable", str(e)) from e

    async def _serve(self, request: rpc.AnyRequest) -> rpc.Reply:
        match request:
            case rpc.Ping():
                return rpc.Ok()
            case rpc.StartSession():
                await self._writer.commit(OpenSession(
                    _session_id(request.session_id), request.name, request.instructions,
                    request.voice, request.record, time.time(), request.tenant_id))
                logger.info("Recorder(%s): session %s started", self.instance,
                            request.session_id, extra={"session_id": request.session_id})
                if self.audio is not None:
                    self.audio.start_session(request.session_id, request.record,
                                             request.mixer_audio, request.link_audio)
                return rpc.Ok()
            case rpc.StopSession():
                if self.audio is not None:
                    self.audio.stop_session(request.session_id)
                await self._writer.commit(CloseSession(
                    _session_id(request.session_id), request.reason, time.time()))
                return rpc.Ok()
            case rpc.GetTranscript():
                session_id = _session_id(request.session_id)
                await self._writer.commit()
                entries = await self._writer.read(
                    lambda store: store.transcript(session_id, request.tenant_id))
                if entries is None:
                    raise rpc.RpcError("not_found", f"no session {session_id}")
                return rpc.Transcript(entries=entries)
            case rpc.GetEvents():
                return await self._events(request)
            case rpc.ListSessions():
                return await self._sessions(request)
            case (rpc.AddClient() | rpc.RemoveClient() | rpc.MintClientSecret()
                  | rpc.DirectCall()):
                raise rpc.RpcError("bad_request",
                                   f"the recorder does not serve {type(request).__name__}")
            case _:
                assert_never(request)

    async def _events(self, request: rpc.GetEvents) -> rpc.EventLog:
        session_id = _session_id(request.session_id)
        if request.after_seq < 0 or not 0 < request.limit <= MAX_EVENTS_PER_CALL:
            raise rpc.RpcError("bad_request", f"'after_seq' must be >= 0 (got {request.after_seq})"
                               f" and 'limit' in 1..{MAX_EVENTS_PER_CALL} (got {request.limit})")
        await self._writer.commit()
        found, cursor = await self._writer.read(
            lambda store: store.events(session_id, request.after_seq, request.limit,
                                       request.tenant_id))
        return rpc.EventLog(events=found, next_after_seq=cursor)

    async def _sessions(self, request: rpc.ListSessions) -> rpc.SessionList:
        before = request.before
        if not 0 < request.limit <= MAX_SESSIONS_PER_CALL or (
                before is not None and not math.isfinite(before)):
            raise rpc.RpcError("bad_request", f"'limit' must be in 1..{MAX_SESSIONS_PER_CALL} "
                               f"(got {request.limit}) and 'before' a finite time (got {before})")
        await self._writer.commit()
        found = await self._writer.read(lambda store: store.sessions(
            request.limit, before, request.tenant_id, request.session_id))
        return rpc.SessionList(sessions=found)


def _session_id(value: str) -> str:
    if not ids.is_id(value):
        raise rpc.RpcError("bad_request", f"'session_id' must be 32 lowercase hex characters "
                           f"(got {value[:40]!r})")
    return value


async def main(config: RecorderConfig) -> None:
    database = config.database
    writer = await BatchWriter.open(database.open,
                                    flush_interval_s=config.flush_interval_s,
                                    max_pending=config.max_pending,
                                    name=config.service.instance)
    try:
        service = Service(config.service)
        recorder = Recorder(service, writer,
                            AudioRecorder(service.ctx, config.recording, service.instance))
        logger.info("Recorder(%s): recording into %s", service.instance, database)
        await service.run(recorder.handle, load=recorder.load, tasks=(recorder.run,))
    finally:
        await writer.close()
