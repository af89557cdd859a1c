"""ZeroMQ on the loop: whole multipart messages out and in, a hostile one dropped."""

from __future__ import annotations

import asyncio
import time

import pytest
import zmq

from services.runtime.metrics import MESSAGES_REJECTED
from services.runtime.zmq_loop import Rejected, SocketReader, recv_parts, send_nowait

WAIT_S = 5.0


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def pair(ctx: zmq.Context, send_type: int, recv_type: int, hwm: int = 1000
         ) -> tuple[zmq.Socket, zmq.Socket]:
    sender, receiver = ctx.socket(send_type), ctx.socket(recv_type)
    sender.setsockopt(zmq.SNDHWM, hwm)
    receiver.setsockopt(zmq.RCVHWM, hwm)
    if recv_type == zmq.SUB:
        receiver.setsockopt(zmq.SUBSCRIBE, b"")
    sender.bind("tcp://127.0.0.1:*")
    receiver.connect(sender.getsockopt_string(zmq.LAST_ENDPOINT))
    if send_type == zmq.PUSH:  # it refuses to send until a peer is connected
        assert sender.poll(int(WAIT_S * 1000), zmq.POLLOUT), "the peer never connected"
    return sender, receiver


def wait_for(receiver: zmq.Socket) -> None:
    assert receiver.poll(int(WAIT_S * 1000)), "nothing arrived"


def test_a_multipart_message_arrives_whole(ctx):
    sender, receiver = pair(ctx, zmq.PUSH, zmq.PULL)
    parts = [b"aud/in/x", b"\x93\x01\x02", bytes(range(256)) * 4]
    assert send_nowait(sender, parts)
    assert send_nowait(sender, [b"one"])
    wait_for(receiver)
    assert recv_parts(receiver) == parts
    wait_for(receiver)
    assert recv_parts(receiver) == [b"one"]
    with pytest.raises(zmq.Again):
        recv_parts(receiver)


def test_a_full_socket_refuses_a_whole_message_never_part_of_one(ctx):
    sender, receiver = pair(ctx, zmq.PUSH, zmq.PULL, hwm=2)
    sent = 0
    while send_nowait(sender, [b"head", sent.to_bytes(4, "big"), b"tail"]):
        sent += 1
        assert sent < 10_000, "the socket never filled"
    got = []
    while len(got) < sent:
        wait_for(receiver)
        got.append(recv_parts(receiver))
    assert got == [[b"head", n.to_bytes(4, "big"), b"tail"] for n in range(sent)]
    assert not receiver.poll(200), "part of a refused message was delivered"


async def test_the_reader_drains_a_burst_and_drops_what_its_handler_rejects(ctx):
    sender, receiver = pair(ctx, zmq.PUB, zmq.SUB)
    heard: list[list[bytes]] = []

    def on_message(parts: list[bytes]) -> None:
        if parts[0] == b"bad":
            raise Rejected("kind", "a test message")
        heard.append(parts)

    reader = SocketReader(receiver, on_message, "test", "test_socket")
    rejected = MESSAGES_REJECTED.labels("test_socket", "kind")
    before = rejected._value.get()
    reader.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not heard:  # a subscription takes a moment to reach the publisher
            assert time.monotonic() < deadline, "nothing was heard"
            send_nowait(sender, [b"hello", b""])
            await asyncio.sleep(0.05)
        heard.clear()
        for n in range(50):
            send_nowait(sender, [b"bad"] if n == 25 else [b"frame", n.to_bytes(2, "big")])
        while len(heard) < 49:
            assert time.monotonic() < deadline, f"only {len(heard)} of 49 were heard"
            await asyncio.sleep(0.01)
    finally:
        reader.stop()
    assert [p[1] for p in heard if p[0] == b"frame"] == [
        n.to_bytes(2, "big") for n in range(50) if n != 25]
    assert rejected._value.get() == before + 1
