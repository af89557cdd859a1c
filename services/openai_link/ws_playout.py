"""The model's voice from WebSocket audio deltas to a real-time stream of 20 ms frames.

Over WebRTC the model's audio arrives on a track, at real time, and the API tracks its
playout (``output_audio_buffer.started/stopped/cleared``, server-side truncation on
barge-in). Over WebSocket it arrives as ``response.output_audio.delta`` events, as fast
as the API makes it (several times real time), and playout is the client's business.
:class:`ModelPlayout` is that client side: it cuts each response's audio into exact
20 ms frames (a :class:`~services.runtime.media.Framer` per response; the last frame of
a response is padded with silence), queues them, and hands them to ``on_audio`` one
every 20 ms (a :class:`~services.runtime.media.Pacer`), so ``aud/model`` stays a
real-time stream however the audio came. It knows what has been played, so it can say
where a barge-in cut a reply (:meth:`interrupt`), and it reports when a response's
playout begins and ends (``on_started`` / ``on_stopped``), which the connection turns
into the ``output_audio_buffer.*`` events the WebRTC transport would have had.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from proto.audio import FRAME_BYTES, FRAME_MS
from services.runtime.media import Framer, Pacer

logger = logging.getLogger(__name__)

MAX_CATCH_UP_S = 0.06
"""A frame up to this late (the deltas ran dry briefly) is followed by a short catch-up;
later than that, the clock restarts (no burst after a gap between replies)."""
MAX_REMEMBERED = 32
"Interrupted and finished responses remembered, to drop their late deltas."


@dataclass
class Interrupted:
    """Where a barge-in cut a reply: the item to truncate and how much of it was heard."""

    response_id: str
    item_id: str
    played_ms: int


@dataclass
class _Playing:
    response_id: str
    item_id: str
    frames: int = 0


class ModelPlayout:
    def __init__(self, on_audio: Callable[[bytes], None],
                 on_started: Callable[[str], None], on_stopped: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._on_audio = on_audio
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._clock = clock
        self._queue: deque[tuple[str, str, bytes]] = deque()
        "(response id, item id, 20 ms frame) not yet played, oldest first."
        self._framing: tuple[str, str, Framer] | None = None
        "The response whose deltas are being cut into frames."
        self._playing: _Playing | None = None
        self._done: set[str] = set()
        "Responses that ended (response.done) with frames still to play."
        self._ignored: OrderedDict[str, None] = OrderedDict()
        "Responses whose late deltas are dropped (interrupted)."
        self._wake = asyncio.Event()
        self.frames_played = 0

    @property
    def queued_frames(self) -> int:
        return len(self._queue)

    @property
    def playing(self) -> str | None:
        """The response whose audio is playing, if any."""
        return self._playing.response_id if self._playing is not None else None

    # -- intake -----------------------------------------------------------------

    def add(self, response_id: str, item_id: str, pcm: bytes) -> None:
        """One audio delta of a response (any length of PCM16 24 kHz mono)."""
        if response_id in self._ignored:
            return
        if self._framing is None or self._framing[0] != response_id:
            self._flush()
            self._framing = (response_id, item_id, Framer())
        _, item, framer = self._framing
        for frame in framer.push(pcm):
            self._queue.append((response_id, item, frame))
        self._wake.set()

    def response_done(self, response_id: str) -> None:
        """The response ended: its last partial frame is padded and queued, and its playout
        ends once its queued frames have played (now, if none are left)."""
        if self._framing is not None and self._framing[0] == response_id:
            self._flush()
        self._remember_ignored(response_id)
        if any(r == response_id for r, _, _ in self._queue):
            self._done.add(response_id)
        elif self._playing is not None and self._playing.response_id == response_id:
            self._stop_playing()

    def interrupt(self) -> Interrupted | None:
        """The user spoke over the model: drop every unplayed frame. Returns the reply that
        was cut (playing, or received but not yet started), if any."""
        cut: Interrupted | None = None
        if self._playing is not None:
            cut = Interrupted(self._playing.response_id, self._playing.item_id,
                              self._playing.frames * FRAME_MS)
        elif self._queue:
            response_id, item_id, _ = self._queue[0]
            cut = Interrupted(response_id, item_id, 0)
        elif self._framing is not None:
            cut = Interrupted(self._framing[0], self._framing[1], 0)
        for response_id in {r for r, _, _ in self._queue} | (
                {self._framing[0]} if self._framing is not None else set()):
            self._remember_ignored(response_id)
        if cut is not None:
            self._remember_ignored(cut.response_id)
        self._queue.clear()
        self._framing = None
        self._done.clear()
        self._playing = None
        return cut

    def _flush(self) -> None:
        """Queue the framing response's remainder as a last frame padded with silence."""
        if self._framing is None:
            return
        response_id, item_id, framer = self._framing
        self._framing = None
        if framer.pending_bytes:
            rest = framer.push(bytes(FRAME_BYTES - framer.pending_bytes))
            self._queue.extend((response_id, item_id, frame) for frame in rest)
            self._wake.set()

    def _remember_ignored(self, response_id: str) -> None:
        self._ignored[response_id] = None
        while len(self._ignored) > MAX_REMEMBERED:
            self._ignored.popitem(last=False)

    # -- playout ----------------------------------------------------------------

    async def run(self) -> None:
        """Play queued frames at real time until cancelled."""
        pacer = Pacer(self._clock, max_catch_up_s=MAX_CATCH_UP_S)
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            await pacer.next()
            if self._queue:  # (an interrupt may have emptied it meanwhile)
                self._play_one()

    def _play_one(self) -> None:
        response_id, item_id, frame = self._queue.popleft()
        if self._playing is None or self._playing.response_id != response_id:
            if self._playing is not None:
                self._stop_playing()
            self._playing = _Playing(response_id, item_id)
            self._on_started(response_id)
        self._playing.frames += 1
        self.frames_played += 1
        self._on_audio(frame)
        if response_id in self._done and (not self._queue or self._queue[0][0] != response_id):
            self._done.discard(response_id)
            self._stop_playing()

    def _stop_playing(self) -> None:
        playing, self._playing = self._playing, None
        if playing is not None:
            self._on_stopped(playing.response_id)
