import asyncio

from proto.audio import FRAME_BYTES, FRAME_SAMPLES
from services.runtime.media import NUDGE_AFTER_IDLE_SLOTS, ArrivalPacer, Framer, Pacer, pcm_frame
from tests.support.clock import ManualClock


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
    clock = ManualClock()
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
    clock = ManualClock()  # frozen: slot 1 is open, due 20 ms on
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
    clock = ManualClock()
    pacer = ArrivalPacer(clock)
    assert await pacer.next(["queued"]) == 0
    assert await pacer.next(["1", "2"]) == FRAME_SAMPLES  # in its slot: at once
    early = asyncio.create_task(pacer.next(["2"]))  # queued with 1: slot 2 opens 20 ms on
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not early.done()
    assert await asyncio.wait_for(early, 1) == 2 * FRAME_SAMPLES
    # nothing arrives: the slot ends on its timer and the track fills it
    assert await asyncio.wait_for(pacer.next([]), 1) == 3 * FRAME_SAMPLES


async def test_arrival_pacer_follows_the_frames_after_a_late_one_instead_of_a_slot_behind():
    clock = ManualClock()
    pacer = ArrivalPacer(clock)
    assert await pacer.next(["queued"]) == 0  # frame 0 opens the stream at 100.000
    clock.now += 0.010
    assert await pacer.next(["queued"]) == FRAME_SAMPLES  # frame 1, on arrival (slot 1)
    clock.now += 0.031  # frame 2 is late: slot 2 (100.020-100.040) ended empty
    assert await pacer.next([]) == 2 * FRAME_SAMPLES
    clock.now += 0.002
    assert await asyncio.wait_for(pacer.next(["late"]), 0.001) == 3 * FRAME_SAMPLES  # slot 3
    clock.now += 0.007  # frame 3 on time (100.050), before slot 4 opens (100.060)
    assert await asyncio.wait_for(pacer.next(["on time"]), 0.001) == 4 * FRAME_SAMPLES
    assert pacer.realigned == 1
    clock.now += 0.020  # and the ones after it go on arrival too, nothing realigned again
    assert await asyncio.wait_for(pacer.next(["on time"]), 0.001) == 5 * FRAME_SAMPLES
    clock.now += 0.019
    assert await asyncio.wait_for(pacer.next(["a little early"]), 0.001) == 6 * FRAME_SAMPLES
    assert pacer.realigned == 1


async def test_arrival_pacer_moves_its_slots_when_a_frame_comes_a_slot_early():
    """The source put a frame of silence just ahead of this one: it came after the frame
    before it went, but before its slot opened."""
    clock = ManualClock()
    pacer = ArrivalPacer(clock)
    assert await pacer.next(["0"]) == 0
    clock.now += 0.010
    assert await pacer.next(["silence"]) == FRAME_SAMPLES  # alone, in slot 1
    clock.now += 0.002  # slot 2 opens at 100.020
    assert await asyncio.wait_for(pacer.next(["speech"]), 0.001) == 2 * FRAME_SAMPLES
    assert pacer.realigned == 1


async def test_a_nudge_sends_a_slot_of_silence_in_this_wake_up_only_near_its_end():
    clock = ManualClock()  # frozen between steps, so only arrivals and nudges end a wait
    pacer = ArrivalPacer(clock)
    assert await pacer.next(["speech"]) == 0
    clock.now += 0.001  # slot 1 ends at 100.020, 19 ms on
    waiting = asyncio.create_task(pacer.next([]))
    await asyncio.sleep(0)
    pacer.nudge()  # frames were flowing: a late one keeps its whole slot
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.now += 0.019
    assert await asyncio.wait_for(waiting, 1) == FRAME_SAMPLES  # its timer
    for slot in range(2, 2 + NUDGE_AFTER_IDLE_SLOTS):  # the stream falls idle
        clock.now += 0.020
        assert await asyncio.wait_for(pacer.next([]), 0.005) == slot * FRAME_SAMPLES
    clock.now += 0.001  # the next slot ends 19 ms on
    waiting = asyncio.create_task(pacer.next([]))
    await asyncio.sleep(0)
    pacer.nudge(slack_s=0.004)  # too early for that slack
    await asyncio.sleep(0)
    assert not waiting.done()
    pacer.nudge()  # a slot's worth of slack: the silence goes now, 19 ms early
    assert await asyncio.wait_for(waiting, 0.005) == 7 * FRAME_SAMPLES
    assert pacer.nudged == 1
    # the slots stay put: the next still ends 39 ms on, beyond a nudge
    waiting = asyncio.create_task(pacer.next([]))
    await asyncio.sleep(0)
    pacer.nudge()
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.now += 0.020
    pacer.nudge()
    assert await asyncio.wait_for(waiting, 0.005) == 8 * FRAME_SAMPLES
    assert pacer.nudged == 2
