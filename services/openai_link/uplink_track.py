"""The link's microphone toward the Realtime API: the session's ``aud/mix`` frames.

The mixer publishes a frame every 20 ms on its clock; aiortc pulls one every 20 ms on
ours, and an :class:`~services.runtime.media.ArrivalPacer` lets each go the moment it
arrives within its 20 ms slot rather than at the slot's end. A small queue between them
absorbs jitter; when the clocks drift apart it stays bounded (the oldest frame is
dropped and counted) or runs dry (silence is sent), so the model always hears the
newest audio with at most ``MAX_QUEUED`` frames of delay; a backlog loses its silent
frames (``uplink_catch_up``), so that delay falls back in the next pause.

Frames are encoded here, as they leave (:class:`~services.runtime.voice_codec.
VoiceEncoder`: mono voice Opus; silence is a constant packet), so aiortc only
packetizes them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import Packet

from services.runtime.media import SILENCE, ArrivalPacer, skip_silent_backlog
from services.runtime.voice_codec import VoiceEncoder, voice_packet

from .metrics import FRAMES_DROPPED

MAX_QUEUED = 5
"Frames (100 ms) waiting for the encoder before the oldest is dropped."


class UplinkTrack(MediaStreamTrack):
    """PCM16 24 kHz mono 20 ms frames, paced at real time; silence when none is queued."""

    kind = "audio"
    voice_packets = True
    "recv() returns voice_packet()s (see services.runtime.rtp_send)."

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._queue: deque[tuple[bytes, int]] = deque()
        self._pacer = ArrivalPacer(clock)
        self._encoder = VoiceEncoder()
        self.on_sent: Callable[[int], None] | None = None
        "Called with a queued frame's capture time (ns) as it goes to the encoder."
        self.dropped = 0
        self.silent = 0
        "Frames sent as silence because none was queued."

    def push(self, pcm: bytes, capture_ns: int = 0) -> None:
        """Queue one bus frame (960 bytes) captured at ``capture_ns``; drops the oldest
        when the queue is full."""
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.dropped += 1
            FRAMES_DROPPED.labels("uplink_overflow").inc()
        self._queue.append((pcm, capture_ns))
        self._pacer.arrived()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def nudge(self) -> None:
        """The link is awake for the model's voice: a slot of silence about to end goes
        now (:meth:`~services.runtime.media.ArrivalPacer.nudge`)."""
        self._pacer.nudge()

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next(self._queue)
        if len(self._queue) > 1 and (skipped := skip_silent_backlog(self._queue)):
            FRAMES_DROPPED.labels("uplink_catch_up").inc(skipped)
        if self._queue:
            pcm, capture_ns = self._queue.popleft()
            if self.on_sent is not None and capture_ns:
                self.on_sent(capture_ns)
        else:
            pcm = SILENCE
            self.silent += 1
        return voice_packet(self._encoder.encode(pcm), pts)
