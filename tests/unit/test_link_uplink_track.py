"""The link's uplink track: the mixer's frames toward the model, paced at real time."""

from __future__ import annotations

from prometheus_client import REGISTRY

from proto import audio
from services.openai_link.uplink_track import MAX_QUEUED, UplinkTrack

SPEECH = (b"\x00\x10" * audio.FRAME_SAMPLES)
SILENT = bytes(audio.FRAME_BYTES)


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("voxrelay_link_frames_dropped_total",
                                     {"reason": reason}) or 0.0


async def test_a_backlog_loses_its_silent_frames_in_the_next_pause_never_its_speech():
    now = [100.0]
    track = UplinkTrack(clock=lambda: now[0])
    sent: list[int] = []
    track.on_sent = sent.append
    before = dropped("uplink_catch_up")
    backlog = MAX_QUEUED - 1
    for n in range(1, backlog + 1):  # a stall: the mixer's frames arrive at once
        track.push(SPEECH, capture_ns=n)
    for n in range(100, 110):  # then one a slot, the speaker has stopped
        track.push(SILENT, capture_ns=n)
        await track.recv()
        now[0] += 0.02
    assert sent[:backlog + 1] == [*range(1, backlog + 1), 100 + backlog], "all speech, in order"
    assert track.queued == 0, "the backlog is gone: each frame leaves as it arrives"
    assert dropped("uplink_catch_up") - before == backlog
    assert track.dropped == 0, "nothing overflowed"


async def test_a_full_queue_drops_the_oldest_frame():
    track = UplinkTrack()
    for n in range(1, MAX_QUEUED + 3):
        track.push(SPEECH, capture_ns=n)
    assert track.queued == MAX_QUEUED and track.dropped == 2
