"""The recorder's store and batch writer against a real SQLite file in a temp dir and a
real PostgreSQL database (every test that asks for ``store_factory`` runs on both)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import msgspec
import pytest
from prometheus_client import REGISTRY

from proto import events, ids, rpc
from services.recorder.migrations import LATEST_VERSION, SchemaError
from services.recorder.sql_store import SqlStore
from services.recorder.store import CloseSession, OpenSession, StoreError
from services.recorder.writer import BatchWriter
from tests.support.postgres import fetch
from tests.support.stores import StoreFactory

TOO_BIG_FOR_64_BITS = 2**70
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
def store(store_factory: StoreFactory) -> Iterator[SqlStore]:
    opened = store_factory()
    yield opened
    opened.close()


def test_opening_twice_keeps_the_schema_and_the_data(store_factory: StoreFactory) -> None:
    sid = ids.new_id()
    first = store_factory()
    first.write(one_of_each(sid))
    first.close()
    second = store_factory()
    try:
        assert second.events(sid, 0, 100)[0] == one_of_each(sid)
        assert second.schema_version == LATEST_VERSION
    finally:
        second.close()
    assert store_factory.query("SELECT MAX(version), COUNT(*) FROM schema_version") \
        == [(LATEST_VERSION, LATEST_VERSION)]
    if store_factory.backend == "sqlite":
        assert store_factory.query("PRAGMA journal_mode") == [("wal",)]


def test_a_database_from_a_newer_recorder_is_refused(store_factory: StoreFactory) -> None:
    store_factory().close()
    store_factory.query("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)",
                        (LATEST_VERSION + 1,))
    with pytest.raises(SchemaError, match="newer"):
        store_factory()


def test_recorders_opening_one_new_database_at_once_migrate_it_once(
        store_factory: StoreFactory) -> None:
    with contextlib.ExitStack() as stack:
        opening = [stack.enter_context(ThreadPoolExecutor(max_workers=1)) for _ in range(4)]
        stores = [pool.submit(store_factory) for pool in opening]
        for pool, future in zip(opening, stores, strict=True):
            pool.submit(future.result().close).result(timeout=30)
    assert store_factory.query("SELECT version FROM schema_version ORDER BY version") \
        == [(version,) for version in range(1, LATEST_VERSION + 1)]


def test_every_event_kind_round_trips_with_its_columns(store: SqlStore,
                                                       store_factory: StoreFactory) -> None:
    sid = ids.new_id()
    written = one_of_each(sid)
    store.write(written)
    assert store.events(sid, 0, 100)[0] == written
    rows = store_factory.query("SELECT type, producer, seq, ts, body FROM events ORDER BY id")
    assert rows == [(events.tag(e), e.producer, e.seq, e.ts, events.to_json(e)) for e in written]


def test_events_page_by_row_id_and_stay_within_their_session(
        store: SqlStore, store_factory: StoreFactory) -> None:
    sid, other = ids.new_id(), ids.new_id()
    mine = [stamp(events.AiState(session_id=sid, state="idle"), seq) for seq in range(1, 6)]
    theirs = [stamp(events.AiState(session_id=other, state="idle"), seq) for seq in range(1, 6)]
    store.write([e for pair in zip(mine, theirs, strict=True) for e in pair])
    row_ids = [r for (r,) in store_factory.query(
        "SELECT id FROM events WHERE session_id = ? ORDER BY id", (sid,))]
    assert store.events(sid, 0, 100)[0] == mine
    assert store.events(sid, 0, 2) == (mine[:2], row_ids[1])
    assert store.events(sid, row_ids[1], 2) == (mine[2:4], row_ids[3])
    assert store.events(sid, row_ids[-1], 100) == ([], row_ids[-1])
    assert store.events(ids.new_id(), 0, 100) == ([], 0)


def test_a_second_transcript_done_for_a_turn_replaces_its_text(store: SqlStore) -> None:
    sid = ids.new_id()
    store.write([done(sid, "t1", "helo wrld", 10.0, seq=1, speaker="alice")])
    store.write([done(sid, "t1", "hello world", 10.0, seq=2, speaker="alice")])
    assert store.transcript(sid) == [
        rpc.TranscriptEntry("alice", "hello world", 10.0, 11.5, "user", "t1")]
    assert len(store.events(sid, 0, 100)[0]) == 2  # both events stay in the log


def test_transcript_is_ordered_by_start_time_then_arrival(store: SqlStore) -> None:
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


def test_a_session_never_heard_of_has_no_transcript(store: SqlStore) -> None:
    sid = ids.new_id()
    assert store.transcript(sid) is None
    store.write([OpenSession(sid, "name", "", "", False, 1.0)])
    assert store.transcript(sid) == []


def test_sessions_open_and_close_once(store: SqlStore, store_factory: StoreFactory) -> None:
    a, b = ids.new_id(), ids.new_id()
    store.write([OpenSession(a, "alpha", "be kind", "marin", True, 1.0),
                 OpenSession(b, "beta", "", "", False, 2.0)])
    assert store.open_sessions == 2
    store.write([CloseSession(a, "hangup", 5.0)])
    store.write([CloseSession(a, "again", 6.0), CloseSession(ids.new_id(), "unknown", 6.0)])
    assert store.open_sessions == 1
    store.write([stamp(events.SessionEnded(session_id=b, reason="done"), 1)])
    assert store.open_sessions == 0
    rows = store_factory.query("SELECT session_id, name, instructions, voice, record, created_at,"
                               " ended_at, end_reason FROM sessions ORDER BY created_at")
    assert rows[0] == (a, "alpha", "be kind", "marin", 1, 1.0, 5.0, "hangup")
    assert rows[1][0] == b and rows[1][-1] == "done"
    assert len(rows) == 2  # closing an unknown session creates nothing


def test_session_started_event_creates_or_updates_the_session(store: SqlStore) -> None:
    sid = ids.new_id()
    store.write([stamp(events.SessionStarted(session_id=sid, name="from the bus"), 1)])
    assert store.transcript(sid) == [] and store.open_sessions == 1


def test_one_bad_write_fails_the_batch_but_only_itself_one_by_one(store: SqlStore) -> None:
    sid = ids.new_id()
    good = [stamp(events.AiState(session_id=sid, state="idle"), seq) for seq in (1, 3)]
    bad = stamp(events.AiState(session_id=sid, state="idle"), TOO_BIG_FOR_64_BITS)
    with pytest.raises(StoreError):
        store.write([good[0], bad, good[1]])
    assert store.events(sid, 0, 100)[0] == []
    assert store.write_each([good[0], bad, good[1]]) == [1]
    assert store.events(sid, 0, 100)[0] == good


def test_sessions_are_listed_newest_first_with_turns_speakers_and_events(store: SqlStore) -> None:
    old, new, unstarted = ids.new_id(), ids.new_id(), ids.new_id()
    started = stamp(events.SessionStarted(session_id=new, name="retro", voice="cedar"), 5)
    store.write([
        OpenSession(old, "standup", "be brief", "marin", True, 100.0),
        done(old, "u1", "hi", 101.0, seq=1, speaker="alice"),
        done(old, "a1", "hello", 102.0, seq=2, role="assistant"),
        done(old, "u2", "and me", 103.0, seq=3, speaker="bob+alice"),
        done(old, "u2", "and me too", 103.0, seq=4, speaker="bob+alice"),  # same turn, again
        CloseSession(old, "hangup", 110.0),
        started,
        stamp(events.AiState(session_id=unstarted, state="idle"), 6),  # no session row
    ])
    newest = store.sessions(50, None)
    assert [s.session_id for s in newest] == [new, old]
    assert newest[1] == rpc.SessionSummary(
        session_id=old, name="standup", voice="marin", record=True, created_at=100.0,
        ended_at=110.0, end_reason="hangup", user_turns=2, assistant_turns=1,
        speakers=["alice", "bob"], events=4)
    assert newest[0] == rpc.SessionSummary(
        session_id=new, name="retro", voice="cedar", record=False,
        created_at=started.ts, events=1)


def test_sessions_page_strictly_before_a_creation_time(store: SqlStore) -> None:
    sids = [ids.new_id() for _ in range(5)]
    store.write([OpenSession(sid, f"s{i}", "", "", False, 1000.0 + i)
                 for i, sid in enumerate(sids)])
    first = store.sessions(2, None)
    assert [s.name for s in first] == ["s4", "s3"]
    second = store.sessions(2, first[-1].created_at)
    assert [s.name for s in second] == ["s2", "s1"]
    assert [s.name for s in store.sessions(2, second[-1].created_at)] == ["s0"]
    assert store.sessions(2, 1000.0) == []


def test_every_row_of_a_session_is_its_tenants_and_reads_stay_within_a_tenant(
        store: SqlStore, store_factory: StoreFactory) -> None:
    ours, theirs, late = ids.new_id(), ids.new_id(), ids.new_id()
    store.write([
        OpenSession(ours, "ours", "", "", False, 1.0, tenant_id="acme"),
        OpenSession(theirs, "theirs", "", "", False, 2.0, tenant_id="globex"),
        done(ours, "u1", "hello", 3.0, seq=1, speaker="ann"),
        done(theirs, "u1", "secret", 3.0, seq=2, speaker="bob"),
        # a session whose session.started comes after its first events (recorder late)
        done(late, "u1", "early", 4.0, seq=3, speaker="cy"),
        stamp(events.SessionStarted(session_id=late, name="late", tenant_id="acme"), 4),
    ])
    for table in ("sessions", "events", "transcript"):
        rows = store_factory.query(f"SELECT session_id, tenant_id FROM {table}")
        owners = {sid: tenant for sid, tenant in rows}
        assert owners == {ours: "acme", theirs: "globex", late: "acme"}, table

    assert [s.session_id for s in store.sessions(50, None, "acme")] == [late, ours]
    assert [s.tenant_id for s in store.sessions(50, None)] == ["acme", "globex", "acme"]
    assert [s.session_id for s in store.sessions(50, None, "", theirs)] == [theirs]
    assert store.sessions(50, None, "acme", theirs) == []
    assert store.transcript(theirs, "acme") is None
    assert store.events(theirs, 0, 100, "acme") == ([], 0)
    entries = store.transcript(theirs, "globex")
    assert entries is not None and [e.text for e in entries] == ["secret"]
    assert len(store.events(ours, 0, 100, "acme")[0]) == 1


# The batch writer: the store on its own thread, batches, flush on demand and on close.


@contextlib.asynccontextmanager
async def running_writer(store_factory: StoreFactory, flush_interval_s: float
                         ) -> AsyncIterator[BatchWriter]:
    writer = await BatchWriter.open(store_factory,
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


async def test_writer_commits_a_batch_within_the_flush_interval(
        store_factory: StoreFactory) -> None:
    sid = ids.new_id()
    async with running_writer(store_factory, flush_interval_s=0.05) as writer:
        for event in one_of_each(sid):
            writer.submit(event)
        async with asyncio.timeout(5):
            while not await writer.read(lambda s: s.events(sid, 0, 100)[0]):
                await asyncio.sleep(0.01)
        assert await writer.read(lambda s: s.events(sid, 0, 100)[0]) == one_of_each(sid)


async def test_writer_commit_covers_everything_queued_before_it(
        store_factory: StoreFactory) -> None:
    sid = ids.new_id()
    async with running_writer(store_factory, flush_interval_s=60) as writer:
        for event in one_of_each(sid):
            writer.submit(event)
        await writer.commit()
        assert writer.pending == 0
        assert await writer.read(lambda s: s.events(sid, 0, 100)[0]) == one_of_each(sid)
        await writer.commit(OpenSession(ids.new_id(), "", "", "", False, 1.0))
        assert writer.open_sessions == 1


async def test_writer_close_commits_what_is_still_queued(store_factory: StoreFactory) -> None:
    sid = ids.new_id()
    burst = [stamp(events.AiState(session_id=sid, state="idle"), seq) for seq in range(1, 501)]
    async with running_writer(store_factory, flush_interval_s=60) as writer:
        for event in burst:
            writer.submit(event)
        assert writer.pending == len(burst)

    def stored() -> list[events.AnyEvent]:  # off this loop's thread, as a recorder's store is
        reopened = store_factory()
        try:
            return reopened.events(sid, 0, 1000)[0]
        finally:
            reopened.close()

    assert await asyncio.to_thread(stored) == burst


async def test_writer_retries_a_failed_batch_and_loses_only_the_bad_write(
        store_factory: StoreFactory) -> None:
    sid = ids.new_id()
    good = [stamp(events.AiState(session_id=sid, state="idle"), seq) for seq in (1, 3)]
    bad = stamp(events.AiState(session_id=sid, state="idle"), TOO_BIG_FOR_64_BITS)

    def sample(name: str, reason: str) -> float:
        return REGISTRY.get_sample_value(name, {"reason": reason}) or 0.0

    before = (sample("voxrelay_recorder_write_errors_total", "batch"),
              sample("voxrelay_recorder_write_errors_total", "row"),
              sample("voxrelay_recorder_events_dropped_total", "write_failed"))
    async with running_writer(store_factory, flush_interval_s=60) as writer:
        for event in (good[0], bad, good[1]):
            writer.submit(event)
        await writer.commit()
        assert await writer.read(lambda s: s.events(sid, 0, 100)[0]) == good
    after = (sample("voxrelay_recorder_write_errors_total", "batch"),
             sample("voxrelay_recorder_write_errors_total", "row"),
             sample("voxrelay_recorder_events_dropped_total", "write_failed"))
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]


@pytest.mark.parametrize("store_factory", ["postgres"], indirect=True)
async def test_writer_reconnects_when_the_server_drops_its_connection(
        store_factory: StoreFactory) -> None:
    sid = ids.new_id()
    first, second = (stamp(events.AiState(session_id=sid, state="idle"), seq) for seq in (1, 2))
    async with running_writer(store_factory, flush_interval_s=60) as writer:
        await writer.commit(first)
        dropped = fetch(store_factory.url, "SELECT pg_terminate_backend(pid) FROM "
                        "pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()")
        assert dropped == [(True,)]
        await writer.commit(second)  # the batch fails, its one-by-one retry reconnects
        assert await writer.read(lambda s: s.events(sid, 0, 100)[0]) == [first, second]
