"""Voice to voice at the edge: speech end → the first audible reply frame, per client."""

from __future__ import annotations

import numpy as np
import pytest

from proto import audio
from services.media_edge.voice_to_voice import REPLY_TIMEOUT_S, ReplyClock
from services.runtime.media import audible

ANN, BOB = "a" * 32, "b" * 32


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tone(dbfs: float) -> bytes:
    t = np.arange(audio.FRAME_SAMPLES) / audio.SAMPLE_RATE
    return (32767 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def test_each_client_gets_its_latency_once_per_speech_end():
    clock = Clock()
    replies = ReplyClock(clock)
    assert not replies.armed and replies.heard(ANN) is None

    assert replies.voice_activity(False, clock.now - 0.2)  # the mixer tells a bit late
    clock.now += 0.6
    assert replies.waiting(ANN) and replies.heard(ANN) == pytest.approx(0.8)
    assert not replies.waiting(ANN) and replies.heard(ANN) is None, "once per client"
    clock.now += 0.05
    assert replies.heard(BOB) == pytest.approx(0.85)
    assert replies.speech_ended_at == pytest.approx(clock.now - 0.85)


def test_speech_start_disarms_until_the_next_speech_end():
    clock = Clock()
    replies = ReplyClock(clock)
    replies.voice_activity(False, clock.now)
    assert not replies.voice_activity(True, clock.now + 0.3)
    clock.now += 1.0
    assert not replies.armed and replies.heard(ANN) is None

    assert replies.voice_activity(False, clock.now)
    clock.now += 0.7
    assert replies.heard(ANN) == pytest.approx(0.7)


def test_a_new_speech_end_measures_every_client_again_from_it():
    clock = Clock()
    replies = ReplyClock(clock)
    replies.voice_activity(False, clock.now)
    clock.now += 0.9
    assert replies.heard(ANN) == pytest.approx(0.9)
    replies.voice_activity(False, clock.now + 2.0)  # someone else spoke and stopped
    clock.now += 2.5
    assert replies.heard(ANN) == pytest.approx(0.5)


def test_a_turn_without_a_reply_is_dropped_after_the_timeout():
    clock = Clock()
    replies = ReplyClock(clock)
    replies.voice_activity(False, clock.now)
    clock.now += REPLY_TIMEOUT_S - 0.1
    assert replies.armed
    clock.now += 0.2
    assert not replies.armed and replies.heard(ANN) is None
    assert replies.speech_ended_at is None


def test_the_timeout_runs_from_the_latest_client_that_heard_the_reply():
    clock = Clock()
    replies = ReplyClock(clock, timeout_s=10.0)
    replies.voice_activity(False, clock.now)
    clock.now += 8.0
    assert replies.heard(ANN) == pytest.approx(8.0)
    clock.now += 9.0  # 17 s after the speech end, 9 s after ann heard the reply
    assert replies.heard(BOB) == pytest.approx(17.0)


def test_a_speech_end_without_a_time_is_ignored():
    clock = Clock()
    replies = ReplyClock(clock)
    assert not replies.voice_activity(False, 0.0)
    assert not replies.armed
    replies.voice_activity(False, clock.now)
    assert not replies.voice_activity(False, 0.0)
    assert replies.armed, "an unusable stop leaves the armed clock as it was"


def test_a_speech_end_in_the_future_gives_zero_not_a_negative_latency():
    clock = Clock()
    replies = ReplyClock(clock)
    replies.voice_activity(False, clock.now + 0.05)  # another machine's clock runs ahead
    assert replies.heard(ANN) == 0.0


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="'timeout_s'"):
        ReplyClock(timeout_s=0)


@pytest.mark.parametrize(("pcm", "expected"), [
    (bytes(audio.FRAME_BYTES), False),
    (tone(-60.0), False),
    (tone(-45.0), True),
    (tone(-12.0), True),
    (np.full(audio.FRAME_SAMPLES, -32768, dtype="<i2").tobytes(), True),
    (np.full(audio.FRAME_SAMPLES, -100, dtype="<i2").tobytes(), False),
    (np.r_[np.zeros(479), [-200]].astype("<i2").tobytes(), True),
])
def test_audible_means_a_peak_above_minus_50_dbfs(pcm, expected):
    assert audible(pcm) is expected
