"""A drift-free 20 ms tick on the event loop.

Tick ``n`` is due at ``start + n * period`` (``loop.call_at``), so scheduling error never
accumulates. A tick that runs a little late is followed at once by the ones it delayed
(a short catch-up burst); a loop that stalled for ``SKIP_AFTER_TICKS`` whole periods or
more skips the missed ticks instead of bursting them out, and says how many it skipped.

:class:`SharedClock` puts any number of listeners (the mixer's sessions) on one
FrameClock: one timer wakeup per period for all of them instead of one each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from proto.audio import FRAME_MS

from .metrics import TICK_LATENESS, TICKS_SKIPPED

logger = logging.getLogger(__name__)

PERIOD_S = FRAME_MS / 1000
SKIP_AFTER_TICKS = 3
"A tick this many whole periods late (or more) skips the missed ticks."


def next_tick(start: float, tick: int, now: float, period: float = PERIOD_S) -> tuple[int, int]:
    """The tick to run at ``now`` when ``tick`` is the next one due: ``(tick, skipped)``."""
    behind = int((now - (start + tick * period)) // period)
    if behind >= SKIP_AFTER_TICKS:
        return tick + behind, behind
    return tick, 0


class FrameClock:
    """Calls ``on_tick(skipped)`` once per period until stopped."""

    def __init__(self, on_tick: Callable[[int], None], name: str,
                 period: float = PERIOD_S) -> None:
        self.on_tick = on_tick
        self.name = name
        self.period = period
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._tick = 0

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Start ticking now (the first tick runs on the loop's next iteration)."""
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._tick = 0
        self._handle = self._loop.call_at(self._start, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._tick, skipped = next_tick(self._start, self._tick, now, self.period)
        TICK_LATENESS.observe(max(0.0, now - (self._start + self._tick * self.period)))
        if skipped:
            TICKS_SKIPPED.inc(skipped)
            logger.warning("FrameClock(%s): loop %.0f ms late, skipped %d ticks", self.name,
                           skipped * self.period * 1000, skipped)
        try:
            self.on_tick(skipped)
        except Exception:
            logger.exception("FrameClock(%s): tick %d failed", self.name, self._tick)
        if self._handle is not None:  # on_tick may have stopped the clock
            self._tick += 1
            self._handle = self._loop.call_at(self._start + self._tick * self.period, self._fire)


class SharedClock:
    """One :class:`FrameClock` for many listeners, running while any is added.

    Listeners tick in the order they were added; one that raises is logged and the
    others still tick.
    """

    def __init__(self, name: str, period: float = PERIOD_S) -> None:
        self.name = name
        self._listeners: dict[object, Callable[[int], None]] = {}
        self._clock = FrameClock(self._fire, name, period)

    @property
    def running(self) -> bool:
        return self._clock.running

    def __len__(self) -> int:
        return len(self._listeners)

    def add(self, key: object, on_tick: Callable[[int], None]) -> None:
        """Call ``on_tick(skipped)`` from the next tick on (starting the clock if idle)."""
        self._listeners[key] = on_tick
        self._clock.start()

    def remove(self, key: object) -> None:
        """Stop ticking ``key`` (idempotent); the clock stops with its last listener."""
        self._listeners.pop(key, None)
        if not self._listeners:
            self._clock.stop()

    def _fire(self, skipped: int) -> None:
        for key, on_tick in list(self._listeners.items()):
            try:
                on_tick(skipped)
            except Exception:
                logger.exception("SharedClock(%s): %r failed to tick", self.name, key)
