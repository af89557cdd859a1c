"""Jitter buffers, the tick schedule and MixerSession (mix, voice activity, echo gating),
driven by an injected clock."""

from __future__ import annotations

import asyncio
import gc
import math
import weakref
from collections.abc import Callable

import numpy as np
import pytest
import zmq

from proto import ids
from proto.audio import FRAME_SAMPLES
from services.mixer.activity import Transition
from services.mixer import config as mixer_config
from services.mixer.clock import PERIOD_S, SKIP_AFTER_TICKS, SharedClock, next_tick
from services.mixer.echo import FRAME as ECHO_FRAME
from services.mixer.echo import EchoSettings
from services.mixer.gating import PAUSE_TICKS, EchoGating
from services.mixer.jitter import DropReason, Frame, JitterBuffer, JitterSettings
from services.mixer.mix import SILENCE
from services.mixer.mixer import Mixer, admit
from services.mixer.session import LATE_AFTER_S, MixerSession, MixFrame, SessionSettings
from services.runtime.media import SilenceGate
from tests.support.speech import rms_dbfs, speak

FRAME_NS = 20_000_000
T0 = 1_700_000_000_000_000_000


def level(value: int) -> bytes:
    """A frame holding one constant sample value (easy to recognise in a mix)."""
    return np.full(FRAME_SAMPLES, value, dtype="<i2").tobytes()


MARK = 1000
"""Added to a frame's seq to make its sample value: recognisable, and audible (a quiet
frame is one a lone client's buffer may skip)."""


def marked(seq: int) -> bytes:
    return level(MARK + seq)


def value_of(pcm: bytes) -> set[int]:
    return set(np.frombuffer(pcm, dtype="<i2").tolist())


def frame(seq: int, value: int | None = None) -> Frame:
    return Frame(seq, T0 + seq * FRAME_NS, marked(seq) if value is None else level(value))


def drain(buffer: JitterBuffer, ticks: int) -> list[int | None]:
    out = []
    for _ in range(ticks):
        popped = buffer.pop()
        out.append(None if popped is None else popped.seq)
    return out


# --- jitter buffer -----------------------------------------------------------------------


def test_a_burst_does_not_leave_lasting_delay():
    buffer = JitterBuffer(JitterSettings(target_frames=2, max_frames=6))
    for seq in range(5):  # a burst: five frames at once
        buffer.push(frame(seq))
    seq = 5
    depths = []
    for _ in range(5 * 50):  # then 5 s of one frame in, one frame out
        buffer.push(frame(seq))
        seq += 1
        assert buffer.pop() is not None
        depths.append(buffer.depth)
    assert depths[0] >= 4  # the burst's delay at first ...
    assert max(depths[-50:]) <= 2  # ... is shed, one frame a second, down to the target
    assert buffer.shed == depths[0] - max(depths[-50:])


def test_steady_arrival_at_target_depth_sheds_nothing():
    buffer = JitterBuffer(JitterSettings(target_frames=2))
    seq = 0
    for _ in range(3 * 50):
        buffer.push(frame(seq))
        seq += 1
        buffer.pop()
    assert buffer.shed == 0


def test_jitter_buffer_plays_frames_in_seq_order_after_priming():
    buffer = JitterBuffer(JitterSettings(target_frames=2))
    for seq in (1, 0, 3, 2):
        assert buffer.push(frame(seq)) == []
    assert drain(buffer, 5) == [0, 1, 2, 3, None]


def test_jitter_buffer_waits_for_the_target_depth_before_playing():
    buffer = JitterBuffer(JitterSettings(target_frames=2))
    buffer.push(frame(0))
    assert buffer.pop() is None  # one frame of two: keep buffering
    buffer.push(frame(1))
    assert drain(buffer, 2) == [0, 1]


def test_a_lone_frame_is_played_after_waiting_the_target_ticks():
    buffer = JitterBuffer(JitterSettings(target_frames=2))
    buffer.push(frame(0))
    assert drain(buffer, 3) == [None, None, 0]


def test_duplicates_and_already_played_frames_are_dropped_as_stale():
    buffer = JitterBuffer(JitterSettings(target_frames=1))
    buffer.push(frame(5))
    assert buffer.push(frame(5)) == [DropReason.STALE]  # duplicate while buffered
    assert drain(buffer, 1) == [5]
    assert buffer.push(frame(5)) == [DropReason.STALE]  # duplicate after playout
    assert buffer.push(frame(4)) == [DropReason.STALE]  # older than what was played
    assert buffer.depth == 0


def test_frames_older_than_150_ms_before_the_newest_are_dropped():
    buffer = JitterBuffer(JitterSettings(target_frames=4, max_frames=20))
    buffer.push(frame(0))
    buffer.push(frame(1))
    # The newest arrives 200 ms of capture time later: both buffered frames are stale.
    assert buffer.push(frame(10)) == [DropReason.STALE, DropReason.STALE]
    assert buffer.push(frame(2)) == [DropReason.STALE]  # arrives too late to matter
    assert buffer.push(frame(4)) == []  # 120 ms before the newest: still in time
    assert buffer.depth == 2


def test_overflow_drops_the_oldest_frame():
    buffer = JitterBuffer(JitterSettings(target_frames=2, max_frames=3))
    reasons = [buffer.push(frame(seq)) for seq in range(5)]
    assert reasons == [[], [], [], [DropReason.OVERFLOW], [DropReason.OVERFLOW]]
    assert drain(buffer, 3) == [2, 3, 4]


def test_a_gap_is_skipped_and_its_late_frame_dropped():
    buffer = JitterBuffer(JitterSettings(target_frames=2))
    for seq in (0, 1, 3):
        buffer.push(frame(seq))
    assert drain(buffer, 3) == [0, 1, 3]  # frame 2 missing: the mix does not wait for it
    assert buffer.push(frame(2)) == [DropReason.STALE]


def test_a_restarted_stream_is_accepted_from_seq_zero():
    buffer = JitterBuffer(JitterSettings(target_frames=1))
    for seq in range(3):
        buffer.push(frame(seq))
    assert drain(buffer, 3) == [0, 1, 2]
    # The edge rebuilt the client's peer: seq starts again, capture times go on.
    assert buffer.push(Frame(0, T0 + 50 * FRAME_NS, level(9))) == []
    assert drain(buffer, 1) == [0]


def test_trim_keeps_the_target_depth_and_drops_the_rest_as_stale():
    buffer = JitterBuffer(JitterSettings(target_frames=2, max_frames=6))
    for seq in range(5):
        buffer.push(frame(seq))
    assert buffer.trim() == [DropReason.STALE] * 3
    assert buffer.push(frame(1)) == [DropReason.STALE]  # trimmed frames count as played
    assert drain(buffer, 2) == [3, 4]


def test_invalid_jitter_settings_name_the_field():
    with pytest.raises(ValueError, match="'max_frames'"):
        JitterSettings(target_frames=3, max_frames=2)


# --- tick schedule -----------------------------------------------------------------------


def test_a_slightly_late_tick_is_run_not_skipped():
    assert next_tick(100.0, 5, 100.0 + 5 * PERIOD_S + 0.035) == (5, 0)


def test_a_tick_several_periods_late_skips_to_now():
    late = SKIP_AFTER_TICKS + 2
    assert next_tick(100.0, 5, 100.0 + (5 + late) * PERIOD_S + 0.001) == (5 + late, late)


# --- MixerSession with an injected clock ---------------------------------------------------


def session_with(*clients: str, target: int = 1) -> MixerSession:
    session = MixerSession(ids.new_id(), SessionSettings(JitterSettings(target_frames=target)))
    for client in clients:
        session.add_client(client)
    return session


def test_a_session_without_clients_ticks_silence_stamped_with_the_clock():
    session = session_with()
    frames = [session.tick(T0 + n * FRAME_NS) for n in range(3)]
    assert [f.pcm for f in frames] == [SILENCE] * 3
    assert [f.seq for f in frames] == [0, 1, 2]
    assert [f.capture_ns for f in frames] == [T0, T0 + FRAME_NS, T0 + 2 * FRAME_NS]


def test_a_mix_frame_carries_the_newest_contributing_capture_time():
    a, b = ids.new_id(), ids.new_id()
    session = session_with(a, b)
    session.receive(a, 0, T0, level(100))
    session.receive(b, 7, T0 + 3_000_000, level(20))
    mixed = session.tick(T0 + 99 * FRAME_NS)
    assert value_of(mixed.pcm) == {120} and mixed.speakers == 2
    assert mixed.capture_ns == T0 + 3_000_000


def test_a_stalled_client_does_not_stop_the_mix():
    talker, staller = ids.new_id(), ids.new_id()
    session = session_with(talker, staller)
    session.receive(staller, 0, T0, level(1000))
    heard = []
    for n in range(10):
        session.receive(talker, n, T0 + n * FRAME_NS, level(10))
        heard.append(value_of(session.tick(T0 + n * FRAME_NS).pcm))
    # One frame with both, then the talker alone while the other client sends nothing.
    assert heard == [{1010}] + [{10}] * 9


def test_a_late_frame_is_dropped_and_counted():
    client = ids.new_id()
    session = session_with(client)
    for seq in (0, 1, 3):
        session.receive(client, seq, T0 + seq * FRAME_NS, marked(seq))
    played = [value_of(session.tick(T0).pcm) for _ in range(3)]
    assert played == [{MARK}, {MARK + 1}, {MARK + 3}]
    session.receive(client, 2, T0 + 2 * FRAME_NS, marked(2))  # frame 2 shows up too late
    assert session.dropped[DropReason.STALE] == 1
    assert session.tick(T0).pcm == SILENCE


def test_frames_of_unknown_or_removed_clients_are_counted_not_mixed():
    client = ids.new_id()
    session = session_with(client)
    session.receive(ids.new_id(), 0, T0, level(5))
    session.remove_client(client)
    session.receive(client, 0, T0, level(5))
    assert session.dropped[DropReason.UNKNOWN] == 2
    assert session.tick(T0).pcm == SILENCE


def test_skipped_ticks_leave_a_seq_gap_and_trim_the_backlog():
    client = ids.new_id()
    session = session_with(client, target=2)
    for seq in range(6):
        session.receive(client, seq, T0 + seq * FRAME_NS, marked(seq))
    assert session.tick(T0).seq == 0
    session.skip(4)
    after = session.tick(T0)
    assert after.seq == 5
    assert value_of(after.pcm) == {MARK + 4}  # frames 1-3 were too late to play; 4 and 5 remain
    assert session.dropped[DropReason.STALE] == 3


async def test_a_started_session_publishes_one_frame_per_20_ms():
    published = []
    session = MixerSession(ids.new_id())
    session.start(published.append)
    try:
        async with asyncio.timeout(2):
            await session.wait_ticking()
        async with asyncio.timeout(5):
            while len(published) < 11:
                await asyncio.sleep(0.005)
    finally:
        session.stop()
    assert [f.seq for f in published[:11]] == list(range(11))
    # Silence is stamped with the wall clock at each tick: ten periods, not a burst
    # (generous bounds: other test runs share this machine).
    span_s = (published[10].capture_ns - published[0].capture_ns) / 1e9
    assert 0.12 <= span_s < 1.0
    count = len(published)
    await asyncio.sleep(0.1)
    assert len(published) == count  # stopped means stopped


class ManualClock:
    """Stands in for the mixer's SharedClock: the test runs each tick. A listener that
    answered ``math.inf`` sleeps through the ticks until it wakes, as on the real clock;
    any other answer is only recorded (the listener is ticked anyway). With ``busy``, as
    when another session needs every tick, sleeping listeners are ticked too."""

    def __init__(self, busy: bool = False) -> None:
        self.busy = busy
        self.listeners: dict[object, Callable[[int], float | None]] = {}
        self.tick = 0
        "The tick running now, else the next one."
        self.answers: list[float | None] = []
        self.asleep: set[object] = set()
        self.ran = 0
        "Listener ticks run."

    def add(self, key: object, on_tick: Callable[[int], float | None]) -> None:
        self.listeners[key] = on_tick

    def remove(self, key: object) -> None:
        self.listeners.pop(key, None)

    def wake(self, key: object) -> int:
        self.asleep.discard(key)
        return self.tick

    def next_slot(self) -> int:
        return self.tick

    def postpone(self, key: object, seconds: float) -> None:
        pass

    def run_tick(self) -> None:
        for key, on_tick in list(self.listeners.items()):
            if self.busy or key not in self.asleep:
                answer = on_tick(0)
                self.ran += 1
                self.answers.append(answer)
                if answer == math.inf:
                    self.asleep.add(key)
        self.tick += 1


class PromptMix:
    """A started lone-client session on a manual clock and a manual monotonic time."""

    def __init__(self, settings: SessionSettings | None = None, busy: bool = False) -> None:
        self.now = 0.0
        self.published: list[MixFrame] = []
        self.activity: list[tuple[str, Transition]] = []
        self.clock = ManualClock(busy)
        self.session = MixerSession(ids.new_id(), settings, monotonic=lambda: self.now,
                                    on_activity=lambda *change: self.activity.append(change))
        self.client = ids.new_id()
        self.session.add_client(self.client)
        self.session.start(self.published.append, clock=self.clock)  # type: ignore[arg-type]

    def tick_at(self, ms: float) -> None:
        self.now = ms / 1000
        self.clock.run_tick()

    def arrive_at(self, ms: float, seq: int, pcm: bytes | None = None,
                  silent_before: int = 0) -> int:
        """How many frames the arrival published."""
        self.now = ms / 1000
        before = len(self.published)
        self.session.receive(self.client, seq, T0 + seq * FRAME_NS,
                             marked(seq) if pcm is None else pcm, silent_before)
        return len(self.published) - before

    def heard(self) -> list[int]:
        return [min(value_of(f.pcm)) for f in self.published]


def test_a_lone_clients_frames_are_mixed_as_they_arrive_whatever_the_clocks_phase():
    """Frames arriving just before the tick one time and just after it the next all go on
    arrival, one per slot, with no tick's silence cut in between."""
    mix = PromptMix()
    mixed_on_arrival = []
    for seq in range(12):
        slot = 20 * (seq + 1)
        if seq % 2:
            mixed_on_arrival.append(mix.arrive_at(slot - 1, seq))
            mix.tick_at(slot)
        else:
            mix.tick_at(slot)
            mixed_on_arrival.append(mix.arrive_at(slot + 1, seq))
    assert mixed_on_arrival == [1] * 12
    assert mix.heard() == [0] + [MARK + seq for seq in range(12)]  # silence, then the client
    assert [f.seq for f in mix.published] == list(range(13))
    assert mix.session.prompt_frames == 12


def test_a_lone_clients_pause_is_filled_by_the_ticks_and_leaves_no_lasting_delay():
    mix = PromptMix()
    for seq in range(3):
        assert mix.arrive_at(20 * seq + 5, seq) == 1
    for slot in range(3, 8):  # then its edge sends nothing: the ticks mix silence
        mix.tick_at(20 * slot)
    # At 60 ms its next frame was not late yet (15 ms after the last): that tick mixed
    # nothing, the one at 80 ms mixed silence in its place.
    assert mix.heard() == [MARK, MARK + 1, MARK + 2, 0, 0, 0, 0]
    assert [f.seq for f in mix.published] == list(range(7))
    assert mix.arrive_at(165, 8, level(700), silent_before=5) == 1  # speech: on arrival
    assert mix.arrive_at(166, 9, level(800)) == 0  # together with it: waits
    mix.tick_at(180)  # the client is not late: the tick leaves it to the next arrival
    assert mix.heard()[-1] == 700
    assert mix.arrive_at(185, 10, level(900)) == 1
    assert mix.heard()[-1] == 800  # a frame behind, until a quiet frame drops it
    assert mix.arrive_at(205, 11, level(0)) == 1
    assert mix.arrive_at(225, 12, level(0)) == 1
    assert mix.heard()[-2:] == [900, 0] and mix.session.dropped[DropReason.CATCH_UP] == 1
    assert mix.arrive_at(245, 13, level(1000)) == 1
    assert mix.heard()[-1] == 1000  # on arrival again


@pytest.mark.parametrize("skip_silence", [True, False])
def test_the_slot_a_late_frame_left_empty_is_silence_on_the_bus_not_a_loss(skip_silence):
    mix = PromptMix()
    gate = SilenceGate(skip_silence, tail_frames=0)
    assert mix.arrive_at(0, 0) == 1
    mix.tick_at(20)  # 20 ms after it: its next frame is not late yet
    mix.tick_at(40)  # 40 ms: late; this tick's silence takes the slot after the empty one
    assert [(f.seq, f.empty_before) for f in mix.published] == [(0, 0), (2, 1)]
    assert mix.arrive_at(45, 1) == 1  # the late frame, on arrival, in the next slot
    assert mix.heard() == [MARK, 0, MARK + 1]
    sent = [(f.seq, admit(gate, f)) for f in mix.published]
    if skip_silence:  # the silence stays off the bus; the next frame counts both slots
        assert sent == [(0, 0), (2, None), (3, 2)]
    else:  # every frame goes; the empty slot is a gap
        assert sent == [(0, 0), (2, 0), (3, 0)]


def test_a_lone_client_mixed_on_arrival_needs_no_tick_until_its_next_frame_is_late():
    mix = PromptMix()
    assert mix.arrive_at(0, 0) == 1
    mix.tick_at(5)
    assert mix.clock.answers == [pytest.approx(LATE_AFTER_S - 0.005)]
    mix.tick_at(40)  # late: the tick mixes (silence), and the next one is needed
    assert mix.clock.answers[1] is None and len(mix.published) == 2


def _a_conversation(rest: bool, busy: bool = False
                    ) -> tuple[list[tuple[int, int, bytes]], PromptMix]:
    """A lone client's session through a model reply, pauses, speech, a second reply it
    speaks over, as the bus sees it (after the mixer's silence gate); ``busy``: the clock
    ticks for another session all along."""
    mix = PromptMix(SessionSettings(echo=EchoSettings(enabled=True), rest_when_quiet=rest),
                    busy)
    gate = SilenceGate(True, tail_frames=0)
    client_frames = {80 + i: (i, 0) for i in range(5)}
    client_frames |= {125 + i: (45 + i, 40 if i == 0 else 0) for i in range(3)}
    client_frames[131] = (51, 3)
    client_frames |= {166 + i: (86 + i, 31 if i == 0 else 0) for i in range(4)}  # over the model
    model_frames = {tick: [(level(600) if tick < 8 else SILENCE, 0)] for tick in range(10)}
    model_frames |= {tick: [(level(650), 150 if tick == 160 else 0)] for tick in range(160, 175)}
    model_frames[163].append((level(640), 0))  # two in one slot
    del model_frames[164]
    for tick in range(200):
        ms = tick * 20
        for pcm, silent_before in model_frames.get(tick, []):
            mix.now = (ms + 2) / 1000
            mix.session.receive_model(pcm, silent_before)
        mix.tick_at(ms + 10)
        if tick in client_frames:
            seq, silent_before = client_frames[tick]
            mix.arrive_at(ms + 15, seq, silent_before=silent_before)
    sent = [(f.seq, silent_before, f.pcm) for f in mix.published
            if (silent_before := admit(gate, f)) is not None]
    return sent, mix


@pytest.mark.parametrize("busy", [False, True], ids=["alone", "clock-busy-for-another"])
def test_a_quiet_session_lets_the_clock_sleep_and_the_bus_sees_the_same_stream(busy):
    ticked, every_tick = _a_conversation(rest=False)
    sent, resting = _a_conversation(rest=True, busy=busy)
    assert [seq for seq, _, _ in sent] == [seq for seq, _, _ in ticked]
    assert sent == ticked
    changes = [change for _, change in resting.activity]
    assert changes == [change for _, change in every_tick.activity] and len(changes) == 4
    assert resting.session.ducked == every_tick.session.ducked == 4  # speech over the model
    assert np.array_equal(resting.session._gating.reference.history,
                          every_tick.session._gating.reference.history)
    if not busy:
        assert resting.session.rested >= 90  # made up when it woke: the pauses
        assert resting.clock.ran < every_tick.clock.ran / 3, "the quiet ticks did not run"


async def test_with_a_second_client_frames_wait_for_the_tick():
    published: list = []
    session = MixerSession(ids.new_id())
    client, other = ids.new_id(), ids.new_id()
    session.add_client(client)
    session.add_client(other)
    session.start(published.append)
    try:
        async with asyncio.timeout(2):
            await session.wait_ticking()
        before = len(published)
        session.receive(client, 0, T0, marked(0))
        assert len(published) == before
    finally:
        session.stop()


def test_silence_kept_off_the_bus_is_not_a_gap_a_lone_client_resumes_on_arrival():
    buffer = JitterBuffer(JitterSettings())
    buffer.mix_on_arrival(True)
    for seq in range(3):
        buffer.push(frame(seq))
    assert drain(buffer, 6) == [0, 1, 2, None, None, None]  # then its edge sends nothing
    buffer.push(frame(40), silent_before=37)
    assert buffer.ready() and drain(buffer, 1) == [40]
    buffer.push(frame(50), silent_before=3)  # 6 frames lost besides the silence
    assert not buffer.ready() and drain(buffer, 1) == [50]


def test_mixing_on_arrival_a_backlog_goes_in_the_next_pause_not_in_speech():
    """Two frames arrived together leave a lone client a frame behind; its speech keeps
    that frame of delay (nothing audible is cut), its next quiet frame gives it back."""
    buffer = JitterBuffer(JitterSettings())
    buffer.mix_on_arrival(True)
    buffer.push(frame(0))
    buffer.push(frame(1))  # together: frame 1 waits for the next tick
    assert drain(buffer, 1) == [0]
    depths = []
    for seq in range(2, 6):  # then speech, one in, one out
        buffer.push(frame(seq))
        depths.append(buffer.depth)
        assert buffer.pop() is not None
    assert depths == [2, 2, 2, 2] and buffer.shed == 0
    for seq in range(6, 9):  # a pause: the quiet frame ahead goes
        buffer.push(frame(seq, value=0))
        buffer.pop()
    assert buffer.shed == 1 and buffer.depth == 0
    buffer.push(frame(9))
    assert buffer.ready() and drain(buffer, 1) == [9]  # speech again: mixed on arrival


def test_a_ticked_buffer_keeps_its_quiet_frames():
    buffer = JitterBuffer(JitterSettings(target_frames=2))
    for seq in range(4):
        buffer.push(frame(seq, value=0))
    assert drain(buffer, 4) == [0, 1, 2, 3] and buffer.shed == 0


def newest_in_reference(gating: EchoGating, frames: int) -> list[int]:
    """The level of each of the reference's newest ``frames`` (oldest first)."""
    history = gating.reference.history.reshape(-1, ECHO_FRAME)[-frames:]
    return [round(float(f.mean())) for f in history]


def test_model_silence_kept_off_the_bus_keeps_the_echo_reference_in_step():
    session = MixerSession(ids.new_id(), SessionSettings(echo=EchoSettings(enabled=True)))
    gating = session._gating
    session.receive_model(level(500))
    session.receive_model(level(500), silent_before=3)
    gating.update()
    assert newest_in_reference(gating, 5) == [500, 0, 0, 0, 500]
    session.receive_model(level(500), silent_before=10_000)  # the reference emptied by then
    gating.update()
    assert not gating.reference.history[:-ECHO_FRAME].any()


def test_the_echo_reference_goes_on_with_the_clock_while_the_model_pauses():
    gating = EchoGating(EchoSettings(enabled=True))
    gating.hear_model(level(500))
    gating.hear_model(SILENCE)  # the link's quiet tail, then nothing
    gating.update()
    for _ in range(PAUSE_TICKS - 1):  # arrivals may bunch: no pause yet
        gating.update()
    assert newest_in_reference(gating, 2) == [500, 0]
    gating.update()
    assert newest_in_reference(gating, PAUSE_TICKS + 2) == [500] + [0] * (PAUSE_TICKS + 1)
    for _ in range(5):
        gating.update()
    assert newest_in_reference(gating, 1) == [0]
    # The model speaks again; the link skipped the pause's 12 frames: 2 still to put in.
    gating.hear_model(level(700), silent_before=PAUSE_TICKS + 5 + 2)
    gating.update()
    assert newest_in_reference(gating, PAUSE_TICKS + 5 + 5) == [500, 0] + [0] * (
        PAUSE_TICKS + 5 + 2) + [700]


def test_a_stall_after_a_quiet_model_frame_is_undone_by_its_late_quiet_frames():
    gating = EchoGating(EchoSettings(enabled=True))
    gating.hear_model(level(500))
    gating.hear_model(SILENCE)
    gating.update()
    for _ in range(PAUSE_TICKS + 2):  # a stall, taken for a pause
        gating.update()
    for _ in range(PAUSE_TICKS + 2):  # every frame in it arrives late, none skipped
        gating.hear_model(SILENCE)
    gating.hear_model(level(700))
    gating.update()
    assert newest_in_reference(gating, PAUSE_TICKS + 5) == [500] + [0] * (PAUSE_TICKS + 3) + [
        700], "in step again: as many silent frames as the model sent"


def test_frames_stopping_after_sound_are_a_stall_not_a_pause():
    gating = EchoGating(EchoSettings(enabled=True))
    gating.hear_model(level(500))
    gating.update()
    for _ in range(PAUSE_TICKS * 3):
        gating.update()
    assert newest_in_reference(gating, 1) == [500]


async def test_sessions_on_one_shared_clock_tick_together_and_it_stops_with_the_last():
    clock = SharedClock("mixer")
    first, second = MixerSession(ids.new_id()), MixerSession(ids.new_id())
    from_first: list = []
    from_second: list = []
    first.start(from_first.append, clock)
    second.start(from_second.append, clock)
    try:
        async with asyncio.timeout(5):
            while len(from_second) < 5:
                await asyncio.sleep(0.005)
        assert len(clock) == 2 and clock.running
        # the same tick stamps both sessions' silence with the same wall-clock moment
        assert abs(from_first[-1].capture_ns - from_second[-1].capture_ns) < 5_000_000
        first.stop()
        assert clock.running, "the other session still ticks"
    finally:
        second.stop()
    assert not clock.running and len(clock) == 0


async def _ticks_until(ticks: list, count: int) -> None:
    async with asyncio.timeout(5):
        while len(ticks) < count:
            await asyncio.sleep(0.005)


async def test_a_clock_no_listener_needs_sleeps_then_wakes_to_its_next_slot():
    clock = SharedClock("mixer")
    ticks: list[int] = []

    def quiet(skipped: int) -> float:
        ticks.append(clock.tick)
        return math.inf

    clock.add("quiet", quiet)
    try:
        await _ticks_until(ticks, 1)
        await asyncio.sleep(0.15)
        assert ticks == [0] and clock.sleeping and clock.running
        woken = clock.wake("quiet")
        assert woken >= round(0.15 / PERIOD_S)  # the slots slept through are not run late
        await _ticks_until(ticks, 2)
        assert ticks == [0, woken] and clock.sleeping
    finally:
        clock.remove("quiet")
    assert not clock.running


async def test_a_tick_postponed_by_every_listener_does_not_run_before_it_is_needed():
    clock = SharedClock("mixer")
    loop = asyncio.get_running_loop()
    times: dict[str, list[float]] = {"waits": [], "needs": []}

    def waits(skipped: int) -> float | None:
        times["waits"].append(loop.time())
        return 0.2 if len(times["waits"]) == 1 else None

    clock.add("waits", waits)
    try:
        await _ticks_until(times["waits"], 3)
        first, second, third = times["waits"][:3]
        assert second - first >= 0.2 - 0.001 and third - second < 0.2
        # with a listener that needs every tick, postponing changes nothing for it
        clock.add("needs", lambda skipped: times["needs"].append(loop.time()))
        await _ticks_until(times["needs"], 2)
        clock.postpone("waits", 0.3)
        await _ticks_until(times["needs"], 8)
        gaps = np.diff(times["needs"][2:8])
        assert gaps.max() < 0.15, "the clock went on ticking every 20 ms (a loaded machine " \
            "may run a tick late, never ten)"
    finally:
        clock.remove("waits")
        clock.remove("needs")


async def test_a_listener_that_fails_does_not_stop_the_others_ticking():
    clock = SharedClock("mixer")
    ticks: list[int] = []

    def broken(skipped: int) -> None:
        raise RuntimeError("boom")

    clock.add("broken", broken)
    clock.add("good", ticks.append)
    try:
        async with asyncio.timeout(5):
            while len(ticks) < 3:
                await asyncio.sleep(0.005)
    finally:
        clock.remove("broken")
        clock.remove("good")
    assert not clock.running


# --- voice activity and echo gating in the session ------------------------------------------


def test_a_client_speaking_is_reported_when_it_starts_and_when_it_stops():
    changes: list[tuple[str, Transition]] = []
    client = ids.new_id()
    session = MixerSession(ids.new_id(), SessionSettings(JitterSettings(target_frames=1)),
                           on_activity=lambda who, change: changes.append((who, change)))
    session.add_client(client)
    for n in range(40):  # 200 ms of voice (-30 dBFS) between quiet frames (-80 dBFS)
        session.receive(client, n, T0 + n * FRAME_NS, level(1000 if 5 <= n < 15 else 3))
        session.tick(T0 + n * FRAME_NS)
    assert changes == [(client, Transition(True, T0 + 5 * FRAME_NS)),
                       (client, Transition(False, T0 + 15 * FRAME_NS))]


def test_a_client_removed_while_speaking_stops_speaking():
    changes: list[tuple[str, Transition]] = []
    client = ids.new_id()
    session = MixerSession(ids.new_id(), SessionSettings(JitterSettings(target_frames=1)),
                           on_activity=lambda who, change: changes.append((who, change)))
    session.add_client(client)
    for n in range(5):
        session.receive(client, n, T0 + n * FRAME_NS, level(1000))
        session.tick(T0 + n * FRAME_NS)
    session.remove_client(client)
    assert [c.active for _, c in changes] == [True, False]
    assert changes[-1][1].at_ns == T0 + 5 * FRAME_NS


def test_a_client_echoing_the_model_is_ducked_and_not_heard_as_speaking():
    voice = speak("hello everyone this is the assistant speaking", "en-us+f3")
    voice += bytes(-len(voice) % len(SILENCE))
    model = [voice[i:i + len(SILENCE)] for i in range(0, len(voice), len(SILENCE))]
    echo = [SILENCE] * 8 + [_scaled(f, -10) for f in model]  # 160 ms later, 10 dB down
    changes: list[tuple[str, Transition]] = []
    phone = ids.new_id()
    session = MixerSession(ids.new_id(), SessionSettings(JitterSettings(target_frames=1)),
                           on_activity=lambda who, change: changes.append((who, change)))
    session.add_client(phone)
    mixed = []
    for n, pcm in enumerate(echo):
        session.receive_model(model[n] if n < len(model) else SILENCE)
        session.receive(phone, n, T0 + n * FRAME_NS, pcm)
        mixed.append(session.tick(T0 + n * FRAME_NS))
    loud = [n for n, pcm in enumerate(echo) if rms_dbfs(pcm) > -40]
    assert all(mixed[n].ducked == 1 for n in loud)
    assert all(rms_dbfs(mixed[n].pcm) < rms_dbfs(echo[n]) - 25 for n in loud)
    assert session.ducked >= len(loud) and not changes


def test_without_echo_gating_the_model_changes_nothing():
    settings = SessionSettings(JitterSettings(target_frames=1), EchoSettings(enabled=False))
    session = MixerSession(ids.new_id(), settings)
    client = ids.new_id()
    session.add_client(client)
    for n in range(30):
        session.receive_model(level(2000))
        session.receive(client, n, T0 + n * FRAME_NS, level(1000))
        assert value_of(session.tick(T0 + n * FRAME_NS).pcm) == {1000}
    assert session.ducked == 0


def _scaled(pcm: bytes, db: float) -> bytes:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) * 10 ** (db / 20)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


async def test_an_ended_session_is_freed_at_once_not_by_the_cycle_collector():
    """A session holds its echo state (~180 KB of arrays) until it is freed; left to the
    cycle collector, ended sessions heap up between full collections and the mixer's
    heap grows with every one started and ended (``benchmarks/session_churn``)."""
    ctx = zmq.Context()
    link = ctx.socket(zmq.PUB)  # the session's echo reference comes from a link
    port = link.bind_to_random_port("tcp://127.0.0.1")
    mixer = Mixer(ctx, mixer_config.from_env({}), "mixer-test")
    session_id = ids.new_id()
    gc.disable()
    try:
        async with asyncio.timeout(5):
            await mixer.start_session(session_id, f"tcp://127.0.0.1:{port}")
        session = weakref.ref(mixer.sessions[session_id])
        mixer.stop_session(session_id, "ended")
        assert session() is None
    finally:
        gc.enable()
        mixer.close()
        link.close(linger=0)
        ctx.term()
