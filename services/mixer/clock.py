"""A drift-free 20 ms tick on the event loop, which sleeps through ticks nobody needs.

Tick ``n`` is due at ``start + n * period`` (``loop.call_at``), so scheduling error never
accumulates. A tick that runs a little late is followed at once by the ones it delayed
(a short catch-up burst); a loop that stalled for ``SKIP_AFTER_TICKS`` whole periods or
more skips the missed ticks instead of bursting them out, and says how many it skipped.

:class:`SharedClock` puts any number of listeners (the mixer's sessions) on one
FrameClock: one timer wakeup per period for all of them instead of one each. A listener
says, as it ticks, how long it needs no tick (a lone client's frames are mixed as they
come, so its session only needs a tick if the next one is late; a quiet session needs none
until something arrives), and the clock's next tick is the first one on its grid that a
listener needs: the ticks before it are not run at all (``voxrelay_mixer_ticks_slept_total``),
which spares the process a wake-up each. A listener that needs ticks again sooner
(:meth:`SharedClock.wake`) brings the next one back to the grid's next slot.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from proto.audio import FRAME_MS

from .metrics import TICK_LATENESS, TICKS_SKIPPED, TICKS_SLEPT

logger = logging.getLogger(__name__)

PERIOD_S = FRAME_MS / 1000
SKIP_AFTER_TICKS = 3
"A tick this many whole periods late (or more) skips the missed ticks."
_EPSILON = 1e-6
"Float slack when a time is turned into a tick of the grid."

OnTick = Callable[[int], float | None]
"""Called with the ticks skipped just before (a late loop); returns the seconds it needs no
tick (None or 0: it needs the next one; ``math.inf``: none until it wakes the clock)."""


def next_tick(start: float, tick: int, now: float, period: float = PERIOD_S) -> tuple[int, int]:
    """The tick to run at ``now`` when ``tick`` is the next one due: ``(tick, skipped)``."""
    behind = int((now - (start + tick * period)) // period)
    if behind >= SKIP_AFTER_TICKS:
        return tick + behind, behind
    return tick, 0


class FrameClock:
    """Calls ``on_tick(skipped)`` once per period until stopped, or less often: it returns
    a ``loop.time()`` before which it needs no tick (None: it needs the next one;
    ``math.inf``: none until :meth:`retime`)."""

    def __init__(self, on_tick: Callable[[int], float | None], name: str,
                 period: float = PERIOD_S) -> None:
        self.on_tick = on_tick
        self.name = name
        self.period = period
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._started = False
        self._ticking = False
        self._asleep = False
        "No tick scheduled: none is needed until :meth:`retime`."
        self._start = 0.0
        self._tick = 0
        "The tick running now, else the next one scheduled."
        self._last = -1
        "The last tick run."

    @property
    def running(self) -> bool:
        """Started and not stopped (asleep included)."""
        return self._started

    @property
    def sleeping(self) -> bool:
        return self._started and self._asleep

    @property
    def tick(self) -> int:
        """The index of the tick running now, else of the next one scheduled."""
        return self._tick

    def start(self) -> None:
        """Start ticking now (the first tick runs on the loop's next iteration)."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._started = True
        self._asleep = False
        self._start = self._loop.time()
        self._last = -1
        self._tick = 0
        self._handle = self._loop.call_at(self._start, self._fire)

    def stop(self) -> None:
        self._started = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def time(self) -> float:
        """The loop's time, which :meth:`retime` takes."""
        assert self._loop is not None
        return self._loop.time()

    def next_slot(self) -> int:
        """The index of the next tick: the one scheduled, or, asleep, the grid's next
        slot from now (a tick overdue is the next one, however late)."""
        now = self._slot(self.time())
        return now if self._handle is None else min(now, self._tick)

    def retime(self, until: float | None) -> int:
        """Make the next tick the first of the grid due at or after ``until`` (see the
        class) and from now, unless one is overdue; returns its index. During a tick
        this does nothing: the tick's own answer decides."""
        if self._started and not self._ticking:
            self._plan(until, self.next_slot())
        return self._tick

    def _slot(self, at: float) -> int:
        """The first tick of the grid due at or after ``at``."""
        return max(0, math.ceil((at - self._start) / self.period - _EPSILON))

    def _plan(self, until: float | None, first: int) -> None:
        """Schedule the next tick: the first of the grid needed (``until``), and not
        before ``first`` (a tick already run never again)."""
        assert self._loop is not None
        if until == math.inf:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            self._asleep = True
            self._tick = self._last + 1
            return
        first = max(first, self._last + 1)
        if until is not None and until > -math.inf:
            first = max(first, self._slot(until))
        if self._handle is not None:
            if first == self._tick:
                return
            self._handle.cancel()
        self._asleep = False
        self._tick = first
        self._handle = self._loop.call_at(self._start + first * self.period, self._fire)

    def _fire(self) -> None:
        assert self._loop is not None
        self._handle = None
        now = self._loop.time()
        if self._tick > self._last + 1:
            TICKS_SLEPT.inc(self._tick - self._last - 1)
        self._tick, skipped = next_tick(self._start, self._tick, now, self.period)
        TICK_LATENESS.observe(max(0.0, now - (self._start + self._tick * self.period)))
        if skipped:
            TICKS_SKIPPED.inc(skipped)
            logger.warning("FrameClock(%s): loop %.0f ms late, skipped %d ticks", self.name,
                           skipped * self.period * 1000, skipped)
        until = None
        self._ticking = True
        try:
            until = self.on_tick(skipped)
        except Exception:
            logger.exception("FrameClock(%s): tick %d failed", self.name, self._tick)
        finally:
            self._ticking = False
        if self._started:  # on_tick may have stopped the clock
            self._last = self._tick
            self._plan(until, self._last + 1)  # a late tick's successors follow at once


class SharedClock:
    """One :class:`FrameClock` for many listeners, running while any is added.

    Listeners tick in the order they were added; one that raises is logged and the
    others still tick (it gets the next tick too). Each listener's answer (:data:`OnTick`)
    is kept as the time it next needs a tick, and the clock ticks at the earliest of them.
    """

    def __init__(self, name: str, period: float = PERIOD_S) -> None:
        self.name = name
        self._listeners: dict[object, OnTick] = {}
        self._due: dict[object, float] = {}
        "Per listener, the loop time from which it needs a tick (-inf: the next one)."
        self._clock = FrameClock(self._fire, name, period)

    @property
    def running(self) -> bool:
        return self._clock.running

    @property
    def sleeping(self) -> bool:
        """No tick is scheduled: every listener said it needs none until it wakes."""
        return self._clock.sleeping

    @property
    def tick(self) -> int:
        """The index of the tick running now (in a listener), else of the next one."""
        return self._clock.tick

    def __len__(self) -> int:
        return len(self._listeners)

    def add(self, key: object, on_tick: OnTick) -> None:
        """Call ``on_tick(skipped)`` from the next tick on (starting the clock if idle)."""
        self._listeners[key] = on_tick
        self._due[key] = -math.inf
        if self._clock.running:
            self._clock.retime(None)
        else:
            self._clock.start()

    def remove(self, key: object) -> None:
        """Stop ticking ``key`` (idempotent); the clock stops with its last listener."""
        self._listeners.pop(key, None)
        self._due.pop(key, None)
        if not self._listeners:
            self._clock.stop()

    def next_slot(self) -> int:
        """The index of the next tick, scheduled or (asleep) the grid's next slot from now."""
        return self._clock.next_slot()

    def wake(self, key: object) -> int:
        """``key`` needs the next tick of the grid (from now); returns that tick's index."""
        self._due[key] = -math.inf
        return self._clock.retime(None)

    def postpone(self, key: object, seconds: float) -> None:
        """``key`` needs no tick for ``seconds`` from now (whatever it said before)."""
        if key not in self._due or not self._clock.running:
            return
        before = self._due[key]
        self._due[key] = self._clock.time() + seconds
        if before <= (earliest := min(self._due.values())):  # it held the next tick: it may move
            self._clock.retime(earliest)

    def _fire(self, skipped: int) -> float:
        now = self._clock.time()
        for key, on_tick in list(self._listeners.items()):
            try:
                rest = on_tick(skipped)
            except Exception:
                logger.exception("SharedClock(%s): %r failed to tick", self.name, key)
                rest = None
            if key in self._due:  # not removed while ticking
                self._due[key] = now + rest if rest else -math.inf
        return min(self._due.values(), default=math.inf)
