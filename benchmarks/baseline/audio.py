"""The baseline bridge's audio: one PCM format, bounded buffers, paced tracks, a naive mix.

Everything between the two aiortc legs is PCM16 mono at 24 kHz (the Realtime API's own
``pcm16`` rate). aiortc decodes every incoming Opus track to 48 kHz stereo, so each
decoded frame goes through an ``av.AudioResampler``; on the way out aiortc's encoder
resamples the 24 kHz frames back to 48 kHz stereo before Opus.

Outbound tracks are paced the way aiortc's own ``AudioStreamTrack`` example is: frame n
is due at start + n × 20 ms, and a track with nothing buffered sends silence.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, AudioResampler

SAMPLE_RATE = 24_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2
SILENCE = bytes(FRAME_BYTES)
MAX_BUFFERED_FRAMES = 10
"Frames (200 ms) a buffer holds before the oldest are dropped."

_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


def new_resampler() -> AudioResampler:
    """A resampler from whatever aiortc decoded to the bridge's PCM16 24 kHz mono."""
    return AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)


def to_pcm(resampler: AudioResampler, frame: AudioFrame) -> bytes:
    """One decoded frame as PCM16 24 kHz mono bytes (empty while the filter fills)."""
    return b"".join(out.to_ndarray().tobytes() for out in resampler.resample(frame))


def mix(frames: list[bytes]) -> bytes:
    """The sum of 20 ms frames, clipped to 16 bits; silence when there are none."""
    if not frames:
        return SILENCE
    total = np.zeros(FRAME_SAMPLES, dtype=np.int32)
    for frame in frames:
        total += np.frombuffer(frame, dtype="<i2")
    return np.clip(total, -32768, 32767).astype("<i2").tobytes()


class PcmBuffer:
    """PCM bytes waiting to be sent, taken 20 ms at a time; the oldest go when it is full."""

    def __init__(self, max_frames: int = MAX_BUFFERED_FRAMES) -> None:
        self._pending = bytearray()
        self._max_bytes = max_frames * FRAME_BYTES
        self.dropped_bytes = 0

    def push(self, pcm: bytes) -> None:
        self._pending += pcm
        excess = len(self._pending) - self._max_bytes
        if excess > 0:
            del self._pending[:excess]
            self.dropped_bytes += excess

    def take(self) -> bytes | None:
        """The oldest 20 ms frame, or None when less than a frame is buffered."""
        if len(self._pending) < FRAME_BYTES:
            return None
        frame = bytes(self._pending[:FRAME_BYTES])
        del self._pending[:FRAME_BYTES]
        return frame


class PacedTrack(MediaStreamTrack):
    """An outbound audio track: every 20 ms, the frame ``next_frame()`` returns."""

    kind = "audio"

    def __init__(self, next_frame: Callable[[], bytes]) -> None:
        super().__init__()
        self._next_frame = next_frame
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME_SAMPLES
            wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(self._next_frame())
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        return frame


async def read_track(track: MediaStreamTrack, on_pcm: Callable[[bytes], None]) -> None:
    """Decode ``track`` until it ends, handing each frame to ``on_pcm`` as PCM16 24 kHz mono.

    aiortc queues a remote track's frames without bound, so it is read continuously.
    """
    resampler = new_resampler()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        pcm = to_pcm(resampler, frame)
        if pcm:
            on_pcm(pcm)
