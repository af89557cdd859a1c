"""Audio over the simulator's WebRTC calls: the model's outbound track and the mic reader.

The outbound track plays model audio in real time, 20 ms a frame, and silence in
between; a reply's first frame goes as soon as it is generated, not at the next tick of
the track's own 20 ms grid (:class:`~services.runtime.media.ArrivalPacer`), so the time to
a reply does not depend on where a session's grid happens to fall (0-20 ms, fixed for
the session: enough to hide what ``benchmarks/latency_probe.py`` compares). It is the server-side output buffer of the Realtime API: it reports when
a response's audio starts playing, when it has drained, and what was played when
it is cleared, which is where ``output_audio_buffer.*`` events come from. It encodes
its frames itself (voice Opus, :class:`~services.runtime.voice_codec.VoiceEncoder`) and
hands aiortc packets: the API's servers are not on this machine, so the simulator
should take as little of its CPU as it can.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import Packet

from proto.audio import FRAME_BYTES, FRAME_MS
from services.runtime.media import SILENCE, ArrivalPacer, drain_track
from services.runtime.voice_codec import VoiceEncoder, voice_packet

logger = logging.getLogger(__name__)

LEAD_FRAMES = 5
"How far (in frames) generation may run ahead of playout: the reply is produced in real time."


class ModelAudioTrack(MediaStreamTrack):
    """The model's voice: queued response audio, paced at real time, silence when idle."""

    kind = "audio"
    voice_packets = True
    "recv() returns voice_packet()s (see services.runtime.rtp_send)."

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
        self._pacer = ArrivalPacer()
        self._encoder = VoiceEncoder()

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
        self._pacer.arrived()

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

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next(self._queue)
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
        return voice_packet(self._encoder.encode(pcm), pts)


read_microphone = drain_track
"Drain a caller's audio track, handing PCM16 24 kHz mono to the session until it ends."
