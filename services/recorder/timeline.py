"""Where each received frame goes in its file, so that sample N is at ``start + N / rate``.

A recorded stream is a file of samples: sample 0 is its first frame's first sample, and
``started_at`` that frame's capture time. Frames follow one another in ``seq`` order,
each at a position (in samples); whatever lies between two frames is silence, so the
file keeps the wall clock of the events (``ts``) all along:

- a gap in ``seq`` (frames lost on the way, ticks the mixer skipped) is that many frames
  of silence — but never so much that the frame would land after its capture time (a
  publisher whose count leapt is not believed over the clock);
- a capture time more than :data:`MAX_JUMP_S` past where the frame would go (the model
  silent between two replies, a client whose network dropped out) is silence up to it;
- a frame whose ``seq`` is not after the last one is a repeat or out of order and is
  dropped (``backwards``) — unless its capture time is at or past the end: then its
  publisher was replaced (a restarted mixer, a client rejoined through another edge)
  and counts afresh, and the frame goes by its capture time;
- a frame that would go :data:`MAX_LATE_S` or more after its capture time is dropped
  (``late``): the file ran ahead of the clock, and this brings it back. Mixed frames
  carry their clients' capture times, up to the mixer's jitter allowance (150 ms) behind
  its tick: well inside this.

Capture times of microphones are stamped by the edge as the frames arrive, which is late
for frames that waited: a process that stalled (or a connection coming up) then reads
them in a burst, stamped alike though captured one after the other, and may take seconds
to catch up if it is loaded. Those frames are not after a pause: they fill the stall.
So a frame's place is decided only once :data:`LOOKAHEAD_S` of audio after it has
arrived: the silence before it is the least any frame in that span says (arrival jitter
only ever delays a frame, never advances it), and it grows only by jumps beyond
:data:`MAX_JUMP_S`, so small jitter is never corrected and the file stays within that
of the clock. Sample 0's time is found the same way: the earliest the first frames agree
on. (So the last :data:`LOOKAHEAD_S` of a stream are in memory only, until more audio
or its end places them.) Positions do not depend on the file: a frame that cannot be
written leaves silence, and the next one is still in its place.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from proto.audio import FRAME_SAMPLES, SAMPLE_RATE

MAX_JUMP_S = 0.06
"Frames this much or less behind their capture time follow on; further, silence first."
LOOKAHEAD_S = 3.0
"Audio that must have arrived after a frame before its place is decided."
MAX_LATE_S = 0.5
"A frame whose place in the file is this much after its capture time (or more) is dropped."
BACKWARDS = "backwards"
LATE = "late"


@dataclass(frozen=True)
class Placed:
    position: int
    "Sample index of the frame's first sample in the file."
    pcm: bytes


@dataclass
class _Pending:
    in_order: int
    "Its place if no capture time were believed: after the previous one and any seq gap."
    ahead: int
    "How far its capture time puts it past ``in_order`` (samples): the silence it asks for."
    pcm: bytes


class Timeline:
    """One stream's positions: frames taken, placed once what followed them is known."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, frame_samples: int = FRAME_SAMPLES
                 ) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self.started_ns: int | None = None
        "Capture time of sample 0 (known once the first frames are placed)."
        self.last_seq: int | None = None
        self._origin_ns = 0
        "Capture time positions are counted from (sample 0's, once it is known)."
        self._end = 0
        "Where the next frame goes, in order (samples, without ``_silence``)."
        self._silence = 0
        "Silence placed for capture-time jumps so far (samples)."
        self._pending: collections.deque[_Pending] = collections.deque()
        self._least: collections.deque[_Pending] = collections.deque()
        "Pending frames whose ``ahead`` is the least of those after them (the front: of all)."
        self._max_jump = round(MAX_JUMP_S * sample_rate)
        self._max_late = round(MAX_LATE_S * sample_rate)
        self._lookahead = round(LOOKAHEAD_S * sample_rate)

    @property
    def end(self) -> int:
        """Where the next frame would go, as far as is known now (samples)."""
        return self._end + self._silence

    def resume(self, started_ns: int, samples: int) -> None:
        """Carry on a file that already holds ``samples`` from ``started_ns``: the next
        frame goes by its capture time."""
        self.started_ns = self._origin_ns = started_ns
        self._end, self._silence, self.last_seq = samples, 0, None

    def offer(self, seq: int, capture_ns: int, pcm: bytes) -> tuple[str | None, list[Placed]]:
        """Take a frame: why it is dropped (or None), and the frames now placed, in order."""
        if self.last_seq is None and self.started_ns is None:  # the very first frame
            self._origin_ns = capture_ns
        at = self.position_of(capture_ns)
        "Where its capture time puts it in the file."
        due = at - self._silence
        "...and in the order frames follow on (what ``_end`` counts)."
        known = self.started_ns is not None
        if self.last_seq is None or seq <= self.last_seq:
            if self.last_seq is not None and due < self._end:
                return BACKWARDS, []
            in_order = self._end  # a publisher counting afresh: no seq gap to believe
        else:
            if known and self._end - due >= self._max_late:
                self.last_seq = seq
                return LATE, []
            missing = (seq - self.last_seq - 1) * self.frame_samples
            in_order = self._end + max(0, min(missing, due + self._max_jump - self._end))
        self.last_seq = seq
        self._end = in_order + len(pcm) // 2
        self._push(_Pending(in_order, at - in_order, pcm))
        return None, self._place(final=False)

    def flush(self) -> list[Placed]:
        """Place every frame taken (the stream ended)."""
        return self._place(final=True)

    def position_of(self, capture_ns: int) -> int:
        """The sample index captured at ``capture_ns``."""
        return round((capture_ns - self._origin_ns) * self.sample_rate / 1_000_000_000)

    def _push(self, frame: _Pending) -> None:
        self._pending.append(frame)
        while self._least and self._least[-1].ahead >= frame.ahead:
            self._least.pop()
        self._least.append(frame)

    def _place(self, final: bool) -> list[Placed]:
        pending = self._pending
        if not pending:
            return []
        if not final and pending[-1].in_order - pending[0].in_order < self._lookahead:
            return []
        if self.started_ns is None:
            self._anchor()
        placed = []
        while pending and (final or pending[-1].in_order - pending[0].in_order
                           >= self._lookahead):
            frame = pending.popleft()
            least = self._least[0].ahead
            if self._least[0] is frame:
                self._least.popleft()
            if least - self._silence > self._max_jump:
                self._silence = least
            placed.append(Placed(frame.in_order + self._silence, frame.pcm))
        return placed

    def _anchor(self) -> None:
        """Sample 0 at the earliest time the first frames agree on: none of them was
        captured before its place."""
        least = self._least[0].ahead
        for frame in self._pending:
            frame.ahead -= least
        self._origin_ns += round(least * 1_000_000_000 / self.sample_rate)
        self.started_ns = self._origin_ns
