"""A client's microphone onto the bus: decode, resample, cut into 20 ms frames, publish.

aiortc hands out Opus decoded as 48 kHz stereo s16, 960 samples a frame, whatever the
browser sent. Each frame is resampled to 24 kHz mono, cut into exact 20 ms frames
(480 samples, 960 bytes) and published on ``aud/in/<session>/<client>`` with the
capture time taken here; with ``skip_silence`` silence between turns stays off the bus
(:class:`SilenceGate`, the next frame's ``silent_before`` says how much) after a tail of
:data:`MIC_TAIL_FRAMES`. The remote
track's queue is unbounded, so it is always drained, even for listeners and muted
clients, whose audio is not published.

A browser told ``usedtx=1`` (the edge's answer says so: ``VOXRELAY_EDGE_DTX``) sends a
quiet microphone as one small comfort-noise packet every 400 ms instead of fifty full
ones a second. The 20 ms slots it left out show as a jump in the RTP timestamp (the
frame's ``pts``); the uplink counts them as silence kept off the bus, so their seqs are
skipped and the next frame's ``silent_before`` covers them, exactly as for silence the
edge keeps off the bus itself. A lost packet looks the same and is treated the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import av
from aiortc import MediaStreamTrack
from proto import audio, topics
from services.runtime.media import Framer, MonoResampler, SilenceGate, read_frames

from .metrics import DROPPED_DECODE, DROPPED_HWM, FRAMES_IN, MIC_SLOTS_LEFT_OUT

logger = logging.getLogger(__name__)

MAX_DTX_GAP_FRAMES = 500
"""The longest timestamp jump (10 s) read as slots a browser left out; a longer one (or a
jump back) is a restarted stream, and the count starts afresh."""
RTP_WRAP = 1 << 32

MIC_TAIL_FRAMES = 15
"""Quiet frames (300 ms) a microphone still sends after sound: the model's turn detection
waits for 200 ms of silence (``server_vad``'s default) and checks it in 100 ms windows.
Sent, that silence reaches the model at the microphone's pace: the mixer and the link pass
it on as it arrives. Kept off the bus, it would be made by the link's uplink on its own
clock, whose first frame of silence goes only once its slot is over (about 15 ms after
the microphone's frame would have come), and the end of the user's turn would be heard
that much later. It costs 13 more bus frames a turn than the default tail of two."""

Publish = Callable[[list[bytes]], bool]
"Sends one multipart frame without blocking; False when the socket would block."


class Uplink:
    """One client's microphone stream: ``aud/in/<session>/<client>``, seq per client."""

    def __init__(self, session_id: str, client_id: str, publish: Publish, *,
                 enabled: bool = True, first_seq: int = 0, skip_silence: bool = False) -> None:
        self.name = f"{session_id[:8]}/{client_id[:8]}"
        self.topic = topics.aud_in(session_id, client_id)
        self.enabled = enabled
        "False for listeners: their track is drained, nothing is published."
        self.muted = False
        "True while the client has muted itself: drained, nothing published."
        self.next_seq = first_seq
        self.first_frame_ns: int | None = None
        self.heard_at: float | None = None
        "time.monotonic() of the newest frame received from the browser (the loss watchdog)."
        self._publish = publish
        self._gate = SilenceGate(skip_silence, MIC_TAIL_FRAMES)
        self._next_pts: int | None = None
        "The pts the next decoded frame has if the browser left no slot out."
        self.left_out = 0
        "20 ms slots the browser did not send (DTX, or packets lost on the way)."
        self._resample = MonoResampler()
        self._framer = Framer()
        self.on_heard: Callable[[], None] | None = None
        "Called for each frame received: the edge is awake (the downlink's ``nudge``)."

    async def run(self, track: MediaStreamTrack) -> None:
        """Drain ``track`` until it ends, publishing its audio if enabled (each frame as
        it is decoded: :func:`~services.runtime.media.read_frames`)."""
        self._resample = MonoResampler()
        self._framer = Framer()
        await read_frames(track, self.take)
        logger.debug("Uplink(%s): track ended", self.name)

    def take(self, frame: av.AudioFrame) -> None:
        """One decoded frame from the browser."""
        self.heard_at = time.monotonic()
        if self.on_heard is not None:
            self.on_heard()
        self.skip_left_out(frame)
        if not self.enabled or self.muted:
            return
        try:
            pcm = self._resample(frame)
        except (ValueError, av.FFmpegError) as e:
            DROPPED_DECODE.inc()
            logger.warning("Uplink(%s): dropped a frame it could not resample: %s",
                           self.name, e)
            self._resample = MonoResampler()
            return
        for chunk in self._framer.push(pcm):
            self.publish(chunk)

    def skip_left_out(self, frame: av.AudioFrame) -> None:
        """Account for the 20 ms slots before ``frame`` that the browser never sent: their
        seqs are skipped and the gate counts them as silence (see the module docs)."""
        pts, base = frame.pts, frame.time_base
        if pts is None or base is None or not frame.sample_rate:
            return
        step = frame.samples * base.denominator // (frame.sample_rate * base.numerator)
        expected, self._next_pts = self._next_pts, (pts + step) % RTP_WRAP
        if expected is None:
            return
        gap = (pts - expected) % RTP_WRAP  # in the RTP clock (48 kHz for Opus)
        slots = gap * base.numerator * 1000 // (base.denominator * audio.FRAME_MS)
        if 0 < slots <= MAX_DTX_GAP_FRAMES:
            self.left_out += slots
            MIC_SLOTS_LEFT_OUT.inc(slots)
            self.next_seq += slots
            self._gate.skip(slots)

    def publish(self, pcm: bytes, capture_ns: int | None = None) -> None:
        """Send one 20 ms frame captured at ``capture_ns`` (default: now), unless it is
        silence kept off the bus (:class:`SilenceGate`); a frame the socket refuses is
        counted and its seq skipped."""
        now = time.time_ns() if capture_ns is None else capture_ns
        if self.first_frame_ns is None:
            self.first_frame_ns = now
            logger.info("Uplink(%s): first frame", self.name)
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        silent_before = self._gate.admit(pcm)
        if silent_before is None:
            return
        if self._publish(audio.pack(self.topic, seq, now, pcm, silent_before)):
            FRAMES_IN.inc()
        else:
            DROPPED_HWM.inc()
