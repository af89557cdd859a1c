import asyncio

from proto.audio import FRAME_BYTES, FRAME_SAMPLES
from services.runtime.media import Framer, Pacer, pcm_frame


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_framer_cuts_any_sizes_into_exact_frames():
    framer = Framer()
    stream = bytes(range(256)) * 30  # 7680 bytes = 8 frames
    frames = []
    for size in (100, 1000, 1, 3000, 3579):
        frames += framer.push(stream[:size])
        stream = stream[size:]
    assert [len(f) for f in frames] == [FRAME_BYTES] * 8
    assert framer.pending_bytes == 0
    assert b"".join(frames) == (bytes(range(256)) * 30)


def test_pacer_counts_pts_and_restarts_after_a_stall():
    clock = FakeClock()
    pacer = Pacer(clock, max_catch_up_s=0.2)
    assert asyncio.run(pacer.next()) == 0
    clock.now += 0.02
    assert asyncio.run(pacer.next()) == FRAME_SAMPLES
    clock.now += 5.0  # the consumer stalled: no burst of 250 frames, the clock restarts
    assert asyncio.run(pacer.next()) == 2 * FRAME_SAMPLES
    clock.now += 0.02
    assert asyncio.run(pacer.next()) == 3 * FRAME_SAMPLES


def test_pcm_frame_is_24k_mono_20ms():
    frame = pcm_frame(bytes(FRAME_BYTES), 480)
    assert (frame.sample_rate, frame.samples, frame.layout.name, frame.pts) == (24000, 480, "mono", 480)
