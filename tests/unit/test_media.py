import asyncio

from proto.audio import FRAME_BYTES, FRAME_SAMPLES
from services.runtime.media import ArrivalPacer, Framer, Pacer, pcm_frame


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


async def test_arrival_pacer_lets_a_frame_go_as_soon_as_it_arrives_in_its_slot():
    clock = FakeClock()  # frozen: slot 1 is open, due 20 ms on
    pacer = ArrivalPacer(clock)
    queue: list[bytes] = []
    assert await pacer.next(queue) == 0
    waiting = asyncio.create_task(pacer.next(queue))
    await asyncio.sleep(0)
    assert not waiting.done(), "nothing queued: it waits"
    queue.append(b"frame")
    pacer.arrived()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert waiting.done(), "the frame went on arrival, not when its slot ended"
    assert waiting.result() == FRAME_SAMPLES


async def test_arrival_pacer_holds_a_frame_queued_before_its_slot_and_fills_empty_slots():
    clock = FakeClock()
    pacer = ArrivalPacer(clock)
    assert await pacer.next() == 0
    assert await pacer.next(["queued"]) == FRAME_SAMPLES  # in its slot: at once
    early = asyncio.create_task(pacer.next(["queued"]))  # slot 2 opens 20 ms on
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not early.done()
    assert await asyncio.wait_for(early, 1) == 2 * FRAME_SAMPLES
    # nothing arrives: the slot ends on its timer and the track fills it
    assert await asyncio.wait_for(pacer.next([]), 1) == 3 * FRAME_SAMPLES
