"""Speech for tests: espeak-ng phrases as PCM16 24 kHz mono, and silence."""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable

import numpy as np

from services.openai_sim.voice import wav_to_pcm24k

BYTES_PER_MS = 48


@functools.cache
def speak(text: str, voice: str = "en-us") -> bytes:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is required for the tests (scripts/test installs it)")
    wav = subprocess.run(
        [espeak, "-v", voice, "--stdout", text], check=True, capture_output=True, timeout=30
    ).stdout
    return wav_to_pcm24k(wav)


def silence(ms: int) -> bytes:
    return bytes(ms * BYTES_PER_MS)


def duration_ms(pcm: bytes) -> int:
    return len(pcm) // BYTES_PER_MS


def rms_dbfs(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return -120.0
    power = float(np.mean(samples**2))
    return 10 * np.log10(max(power, 1e-12) / 32768.0**2)


def best_correlation(reference: bytes, recording: bytes, step: int = 240) -> float:
    """Highest normalised correlation of ``reference``'s envelope within ``recording``.

    Compares 10 ms RMS envelopes, so it survives Opus coding and resampling. Only the
    reference's sound counts, not the quiet around it, and a recording that ends sooner
    is heard as followed by silence: a microphone kept off the bus while quiet
    (``VOXRELAY_BUS_SKIP_SILENCE``) is recorded from its first sound to its last.
    """
    ref, rec = _envelope(reference, step), _envelope(recording, step)
    sound = np.nonzero(ref > QUIET_ENVELOPE * (ref.max(initial=0.0) or 1.0))[0]
    if sound.size == 0:
        return 0.0
    ref = ref[sound[0]:sound[-1] + 1]
    if rec.size < ref.size:
        rec = np.concatenate([rec, np.zeros(ref.size - rec.size)])
    ref = (ref - ref.mean()) / (ref.std() or 1.0)
    best = 0.0
    for offset in range(rec.size - ref.size + 1):
        window = rec[offset : offset + ref.size]
        std = window.std()
        if std == 0:
            continue
        score = float(np.mean(ref * (window - window.mean()) / std))
        best = max(best, score)
    return best


QUIET_ENVELOPE = 0.01
"Envelope below this share of its peak is the quiet around a reference's sound."


def _envelope(pcm: bytes, step: int) -> np.ndarray:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    whole = samples.size - samples.size % step
    return np.sqrt(np.mean(samples[:whole].reshape(-1, step) ** 2, axis=1))


async def send_paced(send: Callable[[bytes], Awaitable[None]], pcm: bytes) -> None:
    """Hand ``pcm`` to ``send`` as 20 ms frames (the last padded with silence), paced at
    real time, as a microphone would."""
    frame = 20 * BYTES_PER_MS
    pcm += bytes(-len(pcm) % frame)
    start = time.monotonic()
    for n, i in enumerate(range(0, len(pcm), frame)):
        await send(pcm[i:i + frame])
        await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))
