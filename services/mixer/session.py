"""One session's uplink mix: its clients' jitter buffers and its own 20 ms clock.

Every tick takes at most one frame per client, sums them (:func:`.mix.mix`) and hands
the result on, whether or not anyone spoke: a stalled client contributes silence, a
session without clients publishes silence, and late frames never hold the mix back.
The mix frame's ``capture_ns`` is the newest capture time among the frames it contains
(or the wall clock for pure silence); its ``seq`` advances once per tick, skipped ticks
included, so a consumer sees a skip as a gap.

:meth:`MixerSession.tick` does one tick at a time given the wall clock, so tests drive
it without real time; :meth:`MixerSession.start` runs it on a :class:`.clock.FrameClock`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from proto import topics
from proto.ids import check_id

from .clock import FrameClock
from .jitter import DropReason, Frame, JitterBuffer, JitterSettings
from .metrics import DROPPED
from .mix import mix

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MixFrame:
    seq: int
    capture_ns: int
    pcm: bytes
    speakers: int
    "How many clients' frames it contains."


class MixerSession:
    def __init__(self, session_id: str, settings: JitterSettings | None = None,
                 wall_clock: Callable[[], int] = time.time_ns) -> None:
        self.session_id = check_id(session_id, "session_id")
        self.topic = topics.aud_mix(session_id)
        self.settings = settings or JitterSettings()
        self.wall_clock = wall_clock
        self.frames = 0
        self.dropped: collections.Counter[DropReason] = collections.Counter()
        self._clients: dict[str, JitterBuffer] = {}
        self._seq = 0
        self._clock: FrameClock | None = None
        self._publish: Callable[[MixFrame], None] | None = None
        self._ticking = asyncio.Event()

    def __repr__(self) -> str:
        return f"MixerSession({self.session_id})"

    @property
    def clients(self) -> frozenset[str]:
        return frozenset(self._clients)

    def add_client(self, client_id: str) -> bool:
        """Start mixing ``client_id``; False if it was already mixed."""
        if client_id in self._clients:
            return False
        self._clients[client_id] = JitterBuffer(self.settings)
        logger.info("MixerSession(%s): client %s added (%d clients)", self.session_id,
                    client_id, len(self._clients), extra={"session_id": self.session_id})
        return True

    def remove_client(self, client_id: str) -> bool:
        """Stop mixing ``client_id``; False if it was not mixed."""
        if self._clients.pop(client_id, None) is None:
            return False
        logger.info("MixerSession(%s): client %s removed (%d clients)", self.session_id,
                    client_id, len(self._clients), extra={"session_id": self.session_id})
        return True

    def receive(self, client_id: str, seq: int, capture_ns: int, pcm: bytes) -> None:
        """A client's frame from the bus (already checked for format and size)."""
        buffer = self._clients.get(client_id)
        if buffer is None:
            self._count([DropReason.UNKNOWN])
            return
        dropped = buffer.push(Frame(seq, capture_ns, pcm))
        if dropped:
            self._count(dropped)

    def tick(self, now_ns: int) -> MixFrame:
        """Mix this tick's frame; ``now_ns`` (wall clock) stamps a frame of pure silence."""
        parts: list[bytes] = []
        newest = 0
        for buffer in self._clients.values():
            shed = buffer.shed
            frame = buffer.pop()
            if buffer.shed != shed:
                self._count([DropReason.STALE])
            if frame is not None:
                parts.append(frame.pcm)
                newest = max(newest, frame.capture_ns)
        result = MixFrame(self._seq, newest if parts else now_ns, mix(parts), len(parts))
        self._seq += 1
        self.frames += 1
        return result

    def skip(self, ticks: int) -> None:
        """The clock skipped ``ticks``: leave a gap in ``seq``, drop what is now too late."""
        self._seq += ticks
        for buffer in self._clients.values():
            dropped = buffer.trim()
            if dropped:
                self._count(dropped)

    def start(self, publish: Callable[[MixFrame], None]) -> None:
        """Tick in real time, handing each frame to ``publish``; see :meth:`wait_ticking`."""
        if self._clock is not None:
            return
        self._publish = publish
        self._clock = FrameClock(self._on_clock, self.session_id)
        self._clock.start()

    async def wait_ticking(self) -> None:
        """Return once the first frame was published (or the session stopped)."""
        await self._ticking.wait()

    def stop(self, reason: str = "") -> None:
        """Stop the clock (idempotent)."""
        self._ticking.set()
        if self._clock is not None:
            self._clock.stop()
            self._clock = None
            logger.info("MixerSession(%s): stopped (%s) after %d frames; dropped %s",
                        self.session_id, reason or "no reason given", self.frames,
                        dict(self.dropped) or "none", extra={"session_id": self.session_id})

    def _on_clock(self, skipped: int) -> None:
        if skipped:
            self.skip(skipped)
        assert self._publish is not None
        self._publish(self.tick(self.wall_clock()))
        self._ticking.set()

    def _count(self, reasons: list[DropReason]) -> None:
        for reason in reasons:
            self.dropped[reason] += 1
            DROPPED[reason].inc()
