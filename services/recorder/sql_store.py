"""The :class:`~.store.Store` written once in SQL, for every backend.

:class:`SqlStore` holds the recorder's storage logic — batches in one transaction, one
row per ``(producer, epoch, seq)``, the transcript upsert, stream marks, idempotent
session ends, the one-write-at-a-time fallback, the reads — against the small
synchronous :class:`~.sql.Connection` that each backend provides. The DML is portable
SQL: ``ON CONFLICT … DO UPDATE`` with ``excluded`` is both SQLite's and PostgreSQL's
spelling, savepoints are the same, and the one function that differs (SQLite's
two-argument ``MAX``, PostgreSQL's ``GREATEST``) comes from the :class:`~.sql.Dialect`.
Placeholders are ``?`` here; the PostgreSQL connection numbers them.

A batch sends each run of events that touch no other table (nearly all of them:
deltas, states, Realtime events) as one ``executemany``: on PostgreSQL that is one
pipelined round trip instead of one per event (measured here, batches of 500 to a local
server: ~22 000 events/s, against ~2 500/s one statement at a time).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import msgspec

from proto import events, rpc

from .migrations import current_version
from .sql import Connection, Dialect, Row
from .store import CloseSession, OpenSession, StoreError, StreamMark, Write, describe

logger = logging.getLogger(__name__)

TENANT_OF = "COALESCE((SELECT s.tenant_id FROM sessions s WHERE s.session_id = ?), 'default')"
"The tenant a row of a session is stamped with (its session's; 'default' before it is known)."
INSERT_EVENT = f"""
INSERT INTO events (session_id, type, producer, epoch, seq, ts, body, tenant_id)
VALUES (?, ?, ?, ?, ?, ?, ?, {TENANT_OF})
ON CONFLICT DO NOTHING"""
UPSERT_STREAM = """
INSERT INTO streams (producer, epoch, contiguous, lost) VALUES (?, ?, ?, ?)
ON CONFLICT (producer, epoch) DO UPDATE SET
    contiguous = {greatest}(streams.contiguous, excluded.contiguous),
    lost = streams.lost + excluded.lost"""
SELECT_STREAM_MARK = "SELECT contiguous FROM streams WHERE producer = ? AND epoch = ?"
SEQ_STORED = "SELECT 1 FROM events WHERE producer = ? AND epoch = ? AND seq = ?"
FIRST_GAP_AFTER = """
SELECT MIN(e.seq) FROM events e
WHERE e.producer = ? AND e.epoch = ? AND e.seq > ? AND NOT EXISTS (
    SELECT 1 FROM events f WHERE f.producer = e.producer AND f.epoch = e.epoch
                             AND f.seq = e.seq + 1)"""
UPSERT_TRANSCRIPT = f"""
INSERT INTO transcript (session_id, turn_id, role, speaker, text, started_at, ended_at, tenant_id)
VALUES (?, ?, ?, ?, ?, ?, ?, {TENANT_OF})
ON CONFLICT (session_id, turn_id) DO UPDATE SET
    role = excluded.role, speaker = excluded.speaker, text = excluded.text,
    started_at = excluded.started_at, ended_at = excluded.ended_at"""
START_SESSION = """
INSERT INTO sessions (session_id, name, instructions, voice, record, created_at, ended_at,
                      end_reason, tenant_id)
VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?)
ON CONFLICT (session_id) DO UPDATE SET
    tenant_id = excluded.tenant_id, name = excluded.name, instructions = excluded.instructions, voice = excluded.voice,
    record = excluded.record, created_at = excluded.created_at, ended_at = NULL,
    end_reason = NULL"""
SESSION_STARTED = """
INSERT INTO sessions (session_id, name, instructions, voice, created_at, tenant_id)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (session_id) DO UPDATE SET
    name = excluded.name, instructions = excluded.instructions, voice = excluded.voice,
    tenant_id = excluded.tenant_id"""
RESTAMP_EVENTS = "UPDATE events SET tenant_id = ? WHERE session_id = ? AND tenant_id <> ?"
RESTAMP_TRANSCRIPT = "UPDATE transcript SET tenant_id = ? WHERE session_id = ? AND tenant_id <> ?"
"Rows recorded before the session's tenant was known (``session.started`` came late)."
END_SESSION = """
UPDATE sessions SET ended_at = ?, end_reason = ? WHERE session_id = ? AND ended_at IS NULL"""
COUNT_OPEN_SESSIONS = "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL"
SELECT_TRANSCRIPT = """
SELECT speaker, text, started_at, ended_at, role, turn_id FROM transcript
WHERE session_id = ? ORDER BY started_at, id"""
SESSION_EXISTS = "SELECT 1 FROM sessions WHERE session_id = ?"
SESSION_TENANT = "SELECT tenant_id FROM sessions WHERE session_id = ?"
SELECT_EVENTS = """
SELECT id, body FROM events WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?"""
PAGE_OF_SESSIONS = """
SELECT session_id FROM sessions
WHERE created_at < ? AND (? = '' OR tenant_id = ?) AND (? = '' OR session_id = ?)
ORDER BY created_at DESC, session_id DESC LIMIT ?"""
SELECT_SESSIONS = f"""
SELECT s.session_id, s.tenant_id, s.name, s.voice, s.record, s.created_at, s.ended_at, s.end_reason,
    (SELECT COUNT(*) FROM transcript t WHERE t.session_id = s.session_id AND t.role = 'user'),
    (SELECT COUNT(*) FROM transcript t WHERE t.session_id = s.session_id
                                         AND t.role = 'assistant'),
    (SELECT COUNT(*) FROM events e WHERE e.session_id = s.session_id)
FROM sessions s WHERE s.session_id IN ({PAGE_OF_SESSIONS})
ORDER BY s.created_at DESC, s.session_id DESC"""
SELECT_SPEAKERS = f"""
SELECT session_id, speaker FROM transcript
WHERE role = 'user' AND session_id IN ({PAGE_OF_SESSIONS})
ORDER BY started_at, id"""

SPEAKER_SEPARATOR = "+"
"A user turn's speaker names every client heard in it, joined with this."

_SESSION_WRITES = (OpenSession, CloseSession, events.SessionStarted, events.SessionEnded)
_WITH_EFFECTS = (events.TranscriptDone, events.SessionStarted, events.SessionEnded)
"Events whose row, once inserted, updates another table (see ``_record_event``)."
_event_decoder = msgspec.json.Decoder(events.AnyEvent)


class SqlStore:
    """A :class:`~.store.Store` over one :class:`~.sql.Connection`, used from one thread."""

    def __init__(self, db: Connection, dialect: Dialect, label: str) -> None:
        self._db = db
        self.dialect = dialect
        self.label = label
        "What the store is (a path, a URL without its password), for log lines."
        self._upsert_stream = UPSERT_STREAM.format(greatest=dialect.greatest)
        self._errors = (*db.errors, OverflowError, ValueError)
        "What a bad row or a failing database raises (OverflowError: an int beyond 64 bits)."
        self.open_sessions = self._count_open_sessions()

    @property
    def schema_version(self) -> int:
        return current_version(self._db, self.dialect)

    def write(self, writes: Sequence[Write]) -> None:
        try:
            self._db.begin()
            plain: list[Row] = []  # consecutive events without side effects, sent at once
            for write in writes:
                if isinstance(write, events.Event) and not isinstance(write, _WITH_EFFECTS):
                    plain.append(_event_row(write))
                    continue
                if plain:
                    self._db.executemany(INSERT_EVENT, plain)
                    plain = []
                self._apply(write)
            if plain:
                self._db.executemany(INSERT_EVENT, plain)
            self._db.commit()
        except self._errors as e:
            self._db.rollback()
            raise StoreError(f"batch of {len(writes)} not written: {e}") from e
        self._after_commit(writes)

    def write_each(self, writes: Sequence[Write]) -> list[int]:
        skipped: list[int] = []
        try:
            self._db.begin()
            for index, write in enumerate(writes):
                self._db.execute("SAVEPOINT one_write")
                try:
                    self._apply(write)
                except self._errors as e:
                    self._db.execute("ROLLBACK TO SAVEPOINT one_write")
                    skipped.append(index)
                    logger.warning("%s(%s): skipped %s: %s", type(self).__name__, self.label,
                                   describe(write), e)
                self._db.execute("RELEASE SAVEPOINT one_write")
            self._db.commit()
        except self._errors as e:
            self._db.rollback()
            raise StoreError(f"batch of {len(writes)} not written one by one: {e}") from e
        self._after_commit(writes)
        return skipped

    def transcript(self, session_id: str, tenant_id: str = ""
                   ) -> list[rpc.TranscriptEntry] | None:
        if not self._owned(session_id, tenant_id):
            return None
        rows = self._db.fetchall(SELECT_TRANSCRIPT, (session_id,))
        if not rows and self._db.fetchone(SESSION_EXISTS, (session_id,)) is None:
            return None
        return [rpc.TranscriptEntry(speaker, text, started_at, ended_at, role, turn_id)
                for speaker, text, started_at, ended_at, role, turn_id in rows]

    def events(self, session_id: str, after_id: int, limit: int, tenant_id: str = ""
               ) -> tuple[list[events.AnyEvent], int]:
        found: list[events.AnyEvent] = []
        cursor = after_id
        if not self._owned(session_id, tenant_id):
            return found, cursor
        for row_id, body in self._db.fetchall(SELECT_EVENTS, (session_id, after_id, limit)):
            cursor = row_id
            try:
                found.append(_event_decoder.decode(body))
            except msgspec.DecodeError as e:  # a tag from a newer voxrelay, say
                logger.warning("%s(%s): event row %d not readable: %s", type(self).__name__,
                               self.label, row_id, e)
        return found, cursor

    def sessions(self, limit: int, before_created_at: float | None, tenant_id: str = "",
                 session_id: str = "") -> list[rpc.SessionSummary]:
        before = math.inf if before_created_at is None else before_created_at
        page = (before, tenant_id, tenant_id, session_id, session_id, limit)
        speakers: dict[str, list[str]] = {}
        for session_id, speaker in self._db.fetchall(SELECT_SPEAKERS, page):
            heard = speakers.setdefault(session_id, [])
            heard.extend(name for name in speaker.split(SPEAKER_SEPARATOR)
                         if name and name not in heard)
        return [rpc.SessionSummary(
            session_id=session_id, tenant_id=tenant, name=name, voice=voice, record=bool(record),
            created_at=created_at or 0.0, ended_at=ended_at, end_reason=end_reason,
            user_turns=user_turns, assistant_turns=assistant_turns,
            speakers=speakers.get(session_id, []), events=event_count)
            for (session_id, tenant, name, voice, record, created_at, ended_at, end_reason, user_turns,
                 assistant_turns, event_count) in self._db.fetchall(SELECT_SESSIONS, page)]

    def _owned(self, session_id: str, tenant_id: str) -> bool:
        """Whether a read for ``tenant_id`` (empty: any tenant) may see the session."""
        if not tenant_id:
            return True
        row = self._db.fetchone(SESSION_TENANT, (session_id,))
        return row is not None and row[0] == tenant_id

    def contiguous(self, producer: str, epoch: int) -> int:
        row = self._db.fetchone(SELECT_STREAM_MARK, (producer, epoch))
        mark = int(row[0]) if row else 0
        if self._db.fetchone(SEQ_STORED, (producer, epoch, mark + 1)) is None:
            return mark
        end = self._db.fetchone(FIRST_GAP_AFTER, (producer, epoch, mark))
        return int(end[0]) if end else mark

    def close(self) -> None:
        self._db.close()

    def _apply(self, write: Write) -> None:
        match write:
            case OpenSession():
                self._db.execute(START_SESSION, (
                    write.session_id, write.name, write.instructions, write.voice,
                    int(write.record), write.at, write.tenant_id))
            case CloseSession():
                self._db.execute(END_SESSION, (write.at, write.reason, write.session_id))
            case StreamMark():
                self._db.execute(self._upsert_stream, (write.producer, write.epoch,
                                                       write.contiguous, write.lost))
            case _:
                self._record_event(write)

    def _record_event(self, event: events.AnyEvent) -> None:
        inserted = self._db.execute(INSERT_EVENT, _event_row(event))
        if not inserted:  # stored already (a gap fill and the live stream both had it)
            return
        match event:
            case events.TranscriptDone():
                speaker = event.speaker or ("assistant" if event.role == "assistant" else "")
                self._db.execute(UPSERT_TRANSCRIPT, (
                    event.session_id, event.turn_id, event.role, speaker, event.text,
                    event.started_at, event.ended_at, event.session_id))
            case events.SessionStarted():
                self._db.execute(SESSION_STARTED, (
                    event.session_id, event.name, event.instructions, event.voice, event.ts,
                    event.tenant_id))
                restamp = (event.tenant_id, event.session_id, event.tenant_id)
                self._db.execute(RESTAMP_EVENTS, restamp)
                self._db.execute(RESTAMP_TRANSCRIPT, restamp)
            case events.SessionEnded():
                self._db.execute(END_SESSION, (event.ts, event.reason, event.session_id))
            case _:
                pass

    def _after_commit(self, writes: Sequence[Write]) -> None:
        if any(isinstance(write, _SESSION_WRITES) for write in writes):
            self.open_sessions = self._count_open_sessions()

    def _count_open_sessions(self) -> int:
        row = self._db.fetchone(COUNT_OPEN_SESSIONS)
        return int(row[0]) if row else 0


def _event_row(event: events.AnyEvent) -> Row:
    return (event.session_id, events.tag(event), event.producer, event.epoch, event.seq,
            event.ts, events.to_json(event), event.session_id)
