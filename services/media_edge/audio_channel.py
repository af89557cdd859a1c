"""The ``datachannel`` transport: a client's audio as PCM16 on a DataChannel named ``audio``.

For clients that bring their own audio pipeline (an AudioWorklet page, an embedded
device): with ``"transport": "datachannel"`` the client opens an ordered, reliable
DataChannel labelled ``audio`` beside ``events``, and no audio track is needed.

Uplink (client → edge): binary messages of PCM16 24 kHz mono, little-endian, no header:
20 ms (480 samples, 960 bytes) or any whole multiple of 10 ms up to 200 ms, which the
edge re-frames into the same 20 ms ``aud/in`` frames as the track path, with capture
times (:mod:`services.runtime.pcm_messages`). Other sizes (empty, odd, over 200 ms), text
and audio running ahead of real time are dropped and counted
(``voxrelay_edge_datachannel_audio_dropped_total{direction="in", reason}``).

Downlink (edge → client): the model's voice, one binary message per 20 ms frame, paced
at real time (a frame goes as soon as it is queued within its 20 ms slot, as on the
track: :class:`~services.runtime.media.ArrivalPacer`), nothing while the AI is silent.
Each message is an 8-byte header (the frame's ``seq`` in the client's stream and the
edge's send time in ``ms``) and the frame: :mod:`proto.client_audio`.

968 bytes a message: one SCTP DATA chunk, under the 1,160 bytes of user data aiortc
fits in a packet that crosses a 1280-MTU path (aiortc has no path-MTU discovery), so no
message is ever fragmented.

Back-pressure: at most ``queue_frames`` wait at the edge (the oldest goes, ``stale``);
before each send the channel's ``bufferedAmount`` is checked and the frame dropped
(``backpressure``) while more than ``MAX_BUFFERED_MS`` of audio is already waiting in
SCTP: a client that cannot keep up hears the present, not seconds of backlog. A barge-in
(``ai.interrupted``) drops what the edge holds at once (``interrupted``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from aiortc import RTCDataChannel

from proto.audio import FRAME_BYTES, FRAME_MS
from proto.client_audio import MESSAGE_BYTES, pack
from services.runtime.media import ArrivalPacer
from services.runtime.metrics import frame_age
from services.runtime.pcm_messages import Dropped, PcmMessages

from .metrics import DATACHANNEL_AUDIO_DROPPED, FRAMES_OUT
from .tracks import MAX_CATCH_UP_S, FrameWatch
from .uplink import Uplink

logger = logging.getLogger(__name__)

SCTP_USER_DATA_BYTES = 1160
"What one SCTP DATA chunk carries in aiortc on a 1280-MTU path."
assert MESSAGE_BYTES <= SCTP_USER_DATA_BYTES
MAX_BUFFERED_MS = 100
MAX_BUFFERED_BYTES = MAX_BUFFERED_MS // FRAME_MS * MESSAGE_BYTES
"Audio already waiting in the channel beyond which a frame is dropped, not sent."

_observe_age = frame_age("client")


class ChannelUplink:
    """A client's ``audio`` channel messages onto its :class:`Uplink`."""

    def __init__(self, uplink: Uplink, name: str) -> None:
        self.uplink = uplink
        self.name = name
        self._messages = PcmMessages()

    def on_message(self, message: str | bytes) -> None:
        self.uplink.heard_at = time.monotonic()
        if isinstance(message, str):
            DATACHANNEL_AUDIO_DROPPED.labels("in", "text").inc()
            return
        try:
            frames = self._messages.frames(message, time.time_ns())
        except Dropped as e:
            DATACHANNEL_AUDIO_DROPPED.labels("in", e.reason).inc()
            logger.debug("ChannelUplink(%s) dropped a message: %s", self.name, e)
            return
        if not self.uplink.enabled or self.uplink.muted:
            return
        for pcm, capture_ns in frames:
            self.uplink.publish(pcm, capture_ns)


class ChannelDownlink:
    """Queued model audio for one ``datachannel`` client, sent paced on its channel.

    The same surface as :class:`~.tracks.DownlinkTrack` (``push``, ``clear``, ``watch``,
    ``queued``, ``stop``) so the peer and the edge treat both transports alike.
    """

    def __init__(self, max_frames: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_frames < 1:
            raise ValueError(f"'max_frames' must be >= 1 (got {max_frames})")
        self.max_frames = max_frames
        self.channel: RTCDataChannel | None = None
        self.watch: FrameWatch | None = None
        "While set, shown every frame sent; unset when it returns True."
        self.sent = 0
        self._queue: deque[tuple[int, bytes, int]] = deque()
        self._next_seq = 0
        self._clock = clock
        self._started: float | None = None
        self._pacer = ArrivalPacer(clock, max_catch_up_s=MAX_CATCH_UP_S)
        self._wake = asyncio.Event()
        self._stopped = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    def attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel

    def push(self, pcm: bytes, packet: bytes = b"", capture_ns: int = 0) -> None:
        """Queue one 20 ms frame (``packet``, the track's Opus, is not needed here)."""
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"a frame must be {FRAME_BYTES} bytes (got {len(pcm)})")
        if len(self._queue) >= self.max_frames:
            self._queue.popleft()
            DATACHANNEL_AUDIO_DROPPED.labels("out", "stale").inc()
        self._queue.append((self._next_seq, pcm, capture_ns))
        self._next_seq += 1
        self._pacer.arrived()
        self._wake.set()

    def clear(self) -> int:
        """Drop everything queued (barge-in); returns how many frames went."""
        dropped = len(self._queue)
        if dropped:
            DATACHANNEL_AUDIO_DROPPED.labels("out", "interrupted").inc(dropped)
        self._queue.clear()
        return dropped

    def stop(self) -> None:
        self._stopped = True
        self._queue.clear()
        self._wake.set()

    async def run(self) -> None:
        """Send queued frames at real time until stopped; idle (no timer) while empty."""
        while not self._stopped:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._pacer.next(self._queue)
            if self._queue:
                self._send(*self._queue.popleft())

    def _send(self, seq: int, pcm: bytes, capture_ns: int) -> None:
        channel = self.channel
        if channel is None or channel.readyState != "open":
            DATACHANNEL_AUDIO_DROPPED.labels("out", "closed").inc()
            return
        if channel.bufferedAmount > MAX_BUFFERED_BYTES:
            DATACHANNEL_AUDIO_DROPPED.labels("out", "backpressure").inc()
            return
        now = self._clock()
        if self._started is None:
            self._started = now
        channel.send(pack(seq, round((now - self._started) * 1000), pcm))
        self.sent += 1
        FRAMES_OUT.inc()
        if capture_ns:
            _observe_age(capture_ns)
        if self.watch is not None and self.watch(pcm):
            self.watch = None
