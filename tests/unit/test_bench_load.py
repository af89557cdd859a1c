"""What the load generator makes of the frames a client heard, and when they came."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack

from benchmarks.load import (
    LOUD_RMS,
    NotingPts,
    SocketArrivals,
    TimedMic,
    first_reached_after,
    is_rtp,
    longest_gap,
    loudness,
    receive_time,
)
from proto.audio import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE
from services.runtime.media import drain_track

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


def there(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Future[Any]:
    """Run ``coro`` on ``loop`` (another thread's); await its result here."""
    return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


@contextlib.asynccontextmanager
async def peers(other_loop: asyncio.AbstractEventLoop, track: MediaStreamTrack,
                on_track: Callable[[MediaStreamTrack], None] | None = None
                ) -> AsyncIterator[RTCPeerConnection]:
    """A peer sending ``track`` from ``other_loop`` and one receiving it on this loop
    (``on_track`` gets the received track), connected over loopback; yields the latter."""
    async def offer() -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(track)
        await pc.setLocalDescription(await pc.createOffer())
        return pc

    sender = await asyncio.wait_for(there(other_loop, offer()), WAIT_S)
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if on_track is not None:
        receiver.on("track", on_track)
    try:
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await asyncio.wait_for(
            there(other_loop, sender.setRemoteDescription(receiver.localDescription)), WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while receiver.connectionState != "connected":
            assert time.monotonic() < deadline, "the peers did not connect"
            await asyncio.sleep(0.02)
        yield receiver
    finally:
        await receiver.close()
        await asyncio.wait_for(there(other_loop, sender.close()), WAIT_S)


async def test_a_stalled_client_loop_does_not_make_a_gap_in_packets_sent_on_time(other_loop):
    # the sender sends a 20 ms frame of silence every 20 ms
    async with peers(other_loop, AudioStreamTrack()) as receiver:
        packets = SocketArrivals(receiver)
        await asyncio.sleep(0.2)
        begun = time.monotonic()
        await asyncio.sleep(0.3)
        time.sleep(0.4)  # this loop stalls; the sender's goes on sending
        ended = time.monotonic()  # with the stall's packets still unread
        await packets.read_up_to(ended)
        reached, behind = packets.between(begun, ended)
    assert len(reached) >= 30  # 700 ms of 20 ms packets
    assert float(np.max(np.diff(reached))) < 0.1  # the stall's 400 ms is not among them
    assert ended - reached[-1] < 0.1  # the packets that waited through it are counted
    assert behind > 0.3  # and the first of them waited about as long as the stall


def tone(frames: int) -> bytes:
    t = np.arange(frames * FRAME_SAMPLES) / SAMPLE_RATE
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


async def test_the_mic_knows_which_frame_carries_the_last_sample_of_what_it_says():
    mic = TimedMic()
    mic.play(bytes(FRAME_BYTES // 2))  # half a frame still queued from before
    speech = np.full(3 * FRAME_SAMPLES - 50, 1000, "<i2").tobytes()  # not a whole frame
    last = mic.say(speech, after=bytes(2 * FRAME_BYTES))
    frames = [(await asyncio.wait_for(mic.next_frame(), WAIT_S))[0] for _ in range(last + 2)]
    assert len(mic.sent_at) == last + 2
    end = FRAME_BYTES // 2 + len(speech) - last * FRAME_BYTES  # where it ends in that frame
    assert 0 < end <= FRAME_BYTES
    assert frames[last][end - 2:end] == speech[-2:] and not any(frames[last][end:])
    assert not any(frames[last + 1])  # the silence after it
    mic.stop()


async def test_a_reply_is_timed_from_packet_sent_to_packet_reached_not_by_a_stalled_loop(
        other_loop):
    """The sender says a tone while the receiver's loop is stalled: the first loud frame's
    packet is found by its RTP timestamp, and it reached the socket moments after the
    mic sent it, though the loop heard it only once the stall was over."""
    mic = TimedMic()
    onset: list[tuple[float, int | None]] = []
    async with peers(other_loop, mic, hearing_loud_frames(onset)) as receiver:
        packets = SocketArrivals(receiver)
        await asyncio.sleep(0.3)
        _, first = await said_in_a_stall(other_loop, mic, tone(5))  # the tone arrives then
        deadline = time.monotonic() + WAIT_S
        while not onset:
            assert time.monotonic() < deadline, "the tone was not heard"
            await asyncio.sleep(0.02)
        while len(mic.sent_at) <= first:
            await asyncio.sleep(0.02)
        sent = mic.sent_at[first]
    heard_at, onset_pts = onset[0]
    reached = packets.reached_at(onset_pts)
    assert reached is not None, "the loud frame's packet was not found by its timestamp"
    assert -0.005 < reached - sent < 0.1  # the first loud packet left, then reached at once
    assert heard_at - sent > 0.3  # the loop heard it only after the stall


def hearing_loud_frames(loud: list[tuple[float, int | None]]
                        ) -> Callable[[MediaStreamTrack], None]:
    """An ``on_track`` for :func:`peers` that notes in ``loud`` each loud frame this loop
    hears: when it heard it, and the frame's pts."""
    pts: list[int | None] = [None]

    def hear(pcm: bytes) -> None:
        if loudness(pcm) > LOUD_RMS:
            loud.append((time.monotonic(), pts[0]))

    def note(value: int | None) -> None:
        pts[0] = value

    def on_track(track: MediaStreamTrack) -> None:
        asyncio.ensure_future(drain_track(NotingPts(track, note), hear))

    return on_track


STALL_S = 0.5
SAID_AFTER_S = 0.05


async def said_in_a_stall(other_loop: asyncio.AbstractEventLoop, mic: TimedMic,
                          speech: bytes) -> tuple[float, int]:
    """Stall this loop for :data:`STALL_S` while the sender's loop says ``speech``
    :data:`SAID_AFTER_S` into the stall (said before it, the speech could be heard
    before it began): when the stall ended, and :func:`_say`'s index."""
    async def later() -> int:
        await asyncio.sleep(SAID_AFTER_S)
        return await _say(mic, speech)

    said = asyncio.run_coroutine_threadsafe(later(), other_loop)
    time.sleep(STALL_S)  # no step of this loop between the two: nothing is heard early
    ended = time.monotonic()
    return ended, await asyncio.wait_for(asyncio.wrap_future(said), WAIT_S)


async def _say(mic: TimedMic, speech: bytes) -> int:
    """On the sender's loop: say ``speech``; the index of the frame carrying its first
    sample (the frame after what is queued)."""
    return mic.say(speech) - (len(speech) - 1) // FRAME_BYTES


async def test_a_reply_is_the_first_loud_packet_that_reached_the_socket_after_the_speech(
        other_loop):
    """A loop that reads its socket late hears the end of one tone after the moment the
    next was asked for: the next one's packets are found by when they reached the
    socket, not by when the loop heard them."""
    mic = TimedMic()
    loud: list[tuple[float, int | None]] = []
    async with peers(other_loop, mic, hearing_loud_frames(loud)) as receiver:
        packets = SocketArrivals(receiver)
        await asyncio.sleep(0.3)
        # "the speech ended" as the stall did, the first tone still unread
        moment, _ = await said_in_a_stall(other_loop, mic, tone(10))
        first = await asyncio.wait_for(there(other_loop, _say(mic, tone(5))), WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while len(mic.sent_at) <= first + 5:
            assert time.monotonic() < deadline, "the second tone was not sent"
            await asyncio.sleep(0.02)
        await packets.read_up_to(mic.sent_at[first + 5])
        second_sent = mic.sent_at[first]
    assert len(loud) >= 12 and all(heard > moment for heard, _ in loud)  # both, after it
    stamps = [stamp for _, stamp in loud]
    reached = first_reached_after(packets, stamps, moment)
    assert reached is not None
    assert packets.reached_at(stamps[0]) < moment  # the loop's first loud frame: tone one
    assert -0.005 < reached - second_sent < 0.1  # the reply found: tone two's first
