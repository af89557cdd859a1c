"""What the load generator makes of the frames a client heard, and when they came."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack

from benchmarks.load import SocketArrivals, is_rtp, longest_gap, receive_time

WAIT_S = 10.0


def test_the_longest_gap_and_when_it_began():
    arrivals = [100.0 + 0.02 * i for i in range(1, 50)]  # a frame every 20 ms for a second
    arrivals = [t for t in arrivals if not 100.5 < t < 100.75]  # then 260 ms without any
    assert longest_gap(100.0, arrivals, 101.0) == (260.0, 0.5)


def test_a_window_without_frames_is_one_gap_from_its_start():
    assert longest_gap(10.0, [], 12.5) == (2500.0, 0.0)


def test_rtp_is_told_from_rtcp_dtls_and_stun():
    header = bytes(10)
    assert is_rtp(b"\x80\x6f" + header)  # Opus, payload type 111
    assert is_rtp(b"\x80\xef" + header)  # the same with the marker bit
    assert not is_rtp(b"\x80\xc8" + header)  # RTCP sender report
    assert not is_rtp(b"\x81\xc9" + header)  # RTCP receiver report
    assert not is_rtp(b"\x17\xfe\xfd" + header)  # DTLS application data
    assert not is_rtp(b"\x00\x01" + header)  # STUN binding request
    assert not is_rtp(b"\x80\x6f")  # too short for a header


def test_a_datagram_is_timed_when_it_reached_the_socket_not_when_it_was_read():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.bind(("127.0.0.1", 0))
        receive_time(receiver)  # asks the kernel to stamp this socket's datagrams,
        time.sleep(0.1)  # which it starts to do a moment later
        sent = time.monotonic()
        sender.sendto(b"\x80\x6f" + bytes(10), receiver.getsockname())
        time.sleep(0.3)  # a reader too busy to read it
        receiver.recv(64)
        read = time.monotonic()
        arrived = receive_time(receiver)
    assert sent - 0.01 <= arrived <= sent + 0.1
    assert read - arrived > 0.2


@pytest.fixture
def other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in a thread of its own, which goes on while the test's stalls."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT_S)
    loop.close()


async def test_a_stalled_client_loop_does_not_make_a_gap_in_packets_sent_on_time(other_loop):
    def there(coro):  # run on the sender's loop, wait for it here
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, other_loop))

    async def offer() -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(AudioStreamTrack())  # a 20 ms frame of silence every 20 ms
        await pc.setLocalDescription(await pc.createOffer())
        return pc

    sender = await asyncio.wait_for(there(offer()), WAIT_S)
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await asyncio.wait_for(there(sender.setRemoteDescription(receiver.localDescription)),
                               WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while receiver.connectionState != "connected":
            assert time.monotonic() < deadline, "the peers did not connect"
            await asyncio.sleep(0.02)
        packets = SocketArrivals(receiver)
        await asyncio.sleep(0.2)
        begun = time.monotonic()
        await asyncio.sleep(0.3)
        time.sleep(0.4)  # this loop stalls; the sender's goes on sending
        ended = time.monotonic()  # with the stall's packets still unread
        await packets.read_up_to(ended)
        reached, behind = packets.between(begun, ended)
    finally:
        await receiver.close()
        await asyncio.wait_for(there(sender.close()), WAIT_S)
    assert len(reached) >= 30  # 700 ms of 20 ms packets
    assert float(np.max(np.diff(reached))) < 0.1  # the stall's 400 ms is not among them
    assert ended - reached[-1] < 0.1  # the packets that waited through it are counted
    assert behind > 0.3  # and the first of them waited about as long as the stall
