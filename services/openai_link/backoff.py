"""When to try again after the Realtime connection dropped: exponential backoff, full jitter.

Every conversation whose call drops at the same moment (the API restarted, the network
blinked) would otherwise retry in lockstep. So the n-th attempt of an outage waits a
uniformly random time between 0 and ``min(cap, base * 2**n)`` ("full jitter"): the first
retry comes almost at once, later ones spread out up to ``cap``. An outage is given up
after ``give_up_after_s`` (or ``max_attempts``), whichever comes first; each attempt is
bounded on its own by the link's connect timeout.

:class:`Outage` is pure: it is given its random source and clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

BASE_S = 0.25
"The first attempt's ceiling."
CAP_S = 8.0
"No wait is longer than this."
GIVE_UP_AFTER_S = 60.0
"An outage longer than this is reported (realtime_unavailable) and no longer retried."
MAX_ATTEMPTS = 20
"Attempts per outage at most (the time limit usually ends it first)."


@dataclass(frozen=True)
class Backoff:
    base_s: float = BASE_S
    cap_s: float = CAP_S
    give_up_after_s: float = GIVE_UP_AFTER_S
    max_attempts: int = MAX_ATTEMPTS

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"'base_s' must be > 0 and <= 'cap_s' (got {self.base_s}, "
                             f"cap {self.cap_s})")
        if self.give_up_after_s <= 0:
            raise ValueError(f"'give_up_after_s' must be > 0 (got {self.give_up_after_s})")
        if self.max_attempts < 1:
            raise ValueError(f"'max_attempts' must be >= 1 (got {self.max_attempts})")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before attempt ``attempt`` (0-based) of an outage."""
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt, 62))

    def outage(self, rng: Callable[[], float] = random.random,
               clock: Callable[[], float] = time.monotonic) -> Outage:
        """A new outage, starting now."""
        return Outage(self, rng, clock)


class Outage:
    """One outage's attempts: how long to wait before each, and when to give up."""

    def __init__(self, backoff: Backoff, rng: Callable[[], float],
                 clock: Callable[[], float]) -> None:
        self.backoff = backoff
        self._rng = rng
        self._clock = clock
        self.started = clock()
        self.attempts = 0
        "Delays handed out so far (attempts made or about to be)."

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self.started

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt; None when the outage is given up."""
        remaining = self.backoff.give_up_after_s - self.elapsed_s
        if self.attempts >= self.backoff.max_attempts or remaining <= 0:
            return None
        jitter = min(1.0, max(0.0, self._rng()))
        delay = jitter * self.backoff.ceiling(self.attempts)
        self.attempts += 1
        return min(delay, remaining)
