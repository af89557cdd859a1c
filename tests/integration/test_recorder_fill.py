"""Nothing lost: a recorder killed mid-stream fills the gap from the producer's outbox,
storing in SQLite or in PostgreSQL (``store_factory``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proto import events, ids, rpc
from services.runtime.bus import EventPublisher
from services.runtime.heartbeat import HeartbeatSender
from services.runtime.rpc import RpcClient, RpcServer
from tests.support.stack import Stack
from tests.support.stores import StoreFactory

TOTAL = 2000
ACK_AT = 600
KILL_AT = 700
RESTART_AT = 1300
BURST = 50
WAIT_S = 20.0


@pytest.fixture
async def stack(tmp_path: Path, store_factory: StoreFactory) -> AsyncIterator[Stack]:
    async with Stack(data_dir=tmp_path, env=store_factory.env) as running_stack:
        yield running_stack


@contextlib.asynccontextmanager
async def producer(stack: Stack, instance: str) -> AsyncIterator[EventPublisher]:
    """A bus-connected producer in this process: publisher, RPC server with its outbox,
    heartbeat (which tells the recorder where to ask)."""
    publisher = stack.publisher(instance)

    async def handle(request: rpc.AnyRequest) -> rpc.Reply:
        return rpc.Ok()

    server = RpcServer(stack.ctx, "tcp://127.0.0.1:*", handle, instance,
                       runtime=publisher.outbox.answer)
    server.start()
    beat = HeartbeatSender(publisher, "tester", instance, rpc=server.endpoint)
    task = asyncio.get_running_loop().create_task(beat.run())
    try:
        yield publisher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.close()
        publisher.close()


async def recorded(client: RpcClient, session_id: str, count: int) -> list[events.AnyEvent]:
    """The session's events once the recorder has ``count`` (or the timeout's)."""
    found: list[events.AnyEvent] = []
    async with asyncio.timeout(WAIT_S):
        while True:
            reply = await client.call(rpc.GetEvents(session_id=session_id))
            assert isinstance(reply, rpc.EventLog)
            found = reply.events
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)


@pytest.mark.fault
async def test_recorder_killed_mid_stream_stores_every_event_exactly_once(
        stack: Stack, store_factory: StoreFactory) -> None:
    """Under a steady stream, the recorder is killed with SIGKILL: everything it had
    acknowledged (a started session, events a read had committed) stays stored, and
    after its restart the outbox fill brings every event published, each stored once."""
    recorder = await stack.start("recorder")
    sid = ids.new_id()
    assert isinstance(await stack.rpc(recorder).call(
        rpc.StartSession(session_id=sid, name="load")), rpc.Ok)
    sent: list[events.Event] = []
    acknowledged: list[events.AnyEvent] = []
    async with producer(stack, "producer-1") as publisher:
        for index in range(TOTAL):
            sent.append(publisher.publish(events.TranscriptDelta(
                session_id=sid, turn_id="t1", role="assistant", delta=f"w{index}")))
            if index % BURST == BURST - 1:
                await asyncio.sleep(0.01)
            if index == ACK_AT:  # a read commits everything received first
                acknowledged = await recorded(stack.rpc(recorder), sid, 1)
            if index == KILL_AT:
                recorder.proc.kill()  # SIGKILL: its batch in memory is gone too
                recorder.proc.wait()
                stack.processes.remove(recorder)
            if index == RESTART_AT:
                recorder = await stack.start("recorder")  # same database
        found = await recorded(stack.rpc(recorder), sid, TOTAL)
        await asyncio.sleep(0.3)  # anything doubled would show up by now
        found = await recorded(stack.rpc(recorder), sid, TOTAL)
    assert sorted(event.seq for event in found) == [event.seq for event in sent]
    assert {(e.producer, e.epoch) for e in found} == {("producer-1", sent[0].epoch)}
    assert len(acknowledged) > ACK_AT // 2 and found[:len(acknowledged)] == acknowledged
    assert store_factory.query(
        "SELECT COUNT(*), COUNT(DISTINCT seq) FROM events WHERE session_id = ?",
        (sid,)) == [(TOTAL, TOTAL)]
    assert store_factory.query("SELECT name FROM sessions WHERE session_id = ?",
                               (sid,)) == [("load",)]


@pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)
async def test_every_service_answers_get_outbox_from_its_runtime(stack: Stack) -> None:
    mixer = await stack.start("mixer")
    reply = await stack.rpc(mixer).call(rpc.GetOutbox(after_seq=0, limit=10))
    assert isinstance(reply, rpc.Outbox)
    assert reply.producer == mixer.instance and reply.epoch > 0
    assert reply.first_seq <= reply.next_seq
    with pytest.raises(rpc.RpcError, match="bad_request"):
        await stack.rpc(mixer).call(rpc.GetOutbox(after_seq=-1))
