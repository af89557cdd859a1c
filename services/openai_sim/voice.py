"""The simulator's voice: reply text to PCM16 24 kHz mono speech.

With ``espeak-ng`` on the PATH, replies are real synthesized speech. Without it,
a clearly audible stand-in of the same length: one harmonic, syllable-shaped tone
burst per word, so VAD, level meters and speech recognisers of "is anything
there" still have something to hear.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import wave
from collections import OrderedDict

import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
ESPEAK_WPM = 175
SYNTH_MS_PER_CHAR = 65
SYNTH_GAP_MS = 80
SYNTH_PEAK = 0.3
CACHE_ENTRIES = 64

# OpenAI voice name → espeak-ng voice, so different voices sound different.
ESPEAK_VOICES = {
    "alloy": "en-us",
    "ash": "en-us+m3",
    "ballad": "en-gb+m2",
    "cedar": "en-us+m1",
    "coral": "en-us+f2",
    "echo": "en-us+m4",
    "marin": "en-us+f3",
    "sage": "en-gb+f1",
    "shimmer": "en-us+f4",
    "verse": "en-gb+m3",
}


class SynthesisError(RuntimeError):
    """espeak-ng failed or produced audio that could not be read."""


class Voice:
    """Speaks text; results are cached (scripted replies repeat)."""

    def __init__(self, espeak: str | None = "auto") -> None:
        self.espeak = shutil.which("espeak-ng") if espeak == "auto" else espeak
        self._cache: OrderedDict[tuple[str, str, float], bytes] = OrderedDict()
        if self.espeak is None:
            logger.info("espeak-ng not found: replies use a synthetic tone signal")

    async def speak(self, text: str, voice: str = "alloy", speed: float = 1.0) -> bytes:
        key = (text, voice, speed)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self.espeak is not None:
            try:
                pcm = await self._espeak(text, voice, speed)
            except SynthesisError:
                logger.exception("espeak-ng failed; using the synthetic signal")
                pcm = synthetic_speech(text, speed)
        else:
            pcm = synthetic_speech(text, speed)
        self._cache[key] = pcm
        if len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return pcm

    async def _espeak(self, text: str, voice: str, speed: float) -> bytes:
        assert self.espeak is not None
        proc = await asyncio.create_subprocess_exec(
            self.espeak,
            "-v", ESPEAK_VOICES.get(voice, "en-us"),
            "-s", str(int(ESPEAK_WPM * speed)),
            "--stdout",
            text,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise SynthesisError(f"espeak-ng exited {proc.returncode}: {err.decode(errors='replace')}")
        return wav_to_pcm24k(out)


def wav_to_pcm24k(data: bytes) -> bytes:
    """Mono s16 PCM at 24 kHz from a WAV file's bytes (linear-interpolated resample)."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise SynthesisError(f"unreadable WAV: {e}") from e
    if width != 2:
        raise SynthesisError(f"expected 16-bit WAV (got {8 * width}-bit)")
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return resample(samples, rate, SAMPLE_RATE)


def resample(samples: np.ndarray, rate: int, target: int) -> bytes:
    if rate == target or samples.size == 0:
        return np.clip(samples, -32768, 32767).astype("<i2").tobytes()
    count = int(round(samples.size * target / rate))
    positions = np.arange(count) * (rate / target)
    out = np.interp(positions, np.arange(samples.size), samples)
    return np.clip(out, -32768, 32767).astype("<i2").tobytes()


def synthetic_speech(text: str, speed: float = 1.0) -> bytes:
    """A speech-length, speech-band signal for ``text``: one tone burst per word."""
    words = text.split() or ["..."]
    pieces = []
    gap = np.zeros(int(SAMPLE_RATE * SYNTH_GAP_MS / 1000 / speed))
    for i, word in enumerate(words):
        duration = max(len(word), 2) * SYNTH_MS_PER_CHAR / 1000 / speed
        t = np.arange(int(SAMPLE_RATE * duration)) / SAMPLE_RATE
        f0 = 140.0 + 25.0 * (i % 4)
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3, 4))
        envelope = np.hanning(t.size)
        pieces += [tone * envelope, gap]
    signal = np.concatenate(pieces)
    signal *= SYNTH_PEAK * 32767 / max(np.max(np.abs(signal)), 1e-9)
    return signal.astype("<i2").tobytes()
