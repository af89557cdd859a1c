"""The recorder's durable store: sessions, every event, transcripts (SQLite for now).

:class:`Store` is the whole interface the rest of the recorder uses, so a PostgreSQL
store can stand beside :class:`SqliteStore` later. A store is synchronous and not
thread-safe: one thread owns it (see ``writer.py``). Writes arrive as batches of
:data:`Write` items, applied in order in one transaction:

- an event becomes a row of ``events`` (``body`` is ``events.to_json``), and
  ``transcript.done`` also upserts the ``transcript`` row of its (session, turn): the
  latest one for a turn wins. ``session.started`` / ``session.ended`` update ``sessions``.
  Events of sessions the recorder never heard of are stored all the same.
- :class:`OpenSession` / :class:`CloseSession` are the ``StartSession`` / ``StopSession``
  RPCs. Closing is idempotent: the first end time and reason stay.
- An event is stored once per ``(producer, epoch, seq)`` (when ``epoch`` is known): the
  same event from a gap fill and from the bus is kept once, and a duplicate has no side
  effects. :class:`StreamMark` records how far a producer stream is complete when events
  lost for good are skipped, so a restarted recorder does not look for them again.

Durability: WAL with ``synchronous=NORMAL`` survives a crash of the process (a
committed transaction is in the WAL file); a power loss may drop the last commits.
The DML is portable SQL (``ON CONFLICT … DO UPDATE`` and ``excluded`` are PostgreSQL's
spelling too); only the placeholders (``?``) and the DDL in ``migrations.py`` differ.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from proto import events, rpc

from .migrations import current_version, migrate

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000

INSERT_EVENT = """
INSERT INTO events (session_id, type, producer, epoch, seq, ts, body) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING"""
UPSERT_STREAM = """
INSERT INTO streams (producer, epoch, contiguous, lost) VALUES (?, ?, ?, ?)
ON CONFLICT (producer, epoch) DO UPDATE SET
    contiguous = MAX(streams.contiguous, excluded.contiguous),
    lost = streams.lost + excluded.lost"""
SELECT_STREAM_MARK = "SELECT contiguous FROM streams WHERE producer = ? AND epoch = ?"
SEQ_STORED = "SELECT 1 FROM events WHERE producer = ? AND epoch = ? AND seq = ?"
FIRST_GAP_AFTER = """
SELECT MIN(e.seq) FROM events e
WHERE e.producer = ? AND e.epoch = ? AND e.seq > ? AND NOT EXISTS (
    SELECT 1 FROM events f WHERE f.producer = e.producer AND f.epoch = e.epoch
                             AND f.seq = e.seq + 1)"""
UPSERT_TRANSCRIPT = """
INSERT INTO transcript (session_id, turn_id, role, speaker, text, started_at, ended_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (session_id, turn_id) DO UPDATE SET
    role = excluded.role, speaker = excluded.speaker, text = excluded.text,
    started_at = excluded.started_at, ended_at = excluded.ended_at"""
START_SESSION = """
INSERT INTO sessions (session_id, name, instructions, voice, record, created_at, ended_at,
                      end_reason)
VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)
ON CONFLICT (session_id) DO UPDATE SET
    name = excluded.name, instructions = excluded.instructions, voice = excluded.voice,
    record = excluded.record, created_at = excluded.created_at, ended_at = NULL,
    end_reason = NULL"""
SESSION_STARTED = """
INSERT INTO sessions (session_id, name, instructions, voice, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (session_id) DO UPDATE SET
    name = excluded.name, instructions = excluded.instructions, voice = excluded.voice"""
END_SESSION = """
UPDATE sessions SET ended_at = ?, end_reason = ? WHERE session_id = ? AND ended_at IS NULL"""
COUNT_OPEN_SESSIONS = "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL"
SELECT_TRANSCRIPT = """
SELECT speaker, text, started_at, ended_at, role, turn_id FROM transcript
WHERE session_id = ? ORDER BY started_at, id"""
SESSION_EXISTS = "SELECT 1 FROM sessions WHERE session_id = ?"
SELECT_EVENTS = """
SELECT id, body FROM events WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?"""

_WRITE_ERRORS = (sqlite3.Error, OverflowError, ValueError)
"What a bad row or a failing database raises (OverflowError: an int beyond 64 bits)."

_event_decoder = msgspec.json.Decoder(events.AnyEvent)


@dataclass(frozen=True)
class OpenSession:
    """``StartSession``: insert or replace the session row (an ended session restarts)."""

    session_id: str
    name: str
    instructions: str
    voice: str
    record: bool
    at: float


@dataclass(frozen=True)
class CloseSession:
    """``StopSession``: mark the session ended, once."""

    session_id: str
    reason: str
    at: float


@dataclass(frozen=True)
class StreamMark:
    """A producer stream's events up to ``contiguous`` are all stored or lost for good
    (``lost`` more of them evicted from its outbox before they could be fetched)."""

    producer: str
    epoch: int
    contiguous: int
    lost: int


Write = events.AnyEvent | OpenSession | CloseSession | StreamMark
_SESSION_WRITES = (OpenSession, CloseSession, events.SessionStarted, events.SessionEnded)


class StoreError(RuntimeError):
    """A batch could not be written (the cause is chained)."""


class Store(Protocol):
    open_sessions: int
    "Sessions started and not ended, as of the last commit."

    def write(self, writes: Sequence[Write]) -> None:
        """Apply every write in one transaction, or none (raises :class:`StoreError`)."""

    def write_each(self, writes: Sequence[Write]) -> list[int]:
        """Apply the writes one by one in one transaction, skipping any that fails;
        returns the indexes of those skipped (raises :class:`StoreError` if the commit fails)."""

    def transcript(self, session_id: str) -> list[rpc.TranscriptEntry] | None:
        """Ordered by start time, then arrival; ``None`` for a session never heard of."""

    def events(self, session_id: str, after_id: int, limit: int
               ) -> tuple[list[events.AnyEvent], int]:
        """The session's events in recorded order, with a row id above ``after_id``, and
        the last row id read (the cursor for the next page; ``after_id`` when none)."""

    def contiguous(self, producer: str, epoch: int) -> int:
        """The highest seq of the stream up to which every event is stored or marked lost."""

    def close(self) -> None: ...


class SqliteStore:
    """A :class:`Store` in one SQLite file, used from the thread that opened it."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.open_sessions = self._count_open_sessions()

    @classmethod
    def open(cls, path: Path) -> SqliteStore:
        """Create the directory and the file if needed, set WAL and migrate the schema."""
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)  # autocommit: we BEGIN ourselves
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        logger.info("SqliteStore(%s): open", path)
        return cls(conn, path)

    @property
    def schema_version(self) -> int:
        return current_version(self._conn)

    def write(self, writes: Sequence[Write]) -> None:
        try:
            self._conn.execute("BEGIN")
            for write in writes:
                self._apply(write)
            self._conn.execute("COMMIT")
        except _WRITE_ERRORS as e:
            self._rollback()
            raise StoreError(f"batch of {len(writes)} not written: {e}") from e
        self._after_commit(writes)

    def write_each(self, writes: Sequence[Write]) -> list[int]:
        skipped: list[int] = []
        try:
            self._conn.execute("BEGIN")
            for index, write in enumerate(writes):
                self._conn.execute("SAVEPOINT one_write")
                try:
                    self._apply(write)
                except _WRITE_ERRORS as e:
                    self._conn.execute("ROLLBACK TO one_write")
                    skipped.append(index)
                    logger.warning("SqliteStore(%s): skipped %s: %s", self.path,
                                   _describe(write), e)
                self._conn.execute("RELEASE one_write")
            self._conn.execute("COMMIT")
        except _WRITE_ERRORS as e:
            self._rollback()
            raise StoreError(f"batch of {len(writes)} not written one by one: {e}") from e
        self._after_commit(writes)
        return skipped

    def transcript(self, session_id: str) -> list[rpc.TranscriptEntry] | None:
        rows = self._conn.execute(SELECT_TRANSCRIPT, (session_id,)).fetchall()
        if not rows and self._conn.execute(SESSION_EXISTS, (session_id,)).fetchone() is None:
            return None
        return [rpc.TranscriptEntry(speaker, text, started_at, ended_at, role, turn_id)
                for speaker, text, started_at, ended_at, role, turn_id in rows]

    def events(self, session_id: str, after_id: int, limit: int
               ) -> tuple[list[events.AnyEvent], int]:
        found: list[events.AnyEvent] = []
        cursor = after_id
        for row_id, body in self._conn.execute(SELECT_EVENTS, (session_id, after_id, limit)):
            cursor = row_id
            try:
                found.append(_event_decoder.decode(body))
            except msgspec.DecodeError as e:  # a tag from a newer voxrelay, say
                logger.warning("SqliteStore(%s): event row %d not readable: %s", self.path,
                               row_id, e)
        return found, cursor

    def contiguous(self, producer: str, epoch: int) -> int:
        row = self._conn.execute(SELECT_STREAM_MARK, (producer, epoch)).fetchone()
        mark = int(row[0]) if row else 0
        if self._conn.execute(SEQ_STORED, (producer, epoch, mark + 1)).fetchone() is None:
            return mark
        (end,) = self._conn.execute(FIRST_GAP_AFTER, (producer, epoch, mark)).fetchone()
        return int(end)

    def close(self) -> None:
        self._conn.close()  # the last connection checkpoints the WAL into the database

    def _apply(self, write: Write) -> None:
        match write:
            case OpenSession():
                self._conn.execute(START_SESSION, (
                    write.session_id, write.name, write.instructions, write.voice,
                    int(write.record), write.at))
            case CloseSession():
                self._conn.execute(END_SESSION, (write.at, write.reason, write.session_id))
            case StreamMark():
                self._conn.execute(UPSERT_STREAM, (write.producer, write.epoch, write.contiguous,
                                                   write.lost))
            case _:
                self._record_event(write)

    def _record_event(self, event: events.AnyEvent) -> None:
        inserted = self._conn.execute(INSERT_EVENT, (
            event.session_id, events.tag(event), event.producer, event.epoch, event.seq,
            event.ts, events.to_json(event))).rowcount
        if not inserted:  # stored already (a gap fill and the live stream both had it)
            return
        match event:
            case events.TranscriptDone():
                speaker = event.speaker or ("assistant" if event.role == "assistant" else "")
                self._conn.execute(UPSERT_TRANSCRIPT, (
                    event.session_id, event.turn_id, event.role, speaker, event.text,
                    event.started_at, event.ended_at))
            case events.SessionStarted():
                self._conn.execute(SESSION_STARTED, (
                    event.session_id, event.name, event.instructions, event.voice, event.ts))
            case events.SessionEnded():
                self._conn.execute(END_SESSION, (event.ts, event.reason, event.session_id))
            case _:
                pass

    def _after_commit(self, writes: Sequence[Write]) -> None:
        if any(isinstance(write, _SESSION_WRITES) for write in writes):
            self.open_sessions = self._count_open_sessions()

    def _count_open_sessions(self) -> int:
        (count,) = self._conn.execute(COUNT_OPEN_SESSIONS).fetchone()
        return int(count)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")


def _describe(write: Write) -> str:
    if isinstance(write, events.Event):
        return events.describe(write)
    if isinstance(write, StreamMark):
        return f"StreamMark({write.producer}, {write.epoch}, {write.contiguous})"
    return f"{type(write).__name__}({write.session_id})"
