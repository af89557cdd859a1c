"""Per producer stream, how far the recorder has every event: the gap bookkeeping.

A stream is ``(producer, epoch)``: an instance's events from one start of its publisher,
``seq`` 1, 2, 3 … (see ``proto/events.py``). For the current stream of each producer
:class:`Gaps` keeps ``contiguous``, the highest seq up to which every event was received
(or is known lost for good), and the seqs received above it. A seq above
``contiguous + 1`` means a gap, to be filled from the producer's outbox.

Rules for streams:

- An event with a newer epoch than the producer's current stream starts a new stream
  (the producer restarted under the same instance id); whatever the old stream still
  missed is lost with the old process's outbox and is counted so.
- An event with an older epoch is a late one from a stream already replaced: stored,
  not tracked.
- Epoch 0 (a producer that does not stamp one) is never tracked: no fills for it.
- A stream first seen at seq 1 starts complete; first seen anywhere else, its
  ``contiguous`` is unknown until loaded from the store (:meth:`Gaps.load`).

Pure bookkeeping (no I/O), so it is unit-tested on its own; the recorder's filler
(``fill.py``) acts on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class Stream:
    producer: str
    epoch: int
    contiguous: int | None = None
    "Every seq up to this one is received or lost for good; None until known."
    above: set[int] = field(default_factory=set)
    "Seqs received above ``contiguous`` (or any, while it is unknown)."

    @property
    def highest(self) -> int:
        return max(self.above, default=self.contiguous or 0)

    @property
    def complete(self) -> bool:
        """Known, and nothing received beyond a gap."""
        return self.contiguous is not None and not self.above

    def missing(self) -> int:
        """Seqs between ``contiguous`` and the highest received that never arrived."""
        return self.highest - (self.contiguous or 0) - len(self.above)

    def receive(self, seq: int) -> bool:
        """Note ``seq``; False if it was received already."""
        if (self.contiguous is not None and seq <= self.contiguous) or seq in self.above:
            return False
        self.above.add(seq)
        self._absorb()
        return True

    def load(self, stored: int) -> None:
        """The store has every event up to ``stored`` (or knows them lost)."""
        if self.contiguous is None or stored > self.contiguous:
            self.contiguous = stored
        self.above = {seq for seq in self.above if seq > stored}
        self._absorb()

    def advance(self, contiguous: int) -> int:
        """Everything up to ``contiguous`` is stored or gone; returns how many of the seqs
        skipped so were never received (lost)."""
        current = self.contiguous or 0
        if contiguous <= current:
            return 0
        received = sum(1 for seq in self.above if seq <= contiguous)
        self.above = {seq for seq in self.above if seq > contiguous}
        self.contiguous = contiguous
        self._absorb()
        return contiguous - current - received

    def _absorb(self) -> None:
        if self.contiguous is None:
            return
        while self.contiguous + 1 in self.above:
            self.contiguous += 1
            self.above.discard(self.contiguous)


@dataclass(frozen=True)
class Observed:
    new: bool
    "Not received before (to be counted as stored)."
    stream: Stream | None
    "The producer's current stream, if the event belongs to it."
    ended: Stream | None = None
    "A stream this event replaced (its producer restarted)."


class Gaps:
    """The current stream of every producer heard."""

    def __init__(self) -> None:
        self.streams: dict[str, Stream] = {}

    def observe(self, producer: str, epoch: int, seq: int) -> Observed:
        """An event received (from the bus or a fill)."""
        if epoch == 0 or seq < 1:
            return Observed(True, None)
        stream = self.streams.get(producer)
        ended = None
        if stream is None or epoch > stream.epoch:
            ended = stream
            stream = self.streams[producer] = Stream(producer, epoch,
                                                     0 if seq == 1 else None)
        elif epoch < stream.epoch:
            return Observed(True, None)
        return Observed(stream.receive(seq), stream, ended)

    def begin(self, producer: str, epoch: int) -> tuple[Stream, Stream | None]:
        """The stream ``(producer, epoch)`` as current (a fill learned of it); returns it
        and the stream it replaced, if any. An older epoch is not tracked (returns a
        detached stream)."""
        stream = self.streams.get(producer)
        if stream is not None and stream.epoch == epoch:
            return stream, None
        if stream is not None and epoch < stream.epoch:
            return Stream(producer, epoch), None
        self.streams[producer] = Stream(producer, epoch)
        return self.streams[producer], stream

    def needing_fill(self) -> list[str]:
        """Producers whose current stream is unknown or has a gap."""
        return [producer for producer, stream in self.streams.items() if not stream.complete]
