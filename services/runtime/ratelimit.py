"""A token bucket: how much a client may send, sustained and at once.

Used on every path a browser sends on (the edge's ``events`` DataChannel, signaling's
WebSocket fallback). A message that finds the bucket empty is dropped by the caller and
counted, before anything else is done with it, so a flood costs little more than its
reception. The clock is injectable; time never runs backwards for the bucket.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CLIENT_MESSAGES_PER_S = 50.0
"A client's control messages (pings, pongs, mutes): sustained rate allowed..."
CLIENT_MESSAGE_BURST = 100.0
"...and how many may come at once (a browser catching up after a stall)."


class TokenBucket:
    """``rate`` units per second sustained, up to ``burst`` at once; full at the start."""

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"'rate' must be > 0 (got {rate})")
        if burst < 1:
            raise ValueError(f"'burst' must be >= 1 (got {burst})")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self, cost: float = 1.0) -> bool:
        """Spend ``cost`` units if the bucket holds them; False (nothing spent) if not."""
        now = self._clock()
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
        if self._tokens < cost:
            return False
        self._tokens -= cost
        return True
