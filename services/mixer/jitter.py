"""A small per-client jitter buffer: frames in by ``seq``, at most one out per mixer tick.

The mixer's clock never waits for a client. Each tick takes the client's oldest buffered
frame, or nothing (the client then contributes silence). Playout starts once
``target_frames`` are buffered (about 40 ms), or once a lone frame has waited that many
ticks; when the buffer runs dry it re-primes, so a client that pauses and resumes comes
back at the target latency instead of far behind.

Frames are dropped, and the reason returned, when they are:

- ``stale``: at or before a frame already played (late or duplicate), already buffered,
  or captured more than ``stale_after_ns`` before the client's newest frame;
- ``overflow``: beyond ``max_frames`` buffered (the oldest goes);

and :meth:`JitterBuffer.trim` drops what a late mixer can no longer play in time.

Latency is kept at the target, not just bounded: arrival bursts (an edge whose decoder
hands over two frames at once) would otherwise leave the buffer deeper than needed for
good, since frames come in exactly as fast as they go out. So the buffer watches its
smallest depth over each second of playout; when even that stayed above the target, the
extra frames were pure delay, and one (20 ms) is dropped (``stale``) — at most one a
second, so the cut is inaudible.

Mixing on arrival (:meth:`JitterBuffer.mix_on_arrival`, a lone client) nothing is built
up: the first frame is ready at once, and the buffer should hold no frame between
arrivals. A quiet frame that waits ahead of another is then dropped at once, so the delay
of a bunched arrival goes in the next pause in speech.
Silence an edge keeps off the bus (``silent_before`` on the next frame) is not a loss: the
frame after it is next in sequence.
A frame with an old ``seq`` but a capture time newer than anything seen means the edge
restarted the client's stream (a rebuilt peer connection): the buffer starts over.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from proto.audio import FRAME_MS
from services.runtime.media import audible

TARGET_FRAMES = 2
MAX_FRAMES = 6
SETTLE_TICKS = 50
"The window (1 s of ticks) over which the smallest depth decides whether to shed a frame."
STALE_AFTER_NS = 150_000_000


class DropReason(enum.StrEnum):
    """Why an incoming audio frame was not mixed (the metric's ``reason`` label)."""

    DECODE = "decode"
    "Malformed: wrong part count, bad header or topic, wrong size."
    UNKNOWN = "unknown"
    "For no session or client this mixer mixes."
    STALE = "stale"
    "Late, duplicate, or too old to play."
    OVERFLOW = "overflow"
    "The client's buffer was full."
    GAP = "gap"
    "Never arrived: missing from the client's sequence on the bus."
    CATCH_UP = "catch_up"
    """Shed to take back delay: a buffer that stayed deeper than its target for a second,
    or, mixing on arrival, a quiet frame waiting ahead of another."""


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    capture_ns: int
    pcm: bytes


@dataclass(frozen=True)
class JitterSettings:
    target_frames: int = TARGET_FRAMES
    "Frames buffered before playout starts (each is FRAME_MS long)."
    max_frames: int = MAX_FRAMES
    stale_after_ns: int = STALE_AFTER_NS
    "A frame captured this long before the client's newest is dropped."

    def __post_init__(self) -> None:
        if self.target_frames < 1:
            raise ValueError(f"'target_frames' must be >= 1 (got {self.target_frames})")
        if self.max_frames < self.target_frames:
            raise ValueError(f"'max_frames' must be >= 'target_frames' ({self.target_frames}) "
                             f"(got {self.max_frames})")
        if self.stale_after_ns < FRAME_MS * 1_000_000:
            raise ValueError(f"'stale_after_ns' must be >= one frame ({FRAME_MS} ms) "
                             f"(got {self.stale_after_ns})")


class JitterBuffer:
    def __init__(self, settings: JitterSettings) -> None:
        self.settings = settings
        self._frames: dict[int, Frame] = {}
        self._played: int | None = None
        "The last seq handed out."
        self._newest: Frame | None = None
        "The highest-seq frame seen."
        self._primed = False
        self._waited = 0
        self._window_ticks = 0
        self._window_min = self.settings.max_frames + 1
        self.shed = 0
        "Frames dropped to bring latency back to the target (counted as stale by the caller)."
        self._settle_target = settings.target_frames
        "The depth (counted before each pop) that latency is brought back to."
        self._prompt = False

    @property
    def depth(self) -> int:
        return len(self._frames)

    def push(self, frame: Frame, silent_before: int = 0) -> list[DropReason]:
        """Buffer ``frame``; returns what was dropped (it, or older frames), usually nothing.

        ``silent_before``: frames of silence just before it that its edge kept off the
        bus. When they are all that is missing since the last frame played, they count
        as played (as silence, while the buffer was dry), so the frame is next in
        sequence: mixed on arrival for a lone client, as a continuous stream would be.
        """
        if self._restarted(frame):
            self.reset()
        if silent_before and not self._frames and self._played is not None \
                and 0 < frame.seq - self._played - 1 <= silent_before:
            self._played = frame.seq - 1
        if (self._played is not None and frame.seq <= self._played) or frame.seq in self._frames:
            return [DropReason.STALE]
        newest = self._newest
        if newest is None or frame.seq > newest.seq:
            self._newest = newest = frame
        deadline = newest.capture_ns - self.settings.stale_after_ns
        if frame.capture_ns < deadline:
            return [DropReason.STALE]
        self._frames[frame.seq] = frame
        dropped: list[DropReason] = []
        if newest is frame:
            for seq in [s for s, f in self._frames.items() if f.capture_ns < deadline]:
                del self._frames[seq]
                dropped.append(DropReason.STALE)
        while len(self._frames) > self.settings.max_frames:
            del self._frames[min(self._frames)]
            dropped.append(DropReason.OVERFLOW)
        return dropped

    @property
    def idle(self) -> bool:
        """Empty, and re-primed if it primes: a tick's ``pop`` changes nothing."""
        return not self._frames and (self._prompt or not (self._primed or self._waited))

    def mix_on_arrival(self, on: bool) -> None:
        """Whether frames are mixed as they arrive (:meth:`ready`): then latency is brought
        back to one frame, not the target, and nothing is built up first, at the start or
        after running dry: each frame goes when it comes."""
        self._prompt = on
        self._settle_target = 1 if on else self.settings.target_frames

    def ready(self) -> bool:
        """Whether the next frame in sequence is here, playout having started (or the first
        frame, mixing on arrival): it can be mixed now, as it arrives, rather than wait for
        the tick."""
        if self._played is None:
            return self._prompt and bool(self._frames)
        return (self._primed or self._prompt) and self._played + 1 in self._frames

    def pop(self) -> Frame | None:
        """The frame for this tick, or None (silence) if there is none yet or none left."""
        if not self._frames:
            if not self._prompt:
                self._primed = False
                self._waited = 0
            return None
        if not self._primed and not self._prompt:
            self._waited += 1
            target = self.settings.target_frames
            if len(self._frames) < target and self._waited <= target:
                return None
            self._primed = True
        self._settle()
        if self._prompt:
            self._skip_quiet_backlog()
        frame = self._frames.pop(min(self._frames))
        self._played = frame.seq
        return frame

    def _skip_quiet_backlog(self) -> None:
        """Mixing on arrival, drop quiet frames that wait ahead of another: a frame's
        delay (a bunched arrival) goes in the next pause, not after a second of it."""
        while len(self._frames) > 1:
            seq = min(self._frames)
            if audible(self._frames[seq].pcm):
                return
            del self._frames[seq]
            self._played = seq
            self.shed += 1

    def _settle(self) -> None:
        """Shed one frame a second while the buffer never drained to its target."""
        self._window_min = min(self._window_min, len(self._frames))
        self._window_ticks += 1
        if self._window_ticks < SETTLE_TICKS:
            return
        if self._window_min > self._settle_target and len(self._frames) > 1:
            seq = min(self._frames)
            del self._frames[seq]
            self._played = seq
            self.shed += 1
        self._window_ticks = 0
        self._window_min = self.settings.max_frames + 1

    def trim(self) -> list[DropReason]:
        """Drop the oldest frames down to the target depth (after the mixer fell behind)."""
        dropped: list[DropReason] = []
        while len(self._frames) > self.settings.target_frames:
            seq = min(self._frames)
            del self._frames[seq]
            self._played = seq
            dropped.append(DropReason.STALE)
        return dropped

    def reset(self) -> None:
        self._frames.clear()
        self._played = None
        self._newest = None
        self._primed = False
        self._waited = 0
        self._window_ticks = 0
        self._window_min = self.settings.max_frames + 1

    def _restarted(self, frame: Frame) -> bool:
        return (self._played is not None and frame.seq <= self._played
                and self._newest is not None and frame.capture_ns > self._newest.capture_ns)
