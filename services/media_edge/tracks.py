"""The model's voice to one browser: a bounded queue of 20 ms frames, paced at real time.

Frames arrive from the link at its own pace (real time, with jitter), already encoded
(the edge encodes a session's model audio once, :class:`~services.runtime.voice_codec.
VoiceEncoder`, for all of its clients), and leave at aiortc's: ``recv()`` hands out one
Opus packet every 20 ms of the track's own clock, and the constant silence packet when
nothing is queued; aiortc only packetizes them. The queue is short on purpose: when it is full the
oldest frame goes (counted ``stale``), so a client that fell behind hears the present,
not a growing backlog, and a backlog left by a stall loses its silent frames (counted
``catch_up``) so the delay falls back in the next pause. ``clear()`` (on
``ai.interrupted``) drops everything at once.

A client whose offer said ``usedtx=1`` on Opus (the web client's does; ``dtx``) gets the
model's pauses as DTX: after :data:`DTX_HANGOVER_FRAMES` of silence packets, one
:data:`~services.runtime.voice_codec.DTX_PACKET` every :data:`DTX_INTERVAL_FRAMES`
slots instead of a packet every 20 ms, the track waiting for the next frame with one
timer (``ArrivalPacer.idle``). The slots between show as a jump in the RTP timestamp,
which the browser plays as comfort noise; the next frame goes in the slot it came in.

Each queued frame keeps its capture time (``capture_ns`` from the bus: when the link
received it), so the frame's age when ``recv()`` hands it to aiortc's encoder is
observed as ``voxrelay_frame_age_seconds{at="client"}``. While the edge waits for a
reply to reach this client (voice to voice), ``watch`` is shown each model frame handed
out; otherwise the per-frame path does nothing more.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import Packet

from proto.audio import FRAME_BYTES
from services.runtime.media import ArrivalPacer, skip_silent_backlog
from services.runtime.metrics import frame_age
from services.runtime.voice_codec import DTX_PACKET, SILENCE_PACKET, voice_packet

from .metrics import DOWNLINK_DTX_PACKETS, DROPPED_CATCH_UP, DROPPED_STALE, FRAMES_OUT

MAX_CATCH_UP_S = 0.2
"After a stall longer than this the clock restarts instead of bursting frames to catch up."

DTX_HANGOVER_FRAMES = 10
"Silence packets (200 ms) sent after the model's voice before DTX begins, as libopus does."
DTX_INTERVAL_FRAMES = 20
"In DTX, a packet every 400 ms (as browsers send): the stream stays alive to the receiver."

FrameWatch = Callable[[bytes], bool]
"Shown a model frame as it goes to the encoder; returns True when it has seen enough."

_observe_age = frame_age("client")


class DownlinkTrack(MediaStreamTrack):
    """Queued model audio for one client, paced at real time; silence when idle.

    A frame goes out as soon as it is queued within its 20 ms slot
    (:class:`~services.runtime.media.ArrivalPacer`): the model's voice arrives paced,
    so it waits for no timer here.
    """

    kind = "audio"
    voice_packets = True
    "recv() returns voice_packet()s (see services.runtime.rtp_send)."

    def __init__(self, max_frames: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        if max_frames < 1:
            raise ValueError(f"'max_frames' must be >= 1 (got {max_frames})")
        self.max_frames = max_frames
        self._queue: deque[tuple[bytes, bytes, int]] = deque()
        self._pacer = ArrivalPacer(clock, max_catch_up_s=MAX_CATCH_UP_S)
        self.watch: FrameWatch | None = None
        "While set, shown every queued frame handed to the encoder; unset when it returns True."
        self.dtx = False
        "The client plays DTX (its offer said ``usedtx=1``): pauses go as DTX packets."
        self._quiet = 0
        "Slots handed out in a row with nothing queued."

    @property
    def queued(self) -> int:
        return len(self._queue)

    def push(self, pcm: bytes, packet: bytes, capture_ns: int = 0) -> None:
        """Queue one 20 ms frame (960 bytes of PCM and its Opus ``packet``) captured at
        ``capture_ns`` (0: unknown); the oldest goes when the queue is full."""
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"a frame must be {FRAME_BYTES} bytes (got {len(pcm)})")
        if len(self._queue) >= self.max_frames:
            self._queue.popleft()
            DROPPED_STALE.inc()
        self._queue.append((pcm, packet, capture_ns))
        self._pacer.arrived()

    def nudge(self) -> None:
        """The edge is awake for this client's microphone: a slot of silence about to
        end goes now (:meth:`~services.runtime.media.ArrivalPacer.nudge`)."""
        self._pacer.nudge()

    def clear(self) -> int:
        """Drop everything queued (barge-in); returns how many frames went."""
        dropped = len(self._queue)
        self._queue.clear()
        return dropped

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self.dtx and self._quiet > DTX_HANGOVER_FRAMES:
            pts = await self._pacer.idle(self._queue, DTX_INTERVAL_FRAMES)
        else:
            pts = await self._pacer.next(self._queue)
        if not self._queue:
            self._quiet += 1
            if self.dtx and self._quiet > DTX_HANGOVER_FRAMES:
                DOWNLINK_DTX_PACKETS.inc()
                return voice_packet(DTX_PACKET, pts)
            return voice_packet(SILENCE_PACKET, pts)
        self._quiet = 0
        if len(self._queue) > 1 and (skipped := skip_silent_backlog(self._queue)):
            DROPPED_CATCH_UP.inc(skipped)
        pcm, packet, capture_ns = self._queue.popleft()
        FRAMES_OUT.inc()
        if capture_ns:
            _observe_age(capture_ns)
        if self.watch is not None and self.watch(pcm):
            self.watch = None
        return voice_packet(packet, pts)

