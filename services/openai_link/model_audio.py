"""The model's voice from the Realtime track to bus frames.

aiortc decodes Opus to 48 kHz stereo s16, 960 samples a frame. Each frame is
resampled to 24 kHz mono and the result cut into exact 20 ms frames (960 bytes),
whatever sizes the resampler hands back. The remote track's queue is unbounded, so
it is always drained; pacing comes from the sender (and aiortc's jitter buffer).
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

from proto import audio


class FrameCutter:
    """Any decoded audio in, PCM16 24 kHz mono 20 ms frames out."""

    def __init__(self) -> None:
        self._resampler = AudioResampler(format="s16", layout="mono", rate=audio.SAMPLE_RATE)
        self._pending = bytearray()

    def feed(self, frame: AudioFrame) -> list[bytes]:
        for out in self._resampler.resample(frame):
            self._pending += out.to_ndarray().tobytes()
        whole = len(self._pending) - len(self._pending) % audio.FRAME_BYTES
        if whole == 0:
            return []
        chunk = bytes(self._pending[:whole])
        del self._pending[:whole]
        return [chunk[i : i + audio.FRAME_BYTES] for i in range(0, whole, audio.FRAME_BYTES)]


async def read_model_audio(track: MediaStreamTrack, on_frame: Callable[[bytes], None]) -> None:
    """Drain ``track`` until it ends, handing every 20 ms frame to ``on_frame``."""
    cutter = FrameCutter()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        for pcm in cutter.feed(frame):
            on_frame(pcm)
