"""Audio over the simulator's WebRTC calls: the model's outbound track and the mic reader.

The outbound track plays model audio in real time, 20 ms a frame, and silence in
between. It is the server-side output buffer of the Realtime API: it reports when
a response's audio starts playing, when it has drained, and what was played when
it is cleared, which is where ``output_audio_buffer.*`` events come from.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2
LEAD_FRAMES = 5
"How far (in frames) generation may run ahead of playout: the reply is produced in real time."
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
SILENCE = bytes(FRAME_BYTES)


class ModelAudioTrack(MediaStreamTrack):
    """The model's voice: queued response audio, paced at real time, silence when idle."""

    kind = "audio"

    def __init__(
        self,
        on_started: Callable[[str], None],
        on_stopped: Callable[[str], None],
    ) -> None:
        super().__init__()
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._queue: deque[tuple[str, bytes]] = deque()
        self._space = asyncio.Event()
        self._finished: set[str] = set()
        self._cleared: set[str] = set()
        self._playing: str | None = None
        self._played_ms: dict[str, int] = {}
        self._start: float | None = None
        self._pts = 0

    @property
    def playing(self) -> str | None:
        """The response whose audio is in the output buffer now, if any."""
        return self._playing

    def played_ms(self, response_id: str) -> int:
        return self._played_ms.get(response_id, 0)

    async def write(self, response_id: str, pcm: bytes) -> None:
        """Queue ≤ 20 ms of a response's audio; waits while playout is far enough behind."""
        while len(self._queue) >= LEAD_FRAMES and self.readyState == "live":
            self._space.clear()
            await self._space.wait()
        if response_id in self._cleared:
            return
        if len(pcm) < FRAME_BYTES:
            pcm = pcm + bytes(FRAME_BYTES - len(pcm))
        self._queue.append((response_id, pcm))

    def finish(self, response_id: str) -> None:
        """No more audio comes for ``response_id``; report ``stopped`` once it has played."""
        if response_id in self._cleared:
            self._cleared.discard(response_id)  # its last word: nothing more is written for it
            return
        self._finished.add(response_id)
        if self._playing is None and not any(rid == response_id for rid, _ in self._queue):
            self._finished.discard(response_id)
            if self._played_ms.pop(response_id, 0):
                self._on_stopped(response_id)

    def clear(self) -> tuple[str, int] | None:
        """Drop everything queued. Returns (response id, ms played) of what was playing."""
        current = self._playing or (self._queue[0][0] if self._queue else None)
        self._queue.clear()
        self._space.set()
        self._playing = None
        if current is None:
            return None
        self._cleared.add(current)
        self._finished.discard(current)
        return current, self._played_ms.pop(current, 0)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pace()
        if self._queue:
            response_id, pcm = self._queue.popleft()
            self._space.set()
            if response_id != self._playing:
                self._playing = response_id
                self._on_started(response_id)
            self._played_ms[response_id] = self._played_ms.get(response_id, 0) + FRAME_MS
        else:
            pcm = SILENCE
            done = self._playing
            if done is not None and done in self._finished:
                self._playing = None
                self._finished.discard(done)
                self._played_ms.pop(done, None)
                self._on_stopped(done)
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        return frame

    async def _pace(self) -> None:
        if self._start is None:
            self._start = time.monotonic()
            return
        self._pts += FRAME_SAMPLES
        wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


async def read_microphone(
    track: MediaStreamTrack, feed: Callable[[bytes], Awaitable[None] | None]
) -> None:
    """Drain a remote audio track, handing PCM16 24 kHz mono to ``feed`` until it ends."""
    resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        for out in resampler.resample(frame):
            result = feed(out.to_ndarray().tobytes())
            if result is not None:
                await result
