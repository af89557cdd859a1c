"""Microphone audio that arrives as PCM16 messages rather than RTP: checked, paced, framed.

Two transports carry it: the browser's WebSocket fallback (signaling) and the media
edge's ``audio`` DataChannel. Both take PCM16 24 kHz mono in any whole multiple of
10 ms up to ``MAX_MESSAGE_MS`` a message, and publish exact 20 ms frames on ``aud/in``
with capture times (the receive time for a message's last frame, earlier ones 20 ms
apart). A message of another size is dropped (``size``); audio more than
``AHEAD_S`` ahead of real time is dropped (``ahead``): a microphone never runs ahead, it
only catches up after a stall, which those seconds cover. The token bucket refills at
``PACE`` × real time: room for a sound card's clock running a little fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from proto import audio

from .media import Framer
from .ratelimit import TokenBucket

CHUNK_BYTES = audio.FRAME_BYTES // 2
"10 ms of PCM16 24 kHz mono: messages are whole multiples of it..."
MAX_MESSAGE_MS = 200
MAX_MESSAGE_BYTES = MAX_MESSAGE_MS // 10 * CHUNK_BYTES
"...up to 200 ms."
BYTES_PER_S = audio.FRAME_BYTES * 1000 // audio.FRAME_MS
AHEAD_S = 2.0
PACE = 1.05
FRAME_NS = audio.FRAME_MS * 1_000_000


class Dropped(Exception):
    """A message that is not taken; ``reason`` is ``size`` or ``ahead``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PcmMessages:
    """One client's stream of PCM16 messages, cut into 20 ms frames."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._framer = Framer()
        self._budget = TokenBucket(BYTES_PER_S * PACE, BYTES_PER_S * AHEAD_S, clock)

    def frames(self, pcm: bytes, now_ns: int) -> list[tuple[bytes, int]]:
        """The whole 20 ms frames ``pcm`` completes, each with its capture time (the
        remainder waits for the next message); raises :class:`Dropped`."""
        if not pcm or len(pcm) % CHUNK_BYTES or len(pcm) > MAX_MESSAGE_BYTES:
            raise Dropped("size", f"{len(pcm)} bytes is not a whole 10-{MAX_MESSAGE_MS} ms "
                          "of PCM16 24 kHz mono")
        if not self._budget.take(len(pcm)):
            raise Dropped("ahead", f"more than {AHEAD_S:g} s ahead of real time")
        frames = self._framer.push(pcm)
        last = len(frames) - 1
        return [(frame, now_ns - (last - i) * FRAME_NS) for i, frame in enumerate(frames)]
