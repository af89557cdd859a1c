"""The mixing math: unity gain for one speaker, sums for quiet ones, never past full scale."""

from __future__ import annotations

import numpy as np

from proto.audio import FRAME_SAMPLES, SAMPLE_RATE
from services.mixer.mix import FULL_SCALE, KNEE, SILENCE, mix, soft_limit
from tests.support.speech import rms_dbfs

MINUS_20_DBFS = 32768 * 10 ** (-20 / 20)


def tone(hz: float, peak: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    return np.round(peak * np.sin(2 * np.pi * hz * t + phase)).astype(np.int16)


def pcm(samples: np.ndarray) -> bytes:
    return samples.astype("<i2").tobytes()


def samples(frame: bytes) -> np.ndarray:
    return np.frombuffer(frame, dtype="<i2").astype(np.int32)


def test_no_frames_mix_to_one_frame_of_silence():
    assert mix([]) == SILENCE and len(SILENCE) == FRAME_SAMPLES * 2


def test_one_speaker_below_the_knee_passes_bit_exact():
    alone = pcm(tone(440, MINUS_20_DBFS * np.sqrt(2)))  # a -20 dBFS (RMS) sine
    assert mix([alone]) == alone
    assert abs(rms_dbfs(mix([alone])) - -20.0) < 0.1  # unity gain, not halved like an average


def test_one_loud_speaker_is_only_bent_above_the_knee():
    loud = tone(300, FULL_SCALE)
    out = samples(mix([pcm(loud)]))
    below = np.abs(loud.astype(np.int32)) <= KNEE
    assert np.array_equal(out[below], loud[below])
    assert np.all(np.abs(out) <= FULL_SCALE)
    # Monotonic: the limiter keeps the waveform's order (no fold-over, no flat-topped clip).
    order = np.argsort(loud, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)


def test_two_full_scale_speakers_in_phase_stay_within_full_scale():
    full = tone(1000, FULL_SCALE)
    square = np.where(tone(250, 1000) >= 0, 32767, -32768).astype(np.int16)
    for a, b in ((full, full), (square, square), (square, -(square.astype(np.int32) + 1))):
        out = samples(mix([pcm(a), pcm(b.astype(np.int16))]))
        assert out.max() <= FULL_SCALE and out.min() >= -FULL_SCALE


def test_opposite_full_scale_speakers_cancel_without_overflow():
    full = tone(1000, FULL_SCALE)
    out = samples(mix([pcm(full), pcm(-full)]))
    assert np.array_equal(out, np.zeros(FRAME_SAMPLES))


def test_many_full_scale_noise_speakers_never_exceed_full_scale():
    rng = np.random.default_rng(7)
    frames = [pcm(rng.integers(-32768, 32768, FRAME_SAMPLES, dtype=np.int16)) for _ in range(16)]
    out = samples(mix(frames))
    assert out.max() <= FULL_SCALE and out.min() >= -FULL_SCALE


def test_two_quiet_speakers_are_summed_and_both_audible():
    a, b = tone(400, MINUS_20_DBFS), tone(1000, MINUS_20_DBFS, phase=1.0)
    out = samples(mix([pcm(a), pcm(b)]))
    assert np.array_equal(out, a.astype(np.int32) + b)  # well below the knee: a plain sum
    spectrum = np.abs(np.fft.rfft(out))
    bin_hz = SAMPLE_RATE / FRAME_SAMPLES
    level_a, level_b = spectrum[round(400 / bin_hz)], spectrum[round(1000 / bin_hz)]
    assert level_a > 0.9 * MINUS_20_DBFS * FRAME_SAMPLES / 2
    assert level_b > 0.9 * MINUS_20_DBFS * FRAME_SAMPLES / 2


def test_soft_limit_is_continuous_at_the_knee():
    sums = np.arange(KNEE - 5, KNEE + 6, dtype=np.int32)
    assert np.array_equal(soft_limit(sums), sums)  # slope 1 at the knee: no step, no kink
    huge = np.array([10 * FULL_SCALE, -10 * FULL_SCALE], dtype=np.int32)
    assert soft_limit(huge).tolist() == [FULL_SCALE, -FULL_SCALE]
