"""The model's voice from the Realtime track to bus frames.

aiortc decodes Opus to 48 kHz stereo s16, 960 samples a frame. Each frame is
resampled to 24 kHz mono and the result cut into exact 20 ms frames (960 bytes),
whatever sizes the resampler hands back. The remote track's queue is unbounded, so
it is always drained; pacing comes from the sender (and aiortc's jitter buffer).
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc import MediaStreamTrack

from services.runtime.media import Framer, drain_track


async def read_model_audio(track: MediaStreamTrack, on_frame: Callable[[bytes], None]) -> None:
    """Drain ``track`` until it ends, handing every 20 ms frame to ``on_frame``."""
    framer = Framer()

    def cut(pcm: bytes) -> None:
        for frame in framer.push(pcm):
            on_frame(frame)

    await drain_track(track, cut)
