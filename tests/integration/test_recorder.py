"""The recorder as a real process on a real bus, writing a real SQLite file or a real
PostgreSQL database (``store_factory``: the tests about what is stored run on both)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq

from proto import events, ids, rpc
from services.runtime.bus import EventPublisher
from services.runtime.rpc import RpcClient
from services.runtime.sockets import Role, make_socket
from tests.support.stack import Running, Stack
from tests.support.stores import StoreFactory

LONG_BATCH = {"VOXRELAY_RECORDER_FLUSH_MS": "60000"}
"A batch window no test waits out: whatever such a recorder stores, it stored on demand."
WAIT_S = 10.0
SQLITE_ONLY = pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)
"For tests of the RPC surface, not of what is stored."


@pytest.fixture
async def stack(tmp_path: Path, store_factory: StoreFactory) -> AsyncIterator[Stack]:
    """A bus; every recorder started on it stores where ``store_factory`` says."""
    async with Stack(data_dir=tmp_path, env=store_factory.env) as running_stack:
        yield running_stack


@contextlib.asynccontextmanager
async def connected(stack: Stack, recorder: Running) -> AsyncIterator[EventPublisher]:
    """A publisher whose events both the stack and the recorder are known to receive.

    PUB/SUB drops messages until a connection is up, so: publish probes until the stack's
    subscriber has one, then until the recorder has stored one (GetEvents).
    """
    publisher = stack.publisher()
    probe = ids.new_id()
    client = stack.rpc(recorder)
    try:
        async with asyncio.timeout(WAIT_S):
            while not any(e.session_id == probe for e in stack.events):
                publisher.publish(events.AiState(session_id=probe, state="idle"))
                await asyncio.sleep(0.05)
            while not (await get_events(client, probe)):
                publisher.publish(events.AiState(session_id=probe, state="idle"))
                await asyncio.sleep(0.05)
        yield publisher
    finally:
        publisher.close()


async def get_events(client: RpcClient, session_id: str, **options: int) -> list[events.AnyEvent]:
    reply = await client.call(rpc.GetEvents(session_id=session_id, **options))
    assert isinstance(reply, rpc.EventLog)
    return reply.events


async def wait_recorded(client: RpcClient, session_id: str, count: int) -> list[events.AnyEvent]:
    """The session's recorded events, once there are ``count`` of them."""
    async with asyncio.timeout(WAIT_S):
        while len(found := await get_events(client, session_id)) < count:
            await asyncio.sleep(0.05)
    return found


def turns(session_id: str) -> list[events.Event]:
    return [
        events.SessionStarted(session_id=session_id, name="standup", voice="marin"),
        events.TurnStart(session_id=session_id, turn_id="u1", role="user", speaker="alice"),
        events.TranscriptDelta(session_id=session_id, turn_id="u1", role="user", delta="what"),
        events.TranscriptDone(session_id=session_id, turn_id="u1", role="user",
                              text="what time is it", speaker="alice", started_at=100.0,
                              ended_at=101.0),
        events.TurnStart(session_id=session_id, turn_id="a1", role="assistant"),
        events.AiState(session_id=session_id, state="speaking"),
        events.TranscriptDone(session_id=session_id, turn_id="a1", role="assistant",
                              text="it is noon", started_at=101.5, ended_at=103.0),
        events.TranscriptDone(session_id=session_id, turn_id="u2", role="user",
                              text="thanks", speaker="alice+bob", started_at=104.0,
                              ended_at=104.5),
        events.TranscriptDone(session_id=session_id, turn_id="u1", role="user",
                              text="What time is it?", speaker="alice", started_at=100.0,
                              ended_at=101.0),
    ]


async def test_transcript_lists_finished_turns_in_order_with_speakers(stack: Stack) -> None:
    recorder = await stack.start("recorder")
    client = stack.rpc(recorder)
    sid = ids.new_id()
    async with connected(stack, recorder) as publisher:
        sent = [publisher.publish(event) for event in turns(sid)]
        await wait_recorded(client, sid, len(sent))
    reply = await client.call(rpc.GetTranscript(session_id=sid))
    assert reply == rpc.Transcript(request_id=reply.request_id, entries=[
        rpc.TranscriptEntry("alice", "What time is it?", 100.0, 101.0, "user", "u1"),
        rpc.TranscriptEntry("assistant", "it is noon", 101.5, 103.0, "assistant", "a1"),
        rpc.TranscriptEntry("alice+bob", "thanks", 104.0, 104.5, "user", "u2"),
    ])


async def test_event_log_holds_every_event_in_recorded_order(stack: Stack) -> None:
    recorder = await stack.start("recorder")
    client = stack.rpc(recorder)
    sid, other = ids.new_id(), ids.new_id()
    async with connected(stack, recorder) as publisher:
        sent = []
        for event in turns(sid):
            sent.append(publisher.publish(event))
            publisher.publish(events.AiState(session_id=other, state="listening"))
        recorded = await wait_recorded(client, sid, len(sent))
    assert recorded == sent  # exactly, stamps included, and nothing of the other session
    assert await get_events(client, sid, limit=3) == sent[:3]


async def test_reads_include_events_still_waiting_for_their_batch(stack: Stack) -> None:
    recorder = await stack.start("recorder", env=LONG_BATCH)
    client = stack.rpc(recorder)
    sid = ids.new_id()
    async with connected(stack, recorder) as publisher:
        done = publisher.publish(turns(sid)[3])
        await stack.wait_event(events.TranscriptDone, session_id=sid)
        recorded = await wait_recorded(client, sid, 1)  # long before the 60 s batch is due
    assert recorded == [done]
    reply = await client.call(rpc.GetTranscript(session_id=sid))
    assert isinstance(reply, rpc.Transcript) and [e.text for e in reply.entries] == [done.text]


async def test_start_session_is_stored_before_ok_and_counts_as_load(
        stack: Stack, store_factory: StoreFactory) -> None:
    recorder = await stack.start("recorder")
    client = stack.rpc(recorder)
    sid = ids.new_id()
    start = rpc.StartSession(session_id=sid, name="standup", instructions="be brief",
                             voice="marin", record=True)
    assert isinstance(await client.call(start), rpc.Ok)
    assert session_row(store_factory, sid)[:5] == (sid, "standup", "be brief", "marin", 1)
    await wait_load(recorder, 1)
    for reason in ("hangup", "again"):  # idempotent: the first end stays
        assert isinstance(await client.call(rpc.StopSession(session_id=sid, reason=reason)), rpc.Ok)
    assert session_row(store_factory, sid)[-1] == "hangup"
    reply = await client.call(rpc.GetTranscript(session_id=sid))
    assert isinstance(reply, rpc.Transcript) and reply.entries == []
    await wait_load(recorder, 0)


def session_row(store_factory: StoreFactory, session_id: str) -> tuple[object, ...]:
    rows = store_factory.query("SELECT session_id, name, instructions, voice, record, "
                               "end_reason FROM sessions WHERE session_id = ?", (session_id,))
    assert rows, f"no row for session {session_id}"
    return rows[0]


async def wait_load(recorder: Running, load: int) -> None:
    async with asyncio.timeout(WAIT_S):
        while recorder.beat is None or recorder.beat.load != load:
            await asyncio.sleep(0.05)


@SQLITE_ONLY
async def test_unknown_session_is_not_found_and_a_bad_id_is_a_bad_request(stack: Stack) -> None:
    recorder = await stack.start("recorder")
    client = stack.rpc(recorder)
    with pytest.raises(rpc.RpcError) as info:
        await client.call(rpc.GetTranscript(session_id=ids.new_id()))
    assert info.value.code == "not_found"
    with pytest.raises(rpc.RpcError) as info:
        await client.call(rpc.StartSession(session_id="not-an-id"))
    assert info.value.code == "bad_request"
    assert await get_events(client, ids.new_id()) == []


@SQLITE_ONLY
async def test_garbage_requests_and_messages_leave_the_recorder_recording(stack: Stack) -> None:
    recorder = await stack.start("recorder")
    client = stack.rpc(recorder)
    assert recorder.beat is not None
    raw_rpc = make_socket(stack.ctx, Role.RPC_CLIENT)
    raw_rpc.connect(recorder.beat.rpc)
    raw_bus = make_socket(stack.ctx, Role.EVENT_PUB)
    raw_bus.connect(stack.bus.publish)
    sid = ids.new_id()
    try:
        raw_rpc.send_multipart([rpc.PROTOCOL, b"\xc1 not msgpack"])
        async with asyncio.timeout(WAIT_S):
            while not raw_rpc.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                await asyncio.sleep(0.01)
        reply = rpc.decode_reply(raw_rpc.recv_multipart()[1])
        assert isinstance(reply, rpc.Err) and reply.code == "bad_request"
        with pytest.raises(rpc.RpcError) as info:
            await client.call(rpc.AddClient(session_id=sid, client_id=ids.new_id()))
        assert info.value.code == "bad_request"
        with pytest.raises(rpc.RpcError) as info:
            await client.call(rpc.GetEvents(session_id=sid, limit=0))
        assert info.value.code == "bad_request"
        async with connected(stack, recorder) as publisher:
            for _ in range(20):
                raw_bus.send_multipart([b"evt/ai.state/" + sid.encode(), b"\xc1 garbage"])
                raw_bus.send_multipart([b"evt/only-one-part"])
            after = publisher.publish(events.AiState(session_id=sid, state="thinking"))
            assert await wait_recorded(client, sid, 1) == [after]
        assert isinstance(await client.call(rpc.Ping()), rpc.Ok)
        assert recorder.proc.poll() is None
    finally:
        raw_rpc.close()
        raw_bus.close()


async def test_sigterm_commits_every_event_that_reached_the_recorder(
        stack: Stack, store_factory: StoreFactory) -> None:
    recorder = await stack.start("recorder", env=LONG_BATCH)
    sid = ids.new_id()
    async with connected(stack, recorder) as publisher:
        burst = [publisher.publish(event)
                 for _ in range(50) for event in turns(sid) + [turns(sid)[5]]]
        assert len(burst) == 500
        async with asyncio.timeout(WAIT_S):  # the bus has delivered them all
            while sum(e.session_id == sid for e in stack.events) < len(burst):
                await asyncio.sleep(0.01)
        recorder.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(recorder.proc.wait, WAIT_S) == 0
    rows = store_factory.query("SELECT producer, seq, body FROM events WHERE session_id = ? "
                               "ORDER BY id", (sid,))
    assert rows == [(e.producer, e.seq, events.to_json(e)) for e in burst]
