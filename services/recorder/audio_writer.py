"""The recorder's audio files, written on one dedicated thread off the event loop.

The event loop hands every frame of a recorded stream to :meth:`AudioWriter.frame`,
which only queues it: a disk that is slow or full never holds up the loop (its events,
RPC replies and heartbeat). The queue holds at most ``max_queued_frames`` frames (a few
seconds of every stream); beyond that a frame is dropped and counted (``queue_full``),
and the file gets silence in its place, as for any frame lost on the way. Control
messages (a client's name, a session's end) are always queued.

The thread owns every file. At start it repairs what a crash left (``repair_folder``);
then it writes frames as they come, refreshes every file's header
(:data:`FLUSH_INTERVAL_S`) and the index of every session that changed
(:data:`INDEX_INTERVAL_S`), finishes a session's files when told it ended, and all of
them on :meth:`AudioWriter.close`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from .audio_metrics import DROPPED
from .session_audio import SessionAudio, StreamKey, repair_folder

logger = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 2_000
"Frames waiting for the disk (40 s of one stream, 10 s of four) before new ones are dropped."
FLUSH_INTERVAL_S = 1.0
"Every file's header counts what it holds at most this long ago."
INDEX_INTERVAL_S = 2.0
"A session's index.json is rewritten this often while its audio changes."
CLOSE_TIMEOUT_S = 5.0
"On shutdown, how long the loop waits for the thread to finish every file."


@dataclass(frozen=True)
class Frame:
    session_id: str
    key: StreamKey
    seq: int
    capture_ns: int
    pcm: bytes
    dropped_before: int = 0
    "Frames of this stream dropped before they reached the queue, since the last one queued."


@dataclass(frozen=True)
class ClientName:
    session_id: str
    client_id: str
    name: str


@dataclass(frozen=True)
class EndSession:
    session_id: str


@dataclass(frozen=True)
class _Stop:
    pass


Message = Frame | ClientName | EndSession | _Stop


class AudioWriter:
    def __init__(self, root: Path, max_queued_frames: int = MAX_QUEUED_FRAMES,
                 name: str = "recorder", clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.max_queued_frames = max_queued_frames
        self.sessions: dict[str, SessionAudio] = {}
        "Touched by the writer thread only."
        self._queue: queue.Queue[Message] = queue.Queue()
        self._clock = clock
        self._thread = threading.Thread(target=self._run, name=f"{name}-audio-writer",
                                        daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    def frame(self, frame: Frame) -> bool:
        """Queue a frame; False (dropped, counted) if the queue is full or closed."""
        if self._closed or self._queue.qsize() >= self.max_queued_frames:
            DROPPED["queue_full"].inc()
            return False
        self._queue.put_nowait(frame)
        return True

    def name_client(self, session_id: str, client_id: str, name: str) -> None:
        if not self._closed:
            self._queue.put_nowait(ClientName(session_id, client_id, name))

    def end_session(self, session_id: str) -> None:
        """Finish the session's files and write its index (frames queued before go in)."""
        if not self._closed:
            self._queue.put_nowait(EndSession(session_id))

    async def close(self) -> None:
        """Finish every file, then stop the thread (idempotent; waits at most
        :data:`CLOSE_TIMEOUT_S`, without blocking the loop)."""
        if self._closed:
            return
        self._closed = True
        if not self._thread.is_alive():
            return
        self._queue.put_nowait(_Stop())
        await asyncio.to_thread(self._thread.join, CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            logger.warning("AudioWriter(%s): the disk did not finish within %.0f s",
                           self.root, CLOSE_TIMEOUT_S)

    # -- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        self._repair()
        next_flush = self._clock() + FLUSH_INTERVAL_S
        next_index = self._clock() + INDEX_INTERVAL_S
        while True:
            try:
                message = self._queue.get(timeout=max(0.0, next_flush - self._clock()))
            except queue.Empty:
                message = None
            if isinstance(message, _Stop):
                break
            if message is not None:
                self._handle(message)
            now = self._clock()
            if now >= next_flush:
                self._each(SessionAudio.flush)
                next_flush = now + FLUSH_INTERVAL_S
            if now >= next_index:
                self._each(lambda s: s.write_index() if s.changed else None)
                next_index = now + INDEX_INTERVAL_S
        self._each(SessionAudio.close)
        self.sessions.clear()
        logger.info("AudioWriter(%s): stopped", self.root)

    def _handle(self, message: Message) -> None:
        try:
            match message:
                case Frame():
                    self._session(message.session_id).frame(
                        message.key, message.seq, message.capture_ns, message.pcm,
                        message.dropped_before)
                case ClientName():
                    self._session(message.session_id).name_client(message.client_id,
                                                                   message.name)
                case EndSession():
                    session = self.sessions.pop(message.session_id, None)
                    if session is not None:
                        session.close()
                        logger.info("SessionAudio(%s): finished", message.session_id)
                case _Stop():
                    pass
                case _:
                    assert_never(message)
        except Exception:  # a bug here must not stop the recording of every session
            logger.exception("AudioWriter(%s): %s failed", self.root, type(message).__name__)

    def _session(self, session_id: str) -> SessionAudio:
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = SessionAudio(self.root, session_id)
        return session

    def _each(self, action: Callable[[SessionAudio], object]) -> None:
        for session in list(self.sessions.values()):
            try:
                action(session)
            except Exception:
                logger.exception("AudioWriter(%s): session %s", self.root, session.session_id)

    def _repair(self) -> None:
        """Repair what a crash left in every session folder (before writing anything)."""
        try:
            folders = [p for p in self.root.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return
        except OSError as e:
            logger.warning("AudioWriter(%s): cannot list recordings: %s", self.root, e)
            return
        repaired = sum(repair_folder(folder) for folder in folders)
        if repaired:
            logger.info("AudioWriter(%s): repaired %d WAV file(s) cut short", self.root,
                        repaired)
