"""The echo detector (services/mixer/echo.py, gating.py) on real speech, frame by frame.

The model speaks with one espeak-ng voice, the people with another; an echo is the
model's voice delayed and attenuated, as a loudspeaker picked up by a microphone is.
"""

from __future__ import annotations

import numpy as np
import pytest

from proto.audio import FRAME_BYTES
from services.mixer.echo import (
    QUIET,
    EchoGate,
    EchoSettings,
    Heard,
    ModelReference,
    Verdict,
)
from services.mixer.gating import EchoGating
from tests.support.speech import rms_dbfs, speak

SILENCE = bytes(FRAME_BYTES)
MODEL = "hello everyone this is the assistant speaking how can I help you today"
PERSON = "stop please I want to ask something else"
LOUD_DBFS = -40.0


def frames(pcm: bytes) -> list[bytes]:
    pcm += bytes(-len(pcm) % FRAME_BYTES)
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def scaled(frame: bytes, db: float) -> bytes:
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float64) * 10 ** (db / 20)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def added(a: bytes, b: bytes) -> bytes:
    total = np.frombuffer(a, dtype="<i2").astype(np.int32) + np.frombuffer(b, dtype="<i2")
    return np.clip(total, -32768, 32767).astype("<i2").tobytes()


def model_voice() -> list[bytes]:
    return [SILENCE] * 10 + frames(speak(MODEL, "en-us+f3")) + [SILENCE] * 10


def echo_of(voice: list[bytes], delay_frames: int = 9, db: float = -8.0) -> list[bytes]:
    return [SILENCE] * delay_frames + [scaled(f, db) for f in voice]


def judge(model: list[bytes], mic: list[bytes],
          settings: EchoSettings | None = None) -> list[Verdict]:
    """The verdict on every microphone frame, the model's frames going along in step."""
    settings = settings or EchoSettings()
    reference, gate = ModelReference(settings), EchoGate(settings)
    verdicts = []
    for n in range(max(len(model), len(mic))):
        reference.push(Heard.of(model[n] if n < len(model) else SILENCE))
        verdicts.append(gate.check(Heard.of(mic[n] if n < len(mic) else SILENCE), reference))
    return verdicts


def loud(mic: list[bytes], verdicts: list[Verdict]) -> list[Verdict]:
    return [v for f, v in zip(mic, verdicts, strict=False) if rms_dbfs(f) > LOUD_DBFS]


def test_a_delayed_attenuated_copy_of_the_models_voice_is_echo_from_its_first_frame():
    voice = model_voice()
    mic = echo_of(voice)
    heard = loud(mic, judge(voice, mic))
    assert len(heard) > 100
    assert all(v.echo for v in heard), [round(v.correlation, 2) for v in heard if not v.echo]
    assert min(v.correlation for v in heard) > 0.7
    assert {round(v.lag_ms) for v in heard} == {180}  # 9 frames: where the echo comes from


def test_speech_over_the_models_voice_is_not_echo_and_gets_through_at_once():
    voice = model_voice()
    echo = echo_of(voice, db=-14.0)  # the phone's loudspeaker; its owner, nearer, is louder
    words = frames(speak(PERSON))
    start = 60
    mic = [added(e, words[n - start]) if start <= n < start + len(words) else e
           for n, e in enumerate(echo)]
    verdicts = judge(voice, mic)
    assert all(v.echo for v in loud(mic[:start], verdicts[:start]))  # the echo alone, before
    spoken = [v for n, v in enumerate(verdicts)
              if start <= n < start + len(words) and rms_dbfs(words[n - start]) > -35]
    passed = [not v.echo for v in spoken]
    assert sum(passed) >= 0.8 * len(spoken)
    first_two = next(i for i in range(len(passed) - 1) if passed[i] and passed[i + 1])
    assert first_two <= 5, "the speech reaches the mix within 100 ms of getting loud"


def test_another_voice_while_the_model_talks_is_not_echo():
    voice = model_voice()
    mic = [SILENCE] * 30 + frames(speak(PERSON))  # a headset: no echo, only the person
    heard = loud(mic, judge(voice, mic))
    assert sum(v.echo for v in heard) <= 0.05 * len(heard)
    assert max(v.correlation for v in heard) < 0.6


def test_nothing_is_judged_while_the_model_is_silent():
    mic = frames(speak(PERSON))
    assert judge([SILENCE] * len(mic), mic) == [QUIET] * len(mic)


def test_an_echo_whose_delay_jumps_stays_ducked():
    voice = model_voice()
    echo = echo_of(voice)
    # A playout queue ran dry (a frame of silence) and later overflowed (a frame skipped).
    jumped = echo[:50] + [SILENCE] + echo[50:90] + echo[91:]
    verdicts = judge(voice, jumped)
    leaks = [n for n in range(len(jumped) - 1)
             if rms_dbfs(jumped[n]) > LOUD_DBFS and rms_dbfs(jumped[n + 1]) > LOUD_DBFS
             and not verdicts[n].echo and not verdicts[n + 1].echo]
    assert not leaks, f"two loud frames in a row let through at {leaks}"


def test_bunched_arrivals_and_a_lost_frame_do_not_break_the_streams():
    voice = model_voice()
    echo = echo_of(voice)
    gating = EchoGating(EchoSettings(), "test")
    gating.add_client("phone")
    verdicts: dict[int, Verdict] = {}
    for tick in range(0, len(echo), 4):  # four ticks' worth at once, then nothing
        for n in range(tick, tick + 4):
            if n < len(voice):
                gating.hear_model(voice[n])
            if n < len(echo) and n != 70:  # frame 70 never arrives
                gating.hear("phone", n, echo[n])
        for _ in range(4):
            gating.update()
        for n in range(tick, min(tick + 4, len(echo))):
            verdicts[n] = gating.verdict("phone", n)
    heard = [verdicts[n] for n in range(len(echo)) if n != 70 and rms_dbfs(echo[n]) > LOUD_DBFS]
    assert sum(v.echo for v in heard) >= 0.95 * len(heard)
    assert gating.verdict("phone", 70) is QUIET
    assert gating.verdict("nobody", 3) is QUIET


@pytest.mark.parametrize(("field", "value"), [
    ("window_ms", 30), ("max_lag_ms", 5000), ("short_ms", 1000), ("duck_db", -3.0),
    ("detect", 0.9),
])
def test_invalid_echo_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"'{field}'"):
        EchoSettings(**{field: value})
