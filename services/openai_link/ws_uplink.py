"""The link's microphone toward the Realtime API over WebSocket: ``input_audio_buffer.append``.

Over WebRTC the session's ``aud/mix`` frames feed an outbound track; over WebSocket they
go as base64 PCM16 in ``input_audio_buffer.append`` events. One event per 20 ms frame
would be 50 JSON messages a second per conversation, so frames are batched
(``BATCH_FRAMES`` to a message, 40 ms): the mixer's arrival paces them, so no clock of
the link's own is needed. When the socket cannot keep up, the oldest unsent batches are
dropped and counted, so the model hears the newest audio with at most
``MAX_QUEUED_BATCHES`` batches of delay. ``on_sent`` is called with each frame's capture
time as its batch is written to the socket (the frame's age at the model).
"""

from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import Callable

from .metrics import FRAMES_DROPPED

BATCH_FRAMES = 2
"20 ms frames to one append (40 ms): 25 messages a second."
MAX_QUEUED_BATCHES = 3
"Batches (120 ms) waiting for the socket before the oldest is dropped."

Batch = list[tuple[bytes, int]]
"(pcm, capture_ns) of consecutive frames."


class WsUplink:
    def __init__(self, wake: Callable[[], None], batch_frames: int = BATCH_FRAMES) -> None:
        if batch_frames < 1:
            raise ValueError(f"'batch_frames' must be >= 1 (got {batch_frames})")
        self.batch_frames = batch_frames
        self.on_sent: Callable[[int], None] | None = None
        "Called with a frame's capture time (ns) as its batch goes to the socket."
        self.dropped = 0
        self._wake = wake
        self._batch: Batch = []
        self._ready: deque[Batch] = deque()

    def push(self, pcm: bytes, capture_ns: int = 0) -> None:
        """Add one bus frame (960 bytes); a full batch is queued for the socket."""
        self._batch.append((pcm, capture_ns))
        if len(self._batch) < self.batch_frames:
            return
        if len(self._ready) >= MAX_QUEUED_BATCHES:
            stale = self._ready.popleft()
            self.dropped += len(stale)
            FRAMES_DROPPED.labels("uplink_overflow").inc(len(stale))
        self._ready.append(self._batch)
        self._batch = []
        self._wake()

    @property
    def queued(self) -> int:
        """Frames not yet sent (batched or waiting for a batch)."""
        return sum(len(b) for b in self._ready) + len(self._batch)

    def take(self) -> Batch | None:
        """The oldest full batch, if any."""
        return self._ready.popleft() if self._ready else None

    def sent(self, batch: Batch) -> None:
        """The batch went to the socket."""
        if self.on_sent is None:
            return
        for _, capture_ns in batch:
            if capture_ns:
                self.on_sent(capture_ns)

    def stop(self) -> None:
        self._ready.clear()
        self._batch = []


def append_event(batch: Batch) -> str:
    """The ``input_audio_buffer.append`` event carrying ``batch``'s audio."""
    audio = base64.b64encode(b"".join(pcm for pcm, _ in batch)).decode("ascii")
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})
