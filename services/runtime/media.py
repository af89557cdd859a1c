"""PCM16 24 kHz mono audio on aiortc tracks: paced output, resampled and framed input.

Every aiortc peer in voxrelay (edges, link, simulator) speaks this format on the bus.
Outbound tracks hand aiortc one 20 ms frame per ``recv()``, paced at real time by a
:class:`Pacer`; inbound tracks are drained (their queue is unbounded), resampled from
aiortc's 48 kHz stereo to 24 kHz mono, and cut into exact 20 ms frames by a
:class:`Framer`.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections import deque
from collections.abc import Callable, Sized
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from av import AudioFrame, AudioResampler
from av.audio.plane import AudioPlane as Plane

from proto.audio import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
SILENCE = bytes(FRAME_BYTES)
AUDIBLE_PEAK = 104
"A peak of about -50 dBFS: below it a frame is silence (codec noise, comfort noise)."


def audible(pcm: bytes | memoryview | Plane, peak: int = AUDIBLE_PEAK) -> bool:
    """Whether a PCM16 frame carries sound rather than (near) silence (a few µs a frame)."""
    samples = np.frombuffer(pcm, dtype="<i2")
    # max and min apart: abs() of -32768 overflows int16
    return bool(samples.size) and bool(samples.max() > peak or samples.min() < -peak)


def pcm_frame(pcm: bytes, pts: int) -> AudioFrame:
    """An aiortc-ready 20 ms frame of PCM16 24 kHz mono (``pcm`` is 960 bytes)."""
    frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
    frame.planes[0].update(pcm)
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    frame.time_base = TIME_BASE
    return frame


class Pacer:
    """Real-time pacing for an outbound track: frame n is due at start + n × 20 ms.

    With ``max_catch_up_s``, a consumer that stalled for longer restarts the clock from
    now instead of bursting the frames it missed.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_catch_up_s: float | None = None) -> None:
        self._clock = clock
        self._max_catch_up_s = max_catch_up_s
        self._start: float | None = None
        self.pts = 0

    async def next(self) -> int:
        """Wait until the next frame is due; returns its pts."""
        wait = self._advance()
        if wait > 0:
            await asyncio.sleep(wait)
        return self.pts

    def _advance(self) -> float:
        """Count the next frame; seconds until it is due (<= 0: now)."""
        now = self._clock()
        if self._start is None:
            self._start = now
            return 0.0
        self.pts += FRAME_SAMPLES
        due = self._start + self.pts / SAMPLE_RATE
        if self._max_catch_up_s is not None and now - due > self._max_catch_up_s:
            self._start = now - self.pts / SAMPLE_RATE
            return 0.0
        return due - now


FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
NUDGE_SLACK_S = FRAME_S
"""How early :meth:`ArrivalPacer.nudge` lets a slot's silence go: a whole slot, so that a
track paced beside another stream of 20 ms packets sends in that stream's wake-ups."""
NUDGE_AFTER_IDLE_SLOTS = 5
"""Slots of silence in a row (100 ms) after which :meth:`ArrivalPacer.nudge` may end a
slot early: the stream is between utterances, not waiting for a late frame."""
REALIGN_MARGIN_S = 0.005
"""When an ArrivalPacer's slots move to follow its frames, a slot opens this long before
its frame is due: a frame that much early goes at once, and one 15 ms late still fits."""


class ArrivalPacer(Pacer):
    """Real-time pacing that lets a frame go the moment it is queued within its slot.

    Frame n's slot is the 20 ms before it is due: it goes out as soon as it is queued
    in that window, and only a slot that ends with nothing queued is filled (with
    silence, by the track). A source that is itself paced (the mixer's clock, the
    model's voice) so never waits for a timer, where :class:`Pacer` holds each frame
    until its due time: 0–20 ms, 10 on average, on every paced hop. No frame leaves
    more than one slot early, so the stream stays real-time. The track calls
    :meth:`arrived` when it queues a frame.

    The slots follow the frames. A frame that arrives after the one before it went, yet
    before its own slot opens, finds the slots lagging its source: a late frame took
    the slot after its own (its own was filled with silence), or the source put a frame
    of silence just ahead of it (the mixer's tick before a client's first word). Held
    back, it and every frame after it would each wait for their slot, a slot behind for
    as long as the stream went on without a gap: 0-20 ms more on every frame,
    ``voxrelay_frame_age_seconds`` measured at the link's uplink and the edges'
    downlinks. So it goes at once and the slots move with it (to open
    :data:`REALIGN_MARGIN_S` before its successors are due); the stream then runs a
    frame ahead of real time, by the silence put in before it, which a receiver's
    playout absorbs and a model's turn detection only counts as silence. A frame
    queued while the one before it went (a burst, or a source that queues ahead, like
    the simulator's model voice) still waits for its slot.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_catch_up_s: float | None = None) -> None:
        super().__init__(clock, max_catch_up_s)
        self._waiter: asyncio.Future[None] | None = None
        self._went_alone = False
        "Nothing was queued behind the last frame as it went: the next one came after it."
        self.realigned = 0
        "Times the slots moved to follow the frames."
        self._wake_at = 0.0
        "When the current wait for a slot's end ends, on ``clock``."
        self.nudged = 0
        "Waits ended early by :meth:`nudge`."
        self._idle_slots = 0
        "Slots in a row that :meth:`next` ended with nothing queued."

    def arrived(self) -> None:
        """A frame was queued: a :meth:`next` waiting for one goes on."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self, queue: Sized = ()) -> int:  # type: ignore[override]
        """Wait until the next frame may go — ``queue`` holds one and its slot is open,
        or its slot is over; returns its pts."""
        wait = self._advance()
        if wait > 0 and not queue:
            await self._until_arrival(wait)
            wait = self._due_in()
        early = wait - FRAME_S
        if early > 0 and queue:
            if self._went_alone:  # the slots lag the frames: move them
                assert self._start is not None
                self._start -= early + REALIGN_MARGIN_S
                self.realigned += 1
            else:  # queued with the one before it: it waits for its slot
                await asyncio.sleep(early)
        self._went_alone = len(queue) <= 1
        self._idle_slots = 0 if queue else self._idle_slots + 1
        return self.pts

    async def idle(self, queue: Sized, slots: int) -> int:
        """Wait, with one timer, until a frame is queued or ``slots`` slots have passed;
        returns the pts of the slot it ends in (a queued frame goes in the slot it came
        in, at once). For a track in DTX, which sends nothing for most slots: waking
        for each would cost what the silence it no longer sends saved."""
        if queue or self._start is None:
            return await self.next(queue)
        last = self.pts + slots * FRAME_SAMPLES
        wait = self._start + last / SAMPLE_RATE - self._clock()
        if wait > 0:
            await self._until_arrival(wait)
        if queue:  # the slot it came in: the first one whose due time is not past
            came = math.ceil((self._clock() - self._start) / FRAME_S) * FRAME_SAMPLES
            self.pts = max(self.pts + FRAME_SAMPLES, min(came, last))
        else:
            self.pts = last
        self._went_alone = True
        self._idle_slots = 0 if queue else self._idle_slots + slots
        return self.pts

    def nudge(self, slack_s: float = NUDGE_SLACK_S) -> None:
        """The process is awake anyway (a packet of another stream came in): once the
        stream has been idle for :data:`NUDGE_AFTER_IDLE_SLOTS` slots, a wait for a
        slot's end that would end within ``slack_s`` ends now, so the slot's silence
        goes out in this wake-up rather than in one of its own (at most ``slack_s``
        early; the slots themselves stay where they are). While frames flow, a frame a
        little late keeps its whole slot: a nudge then would put silence in the middle
        of speech."""
        if self._waiter is not None and not self._waiter.done() \
                and self._idle_slots >= NUDGE_AFTER_IDLE_SLOTS \
                and self._wake_at - self._clock() <= slack_s:
            self._waiter.set_result(None)
            self.nudged += 1

    async def _until_arrival(self, wait: float) -> None:
        """Sleep ``wait`` seconds, or less if a frame is queued (:meth:`arrived`) or the
        process is awake anyway near the end (:meth:`nudge`)."""
        loop = asyncio.get_running_loop()
        self._wake_at = self._clock() + wait
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(wait, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _due_in(self) -> float:
        assert self._start is not None
        return self._start + self.pts / SAMPLE_RATE - self._clock()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def skip_silent_backlog(queue: deque[Any], pcm_at: int = 0) -> int:
    """Drop silent frames from the head of a paced playout queue while others wait
    behind them; returns how many went. ``pcm_at`` is the PCM's index in an item.

    A queue drained one frame per 20 ms and filled at the same rate keeps whatever
    backlog a stall gave it (a slow loop, a burst off the bus): its delay would stay up
    to the queue's length for the rest of the conversation. Skipping the silent frames
    of a backlog drains it in the next pause, inaudibly, and never touches speech; the
    newest frame always stays.
    """
    skipped = 0
    while len(queue) > 1 and not audible(queue[0][pcm_at]):
        queue.popleft()
        skipped += 1
    return skipped


SILENCE_TAIL_FRAMES = 2
"Quiet frames a :class:`SilenceGate` still sends after sound, so receivers hear it end."


class SilenceGate:
    """Keeps a stream's silence off the bus: one per published stream.

    Every audible frame goes, and the first ``tail_frames`` quiet ones after it
    (:data:`SILENCE_TAIL_FRAMES` unless told); then nothing until the next audible frame,
    which carries how many were skipped (``AudioHeader.silent_before``) so receivers play
    them as silence instead of counting them lost. Between turns (half of a conversation,
    per direction) a stream then costs no bus message, no wake-up of the receiving
    process and no handling there: ``voxrelay bench`` measured 0.089 → 0.066 CPU-s per
    conversation-second at 8 conversations. A stream starts quiet: the first frames are
    sent only once there is sound.

    The tail's quiet frames keep their source's timing; once the gate closes, a receiver
    that must go on (the link's uplink toward the model) makes its silence on its own
    clock. A tail as long as the model's turn detection waits for (a microphone's:
    ``media_edge.uplink.MIC_TAIL_FRAMES``) lets that wait run on the microphone's timing.
    """

    def __init__(self, enabled: bool = True, tail_frames: int = SILENCE_TAIL_FRAMES) -> None:
        self.enabled = enabled
        "False: every frame goes, ``silent_before`` 0 (``VOXRELAY_BUS_SKIP_SILENCE``)."
        self.tail_frames = tail_frames
        self._quiet = tail_frames
        self._skipped = 0
        self.skipped = 0
        "Frames kept off the bus so far."

    def admit(self, pcm: bytes) -> int | None:
        """None: keep this frame off the bus. Otherwise send it, with this ``silent_before``."""
        return self.admit_sound(audible(pcm)) if self.enabled else 0

    def skip(self, frames: int) -> None:
        """``frames`` of silence the publisher left out itself: the next frame sent counts
        them in its ``silent_before`` (kept as a seq gap, a loss, when not enabled). They
        count toward the tail, as the quiet frames they stand for would have."""
        if self.enabled:
            self._skipped += frames
            self.skipped += frames
            self._quiet += frames

    def admit_sound(self, sound: bool) -> int | None:
        """:meth:`admit` for a frame whose publisher judged ``sound`` itself."""
        if not self.enabled:
            return 0
        if sound:
            self._quiet = 0
        else:
            self._quiet += 1
            if self._quiet > self.tail_frames:
                self._skipped += 1
                self.skipped += 1
                return None
        skipped, self._skipped = self._skipped, 0
        return skipped


class Framer:
    """Cuts a stream of PCM16 bytes into exact 20 ms frames, carrying the remainder."""

    def __init__(self) -> None:
        self._pending = bytearray()

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def push(self, pcm: bytes) -> list[bytes]:
        """Add ``pcm``; return every complete frame now available, oldest first."""
        self._pending += pcm
        whole = len(self._pending) - len(self._pending) % FRAME_BYTES
        frames = [bytes(self._pending[i:i + FRAME_BYTES]) for i in range(0, whole, FRAME_BYTES)]
        del self._pending[:whole]
        return frames


DECODED_SAMPLES = 960
"What aiortc's Opus decoder hands out: 20 ms at 48 kHz."


class MonoResampler:
    """Decoded frames → PCM16 24 kHz mono, one frame's worth out for each frame in.

    A frame already in that format (:class:`~.voice_decoder.VoiceDecoder`'s) passes
    through; the rest are resampled.

    libswresample's filter holds back a few samples (16 from 48 kHz), so its first
    output is short: a :class:`Framer` behind it would then complete each 20 ms frame
    only when the next decoded frame arrives, 20 ms late on every frame of the stream.
    The first output is padded in front to its full length instead, so each decoded
    20 ms frame becomes exactly one 20 ms frame at once, delayed by the filter's
    0.7 ms only.

    A silent 20 ms frame (every sample within :data:`AUDIBLE_PEAK`: codec noise) skips
    the filter and comes out as 20 ms of zeros; what the filter still held of the
    audio before it (under a millisecond) comes out ahead of the next sound.
    """

    def __init__(self) -> None:
        self._resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._aligned = False

    def __call__(self, frame: AudioFrame) -> bytes:
        if frame.sample_rate == SAMPLE_RATE and frame.format.name == "s16" \
                and frame.layout.name == "mono":  # decoded to the bus format already
            pcm = bytes(frame.planes[0])[:frame.samples * 2]
            return pcm if audible(pcm) else bytes(len(pcm))
        if frame.samples == DECODED_SAMPLES and frame.format.name == "s16" \
                and not audible(frame.planes[0]):
            return SILENCE
        pcm = b"".join(out.to_ndarray().tobytes() for out in self._resampler.resample(frame))
        if not self._aligned:
            self._aligned = True
            short = frame.samples * SAMPLE_RATE // frame.sample_rate * 2 - len(pcm)
            if short > 0:
                pcm = bytes(short) + pcm
        return pcm


async def read_frames(track: MediaStreamTrack, on_frame: Callable[[Any], None]) -> None:
    """Hand each frame of ``track`` to ``on_frame`` until the track ends.

    A track aiortc receives (its ``RemoteStreamTrack``) has each frame handed over as
    the receiver decodes it, on the decoder's own stack: with voxrelay's inline decoder
    and lean receive path (:mod:`.rtp_receive`), in the socket's callback, so no task is
    woken for a frame. The frames the track had queued before go first. Any other track
    is read with ``recv()``. An exception from ``on_frame`` ends the reading and is
    raised here, as it would be from a ``recv()`` loop.
    """
    queue = getattr(track, "_queue", None)
    if not isinstance(track, RemoteStreamTrack) or type(queue) is not asyncio.Queue \
            or "put_nowait" in vars(queue):  # not aiortc's, or read already
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            on_frame(frame)
    if track.readyState != "live":
        return
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def hand(frame: Any) -> None:
        if done.done():  # after a failure, until put_nowait is restored: kept
            asyncio.Queue.put_nowait(queue, frame)
            return
        if frame is None:  # the receiver stopped: the track ends, as recv() ends it
            done.set_result(None)
            track.stop()
            return
        try:
            on_frame(frame)
        except Exception as e:  # noqa: BLE001 - raised from read_frames below
            done.set_exception(e)

    while not queue.empty() and not done.done():
        hand(queue.get_nowait())
    queue.put_nowait = hand  # type: ignore[method-assign]
    track.on("ended", lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        del queue.put_nowait


async def drain_track(track: MediaStreamTrack, on_pcm: Callable[[bytes], None]) -> None:
    """Read ``track`` until it ends, handing each decoded frame as PCM16 24 kHz mono
    (as :func:`read_frames` hands frames)."""
    resample = MonoResampler()

    def take(frame: Any) -> None:
        pcm = resample(frame)
        if pcm:
            on_pcm(pcm)

    await read_frames(track, take)
