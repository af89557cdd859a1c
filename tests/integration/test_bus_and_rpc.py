"""The runtime's messaging: the bus forwarder process, event pub/sub, heartbeats, RPC."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
import zmq

from proto import events, ids, rpc
from services.runtime.bus import BusEndpoints, EventPublisher, EventSubscriber
from services.runtime.heartbeat import HeartbeatSender, Registry
from services.runtime.rpc import RpcClient, RpcServer
from services.runtime.sockets import Role, make_socket
from tests.support.ports import free_tcp_endpoint


@pytest.fixture
def bus():
    endpoints = BusEndpoints(free_tcp_endpoint(), free_tcp_endpoint())
    env = {**os.environ, "VOXRELAY_BUS_PUBLISH": endpoints.publish,
           "VOXRELAY_BUS_SUBSCRIBE": endpoints.subscribe}
    proc = subprocess.Popen([sys.executable, "-m", "services.bus"], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert "bus forwarding" in proc.stdout.readline()
    yield endpoints
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    proc.stdout.close()


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


async def test_events_cross_the_bus_process_decoded(bus, ctx):
    received: list[events.AnyEvent] = []
    subscriber = EventSubscriber(ctx, bus, "test", on_event=received.append)
    subscriber.start()
    publisher = EventPublisher(ctx, bus, "tester-1")
    session_id = ids.new_id()
    try:
        async with asyncio.timeout(5):
            # Handshake instead of a sleep: publish until the subscription is live.
            while not received:
                publisher.publish(events.AiState(session_id=session_id, state="listening"))
                await asyncio.sleep(0.05)
        sent = publisher.publish(events.TurnStart(session_id=session_id, turn_id="t1", role="user"))
        async with asyncio.timeout(5):
            while not any(isinstance(e, events.TurnStart) for e in received):
                await asyncio.sleep(0.01)
    finally:
        subscriber.close()
        publisher.close()
    turn = next(e for e in received if isinstance(e, events.TurnStart))
    assert turn == sent and turn.producer == "tester-1" and turn.seq > 1


async def test_garbage_on_the_bus_is_dropped_not_fatal(bus, ctx):
    received: list[events.AnyEvent] = []
    subscriber = EventSubscriber(ctx, bus, "test", on_event=received.append)
    subscriber.start()
    raw = make_socket(ctx, Role.EVENT_PUB)
    raw.connect(bus.publish)
    publisher = EventPublisher(ctx, bus, "tester-2")
    session_id = ids.new_id()
    try:
        async with asyncio.timeout(5):
            while not received:
                raw.send_multipart([b"evt/x/" + session_id.encode(), b"\xc1garbage"])
                raw.send_multipart([b"evt/only-one-part"])
                publisher.publish(events.AiState(session_id=session_id, state="idle"))
                await asyncio.sleep(0.05)
    finally:
        subscriber.close()
        publisher.close()
        raw.close()
    assert all(isinstance(e, events.AiState) for e in received)


async def test_heartbeats_fill_the_registry(bus, ctx):
    registry = Registry()
    subscriber = EventSubscriber(ctx, bus, "test", on_heartbeat=registry.observe)
    subscriber.start()
    publisher = EventPublisher(ctx, bus, "mixer-9")
    sender = HeartbeatSender(publisher, "mixer", "mixer-9", rpc="tcp://127.0.0.1:1", load=lambda: 3)
    task = asyncio.create_task(sender.run())
    try:
        async with asyncio.timeout(5):
            while not registry.alive("mixer"):
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        subscriber.close()
        publisher.close()
    beat = registry.least_loaded("mixer")
    assert beat is not None and (beat.instance, beat.load, beat.pid) == ("mixer-9", 3, os.getpid())
    assert registry.alive("media_edge") == []


async def test_rpc_answers_ok_err_and_times_out(ctx):
    async def handler(request: rpc.AnyRequest) -> rpc.Reply:
        match request:
            case rpc.Ping():
                return rpc.Ok()
            case rpc.StartSession(session_id=sid) if sid == "slow":
                await asyncio.sleep(10)
                return rpc.Ok()
            case rpc.StartSession():
                raise rpc.RpcError("exists", "session exists")
        raise AssertionError(request)

    server = RpcServer(ctx, "tcp://127.0.0.1:*", handler, "test")
    server.start()
    client = RpcClient(ctx, server.endpoint, "test")
    try:
        assert isinstance(await client.call(rpc.Ping()), rpc.Ok)
        with pytest.raises(rpc.RpcError) as info:
            await client.call(rpc.StartSession(session_id=ids.new_id()))
        assert info.value.code == "exists"
        with pytest.raises(rpc.RpcError) as info:
            await client.call(rpc.StartSession(session_id="slow"), timeout=0.2)
        assert info.value.code == "timeout"
        # A malformed request gets an Err, and the server keeps serving.
        raw = make_socket(ctx, Role.RPC_CLIENT)
        raw.connect(server.endpoint)
        raw.send_multipart([rpc.PROTOCOL, b"\xc1"])
        async with asyncio.timeout(2):  # the server shares this loop: never block it
            while not raw.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                await asyncio.sleep(0.01)
        assert isinstance(rpc.decode_reply(raw.recv_multipart()[1]), rpc.Err)
        raw.close()
        assert isinstance(await client.call(rpc.Ping()), rpc.Ok)
    finally:
        client.close()
        await server.close()
