"""The recorder's store and batch writer against a real SQLite file in a temp dir."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
from prometheus_client import REGISTRY

from proto import events, ids, rpc
from services.recorder.migrations import LATEST_VERSION, SchemaError
from services.recorder.store import CloseSession, OpenSession, SqliteStore, StoreError
from services.recorder.writer import BatchWriter

TOO_BIG_FOR_SQLITE = 2**70
CLIENT_ID = "c1" * 16


def stamp(event: events.Event, seq: int, producer: str = "openai_link-1") -> events.AnyEvent:
    return msgspec.structs.replace(event, producer=producer, seq=seq, ts=1_700_000_000.0 + seq / 7)


def done(session_id: str, turn_id: str, text: str, started_at: float, *, seq: int,
         role: events.Role = "user", speaker: str = "") -> events.AnyEvent:
    return stamp(events.TranscriptDone(session_id=session_id, turn_id=turn_id, role=role,
                                       text=text, speaker=speaker, started_at=started_at,
                                       ended_at=started_at + 1.5), seq)


def one_of_each(session_id: str) -> list[events.AnyEvent]:
    kinds: list[events.Event] = [
        events.SessionStarted(session_id=session_id, name="standup", instructions="be brief",
                              voice="marin"),
        events.ClientJoined(session_id=session_id, client_id=CLIENT_ID, name="alice"),
        events.TurnStart(session_id=session_id, turn_id="t1", role="user", speaker="alice"),
        events.TranscriptDelta(session_id=session_id, turn_id="t1", role="user", delta="hel"),
        events.TranscriptDone(session_id=session_id, turn_id="t1", role="user", text="hello",
                              speaker="alice", started_at=1.0, ended_at=2.0),
        events.TurnEnd(session_id=session_id, turn_id="t1", role="user"),
        events.AiState(session_id=session_id, state="speaking"),
        events.AiInterrupted(session_id=session_id, response_id="r1", played_ms=480),
        events.ErrorEvent(session_id=session_id, code="oops", message="ünïcödé ✓"),
        events.LatencyPing(session_id=session_id, ping_id="p1", rtt_ms=None),
        events.RealtimeEvent(session_id=session_id, event_type="response.done", data='{"a": 1}'),
        events.ClientLeft(session_id=session_id, client_id=CLIENT_ID, reason="bye"),
        events.SessionEnded(session_id=session_id, reason="done"),
    ]
    return [stamp(event, seq) for seq, event in enumerate(kinds, start=1)]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "recorder.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore.open(db_path)
    yield opened
    opened.close()


def test_opening_twice_keeps_the_schema_and_the_data(db_path: Path) -> None:
    sid = ids.new_id()
    first = SqliteStore.open(db_path)
    first.write(one_of_each(sid))
    first.close()
    second = SqliteStore.open(db_path)
    try:
        assert second.events(sid, 0, 100)[0] == one_of_each(sid)
        assert second.schema_version == LATEST_VERSION
    finally:
        second.close()
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT MAX(version), COUNT(*) FROM schema_version").fetchone() \
                == (LATEST_VERSION, LATEST_VERSION)


def test_a_database_from_a_newer_recorder_is_refused(db_path: Path) -> None:
    SqliteStore.open(db_path).close()
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)",
                     (LATEST_VERSION + 1,))
    with pytest.raises(SchemaError, match="newer"):
        SqliteStore.open(db_path)


def test_every_event_kind_round_trips_with_its_columns(store: SqliteStore, db_path: Path) -> None:
    sid = ids.new_id()
    written = one_of_each(sid)
    store.write(written)
    assert store.events(sid, 0, 100)[0] == written
    query = "SELECT type, producer, seq, ts, body FROM events ORDER BY id"
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute(query).fetchall()
    assert rows == [(events.tag(e), e.producer, e.seq, e.ts, events.to_json(e)) for e in written]


def test_events_page_by_row_id_and_stay_within_their_session(store: SqliteStore,
                                                             db_path: Path) -> None:
    sid, other = ids.new_id(), ids.new_id()
    mine = [stamp(events.AiState(session_id=sid, state="idle"), seq) for seq in range(1, 6)]
    theirs = [stamp(events.AiState(session_id=other, state="idle"), seq) for seq in range(1, 6)]
    store.write([e for pair in zip(mine, theirs, strict=True) for e in pair])
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        row_ids = [r for (r,) in conn.execute(
            "SELECT id FROM events WHERE session_id = ? ORDER BY id", (sid,))]
    assert store.events(sid, 0, 100)[0] == mine
    assert store.events(sid, 0, 2) == (mine[:2], row_ids[1])
    assert store.events(sid, row_ids[1], 2) == (mine[2:4], row_ids[3])
    assert store.events(sid, row_ids[-1], 100) == ([], row_ids[-1])
    assert store.events(ids.new_id(), 0, 100) == ([], 0)


def test_a_second_transcript_done_for_a_turn_replaces_its_text(store: SqliteStore) -> None:
    sid = ids.new_id()
    store.write([done(sid, "t1", "helo wrld", 10.0, seq=1, speaker="alice")])
    store.write([done(sid, "t1", "hello world", 10.0, seq=2, speaker="alice")])
    assert store.transcript(sid) == [
        rpc.TranscriptEntry("alice", "hello world", 10.0, 11.5, "user", "t1")]
    assert len(store.events(sid, 0, 100)[0]) == 2  # both events stay in the log


def test_transcript_is_ordered_by_start_time_then_arrival(store: SqliteStore) -> None:
    sid = ids.new_id()
    store.write([
        done(sid, "t3", "third", 30.0, seq=1, speaker="alice+bob"),
        done(sid, "t1", "first", 10.0, seq=2, speaker="alice"),
        done(sid, "t2a", "second", 20.0, seq=3, role="assistant"),
        done(sid, "t2b", "second too", 20.0, seq=4, speaker="bob"),
        done(ids.new_id(), "t0", "elsewhere", 0.0, seq=5),
    ])
    entries = store.transcript(sid)
    assert entries is not None
    assert [(e.turn_id, e.speaker, e.text, e.role) for e in entries] == [
        ("t1", "alice", "first", "user"),
        ("t2a", "assistant", "second", "assistant"),
        ("t2b", "bob", "second too", "user"),
        ("t3", "alice+bob", "third", "user"),
    ]


def test_a_session_never_heard_of_has_no_transcript(store: SqliteStore) -> None:
    sid = ids.new_id()
    assert store.transcript(sid) is None
    store.write([OpenSession(sid, "name", "", "", False, 1.0)])
    assert store.transcript(sid) == []


def test_sessions_open_and_close_once(store: SqliteStore, db_path: Path) -> None:
    a, b = ids.new_id(), ids.new_id()
    store.write([OpenSession(a, "alpha", "be kind", "marin", True, 1.0),
                 OpenSession(b, "beta", "", "", False, 2.0)])
    assert store.open_sessions == 2
    store.write([CloseSession(a, "hangup", 5.0)])
    store.write([CloseSession(a, "again", 6.0), CloseSession(ids.new_id(), "unknown", 6.0)])
    assert store.open_sessions == 1
    store.write([stamp(events.SessionEnded(session_id=b, reason="done"), 1)])
    assert store.open_sessions == 0
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute("SELECT * FROM sessions ORDER BY created_at").fetchall()
    assert rows[0] == (a, "alpha", "be kind", "marin", 1, 1.0, 5.0, "hangup")
    assert rows[1][0] == b and rows[1][-1] == "done"
    assert len(rows) == 2  # closing an unknown session creates nothing


def test_session_started_event_creates_or_updates_the_session(store: SqliteStore) -> None:
    sid = ids.new_id()
    store.write([stamp(events.SessionStarted(session_id=sid, name="from the bus"), 1)])
    assert store.transcript(sid) == [] and store.open_sessions == 1


def test_one_bad_write_fails_the_batch_but_only_itself_one_by_one(store: SqliteStore) -> None:
    sid = ids.new_id()
    good = [stamp(events.AiState(session_id=sid, state="idle"), seq) for seq in (1, 3)]
    bad = stamp(events.AiState(session_id=sid, state="idle"), TOO_BIG_FOR_SQLITE)
    with pytest.raises(StoreError):
        store.write([good[0], bad, good[1]])
    assert store.events(sid, 0, 100)[0] == []
    assert store.write_each([good[0], bad, good[1]]) == [1]
    assert store.events(sid, 0, 100)[0] == good


# The batch writer: the store on its own thread, batches, flush on demand and on close.


@contextlib.asynccontextmanager
async def running_writer(db_path: Path, flush_interval_s: float) -> AsyncIterator[BatchWriter]:
    writer = await BatchWriter.open(lambda: SqliteStore.open(db_path),
                                    flush_interval_s=flush_interval_s, max_pending=10_000,
                                    name="test")
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await writer.close()


async def test_writer_commits_a_batch_within_the_flush_interval(db_path: Path) -> None:
    sid = ids.new_id()
    async with running_writer(db_path, flush_interval_s=0.05) as writer:
        for event in one_of_each(sid):
            writer.submit(event)
        async with asyncio.timeout(5):
            while not await writer.read(lambda s: s.events(sid, 0, 100)[0]):
                await asyncio.sleep(0.01)
        assert await writer.read(lambda s: s.events(sid, 0, 100)[0]) == one_of_each(sid)


async def test_writer_commit_covers_everything_queued_before_it(db_path: Path) -> None:
    sid = ids.new_id()
    async with running_writer(db_path, flush_interval_s=60) as writer:
        for event in one_of_each(sid):
            writer.submit(event)
        await writer.commit()
        assert writer.pending == 0
        assert await writer.read(lambda s: s.events(sid, 0, 100)[0]) == one_of_each(sid)
        await writer.commit(OpenSession(ids.new_id(), "", "", "", False, 1.0))
        assert writer.open_sessions == 1


async def test_writer_close_commits_what_is_still_queued(db_path: Path) -> None:
    sid = ids.new_id()
    burst = [stamp(events.AiState(session_id=sid, state="idle"), seq) for seq in range(1, 501)]
    async with running_writer(db_path, flush_interval_s=60) as writer:
        for event in burst:
            writer.submit(event)
        assert writer.pending == len(burst)
    reopened = SqliteStore.open(db_path)
    try:
        assert reopened.events(sid, 0, 1000)[0] == burst
    finally:
        reopened.close()


async def test_writer_retries_a_failed_batch_and_loses_only_the_bad_write(db_path: Path) -> None:
    sid = ids.new_id()
    good = [stamp(events.AiState(session_id=sid, state="idle"), seq) for seq in (1, 3)]
    bad = stamp(events.AiState(session_id=sid, state="idle"), TOO_BIG_FOR_SQLITE)

    def sample(name: str, reason: str) -> float:
        return REGISTRY.get_sample_value(name, {"reason": reason}) or 0.0

    before = (sample("voxrelay_recorder_write_errors_total", "batch"),
              sample("voxrelay_recorder_write_errors_total", "row"),
              sample("voxrelay_recorder_events_dropped_total", "write_failed"))
    async with running_writer(db_path, flush_interval_s=60) as writer:
        for event in (good[0], bad, good[1]):
            writer.submit(event)
        await writer.commit()
        assert await writer.read(lambda s: s.events(sid, 0, 100)[0]) == good
    after = (sample("voxrelay_recorder_write_errors_total", "batch"),
             sample("voxrelay_recorder_write_errors_total", "row"),
             sample("voxrelay_recorder_events_dropped_total", "write_failed"))
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]
