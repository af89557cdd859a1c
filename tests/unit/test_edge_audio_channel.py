"""The datachannel transport's pieces: PCM16 messages in, paced PCM16 messages out."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from proto import audio, client_audio
from services.media_edge.audio_channel import MAX_BUFFERED_BYTES, ChannelDownlink
from services.runtime.pcm_messages import CHUNK_BYTES, FRAME_NS, Dropped, PcmMessages


class Channel:
    """Stands in for an open RTCDataChannel: keeps what is sent and when."""

    readyState = "open"

    def __init__(self) -> None:
        self.bufferedAmount = 0
        self.sent: list[tuple[float, bytes]] = []

    def send(self, data: bytes) -> None:
        self.sent.append((time.monotonic(), data))


def frame(n: int) -> bytes:
    return bytes([n % 256]) * audio.FRAME_BYTES


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("voxrelay_edge_datachannel_audio_dropped_total",
                                     {"direction": "out", "reason": reason}) or 0.0


async def sending(downlink: ChannelDownlink, until: int, timeout: float = 2.0) -> None:
    """Run the downlink until its channel has ``until`` messages."""
    task = asyncio.ensure_future(downlink.run())
    try:
        async with asyncio.timeout(timeout):
            while len(downlink.channel.sent) < until:  # type: ignore[union-attr]
                await asyncio.sleep(0.005)
    finally:
        downlink.stop()
        await task


async def test_frames_go_out_paced_with_their_sequence_numbers():
    downlink, channel = ChannelDownlink(max_frames=20), Channel()
    downlink.attach(channel)  # type: ignore[arg-type]
    for n in range(10):
        downlink.push(frame(n))
    await sending(downlink, 10)
    messages = [client_audio.unpack(data) for _, data in channel.sent]
    assert [seq for seq, _, _ in messages] == list(range(10))
    assert [pcm for _, _, pcm in messages] == [frame(n) for n in range(10)]
    assert all(len(data) == client_audio.MESSAGE_BYTES <= 1160 for _, data in channel.sent)
    sent_at = [t for t, _ in channel.sent]
    # real time: none leaves more than one 20 ms slot early, so the tenth ≥ 160 ms after
    # the first (a burst would send all ten at once)
    assert sent_at[-1] - sent_at[0] >= 0.15
    assert messages[-1][1] - messages[0][1] >= 150  # the header's ms says so too


async def test_a_full_queue_drops_the_oldest_and_the_client_sees_the_gap():
    downlink, channel = ChannelDownlink(max_frames=3), Channel()
    downlink.attach(channel)  # type: ignore[arg-type]
    before = dropped("stale")
    for n in range(5):
        downlink.push(frame(n))
    assert dropped("stale") - before == 2
    await sending(downlink, 3)
    assert [client_audio.unpack(d)[0] for _, d in channel.sent] == [2, 3, 4]


async def test_a_channel_that_is_not_draining_gets_no_more_audio():
    downlink, channel = ChannelDownlink(max_frames=20), Channel()
    downlink.attach(channel)  # type: ignore[arg-type]
    before = dropped("backpressure")
    channel.bufferedAmount = MAX_BUFFERED_BYTES + 1
    for n in range(3):
        downlink.push(frame(n))
    task = asyncio.ensure_future(downlink.run())
    async with asyncio.timeout(2):
        while downlink.queued:
            await asyncio.sleep(0.005)
    channel.bufferedAmount = 0  # drained: the present goes out, with the gap in seq
    downlink.push(frame(3))
    async with asyncio.timeout(2):
        while not channel.sent:
            await asyncio.sleep(0.005)
    downlink.stop()
    await task
    assert dropped("backpressure") - before == 3
    assert [client_audio.unpack(d)[0] for _, d in channel.sent] == [3]


async def test_a_barge_in_drops_what_is_queued_at_once():
    downlink = ChannelDownlink(max_frames=20)
    before = dropped("interrupted")
    for n in range(6):
        downlink.push(frame(n))
    assert downlink.clear() == 6 and downlink.queued == 0
    assert dropped("interrupted") - before == 6


def test_a_wrong_frame_size_is_refused():
    with pytest.raises(ValueError):
        ChannelDownlink(max_frames=2).push(b"\x00" * 10)


def test_messages_of_whole_10_ms_are_framed_with_capture_times():
    messages = PcmMessages()
    assert messages.frames(b"\x01" * CHUNK_BYTES, 1_000_000_000) == []  # half a frame waits
    [(pcm, at)] = messages.frames(b"\x02" * CHUNK_BYTES, 2_000_000_000)
    assert pcm == b"\x01" * CHUNK_BYTES + b"\x02" * CHUNK_BYTES and at == 2_000_000_000
    ten = messages.frames(b"\x03" * (20 * CHUNK_BYTES), 3_000_000_000)
    assert len(ten) == 10
    assert [at for _, at in ten] == [3_000_000_000 - (9 - i) * FRAME_NS for i in range(10)]


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES + 1, 21 * CHUNK_BYTES,
                                  64 * 1024])
def test_other_sizes_are_dropped(size: int):
    with pytest.raises(Dropped) as refused:
        PcmMessages().frames(b"\x00" * size, 0)
    assert refused.value.reason == "size"


def test_audio_running_ahead_of_real_time_is_dropped():
    now = [0.0]
    messages = PcmMessages(clock=lambda: now[0])
    taken = 0
    for _ in range(20):  # 4 s of audio at once: 2 s is the most a stall can explain
        try:
            taken += len(messages.frames(b"\x00" * (20 * CHUNK_BYTES), 0))
        except Dropped as e:
            assert e.reason == "ahead"
    assert taken == 100
    now[0] += 1.0  # a second later there is room for a second more
    assert len(messages.frames(b"\x00" * (20 * CHUNK_BYTES), 0)) == 10
