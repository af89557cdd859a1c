"""Summing clients' 20 ms frames into one: unity gain, int32 headroom, a soft limiter.

Frames are added in int32, so no intermediate sum can overflow. A sample whose sum stays
within the knee (−6 dBFS) passes bit-exact, so one speaker alone is heard at unity gain
(not halved, as an average would do), and two quiet speakers are simply added. Only sums
beyond the knee are bent, smoothly (a tanh curve that meets the straight line with the
same slope), towards full scale; they approach it but never pass it, so the mix always
fits in ±32767 and never hard-clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from proto.audio import FRAME_BYTES

FULL_SCALE = 32767
"The largest sample magnitude the mix produces (both signs: ±32767)."
KNEE = 16384
"Sample magnitude (−6 dBFS) up to which the mix is exactly the sum."
_SPAN = np.float32(FULL_SCALE - KNEE)
SILENCE = bytes(FRAME_BYTES)


def mix(frames: Sequence[bytes]) -> bytes:
    """The sum of equal-length s16le frames, soft-limited; silence for none."""
    if not frames:
        return SILENCE
    total = np.frombuffer(frames[0], dtype="<i2").astype(np.int32)
    for pcm in frames[1:]:
        total += np.frombuffer(pcm, dtype="<i2")
    return soft_limit(total).astype("<i2").tobytes()


def attenuate(pcm: bytes, gain: float) -> bytes:
    """``pcm`` scaled by ``gain`` (0..1), for a microphone ducked as echo."""
    scaled = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * np.float32(gain)
    return np.rint(scaled).astype("<i2").tobytes()


def soft_limit(total: np.ndarray) -> np.ndarray:
    """Map int32 sums into ±FULL_SCALE: identity within ±KNEE, tanh-shaped beyond it."""
    magnitude = np.abs(total)
    if int(magnitude.max(initial=0)) <= KNEE:
        return total
    over = magnitude > KNEE
    excess = (magnitude[over] - KNEE).astype(np.float32)
    bent = KNEE + _SPAN * np.tanh(excess / _SPAN)  # < FULL_SCALE, or == once tanh rounds to 1
    limited = total.copy()
    limited[over] = np.sign(total[over]) * np.rint(bent).astype(np.int32)
    return limited
