"""The edge's outbound track: a short queue of encoded model audio, paced at real time."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from proto import audio
from services.media_edge.tracks import DTX_HANGOVER_FRAMES, DTX_INTERVAL_FRAMES, DownlinkTrack
from services.runtime.media import FRAME_SAMPLES, TIME_BASE
from services.runtime.voice_codec import DTX_PACKET, SILENCE_PACKET


def frame(n: int) -> bytes:
    return bytes([n % 256]) * audio.FRAME_BYTES


def packet(n: int) -> bytes:
    """A stand-in Opus packet, told apart by its first byte (the track never parses it)."""
    return bytes([0x78, n % 256])


def push(track: DownlinkTrack, n: int, capture_ns: int = 0) -> None:
    track.push(frame(n), packet(n), capture_ns)


def stale_drops() -> float:
    return REGISTRY.get_sample_value("voxrelay_edge_frames_dropped_total",
                                     {"reason": "stale"}) or 0.0


def catch_up_drops() -> float:
    return REGISTRY.get_sample_value("voxrelay_edge_frames_dropped_total",
                                     {"reason": "catch_up"}) or 0.0


def client_ages() -> tuple[float, float]:
    """(count, sum) of voxrelay_frame_age_seconds{at="client"}."""
    labels = {"at": "client"}
    return (REGISTRY.get_sample_value("voxrelay_frame_age_seconds_count", labels) or 0.0,
            REGISTRY.get_sample_value("voxrelay_frame_age_seconds_sum", labels) or 0.0)


async def test_a_full_queue_drops_the_oldest_frame_and_counts_it():
    track = DownlinkTrack(max_frames=3)
    before = stale_drops()
    for n in range(5):
        push(track, n)
    assert track.queued == 3
    assert stale_drops() - before == 2
    played = [bytes(await track.recv()) for _ in range(3)]
    assert played == [packet(n) for n in (2, 3, 4)]


async def test_an_empty_queue_plays_silence_at_20_ms_a_frame():
    track = DownlinkTrack(max_frames=10)
    started = time.monotonic()
    packets = [await track.recv() for _ in range(4)]
    elapsed = time.monotonic() - started
    assert elapsed >= 0.055, "three frames after the first wait 20 ms each"
    assert [p.pts for p in packets] == [0, 480, 960, 1440]
    assert all(p.time_base == TIME_BASE for p in packets)
    assert all(bytes(p) == SILENCE_PACKET for p in packets)


async def test_a_client_that_plays_dtx_gets_the_pauses_as_a_packet_every_400_ms():
    track = DownlinkTrack(max_frames=10)
    track.dtx = True
    hangover = [await track.recv() for _ in range(DTX_HANGOVER_FRAMES)]
    assert all(bytes(p) == SILENCE_PACKET for p in hangover)
    first = await track.recv()
    assert bytes(first) == DTX_PACKET and first.pts == DTX_HANGOVER_FRAMES * FRAME_SAMPLES

    started = time.monotonic()
    second = await track.recv()
    assert time.monotonic() - started >= 0.35, "nothing for 400 ms"
    assert bytes(second) == DTX_PACKET
    assert second.pts == first.pts + DTX_INTERVAL_FRAMES * FRAME_SAMPLES, "the clock jumps"

    # The model speaks again 100 ms on: its frame goes at once, in the slot it came in.
    asyncio.get_running_loop().call_later(0.1, push, track, 1)
    started = time.monotonic()
    voice = await track.recv()
    assert bytes(voice) == packet(1)
    assert time.monotonic() - started < 0.3, "not held until the next DTX packet was due"
    assert second.pts + 3 * FRAME_SAMPLES <= voice.pts <= second.pts + 8 * FRAME_SAMPLES
    after = await track.recv()
    assert bytes(after) == SILENCE_PACKET and after.pts == voice.pts + FRAME_SAMPLES, \
        "after the voice, silence again until the hangover is over"


async def test_clear_drops_everything_queued_at_once():
    track = DownlinkTrack(max_frames=10)
    for n in range(1, 7):
        push(track, n)
    assert track.clear() == 6 and track.queued == 0
    assert bytes(await track.recv()) == SILENCE_PACKET


async def test_a_backlog_loses_its_silent_frames_in_the_next_pause_never_its_speech():
    """Frames arrive at the rate they leave, so a backlog left by a stall would keep its
    delay for good; the pause after the speech drains it."""
    now = [100.0]
    track = DownlinkTrack(max_frames=10, clock=lambda: now[0])
    before = catch_up_drops()
    for n in range(1, 6):  # a stall: 100 ms of speech arrive at once
        push(track, n)
    played = []
    for _ in range(12):  # then a frame every 20 ms: silence (frame 0), the reply is over
        push(track, 0)
        played.append(bytes(await track.recv()))
        now[0] += 0.02
    assert played[:6] == [packet(n) for n in (1, 2, 3, 4, 5, 0)], "all speech, in order"
    assert track.queued == 0, "the backlog is gone: each frame leaves as it arrives"
    assert catch_up_drops() - before == 5


async def test_after_a_stall_the_track_resumes_instead_of_bursting():
    now = [100.0]
    track = DownlinkTrack(max_frames=10, clock=lambda: now[0])
    await track.recv()
    now[0] += 5.0  # the loop stalled for 5 s
    await track.recv()
    started = time.monotonic()
    await track.recv()
    assert time.monotonic() - started >= 0.015, "the next frame is due 20 ms later, not now"


async def test_a_frame_handed_out_observes_its_age_since_capture():
    track = DownlinkTrack(max_frames=10)
    (count, total) = client_ages()
    push(track, 1, time.time_ns() - 50_000_000)
    push(track, 2)  # capture time unknown: no age
    await track.recv()
    await track.recv()
    await track.recv()  # silence: no age either
    after_count, after_total = client_ages()
    assert after_count - count == 1
    assert 0.05 <= after_total - total < 0.5


async def test_a_watch_sees_queued_frames_until_it_has_seen_enough():
    track = DownlinkTrack(max_frames=10)
    seen: list[bytes] = []
    track.watch = lambda pcm: seen.append(pcm) or len(seen) == 2
    await track.recv()  # nothing queued: silence is not shown
    for n in (1, 2, 3):
        push(track, n)
    for _ in range(3):
        await track.recv()
    assert seen == [frame(1), frame(2)]
    assert track.watch is None


def test_frames_must_be_20_ms():
    track = DownlinkTrack(max_frames=2)
    with pytest.raises(ValueError, match="960 bytes"):
        track.push(bytes(100), packet(1))
    with pytest.raises(ValueError, match="max_frames"):
        DownlinkTrack(max_frames=0)
