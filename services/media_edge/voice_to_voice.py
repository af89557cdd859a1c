"""Voice to voice, as each client experiences it: user speech end → the AI's reply heard.

The mixer publishes ``voice.activity`` for every client of a session (``at`` is the
capture time, unix seconds, of the end of the last speech frame). The speaker may be on
another edge, so an edge follows every ``voice.activity`` of the sessions it carries: a
speech end arms the session's :class:`ReplyClock`, and a later speech start disarms it
until the next end. While armed, the first *audible* model frame handed to a client's
encoder (``services.runtime.media.audible``: the reply, not the silence the link may send before it) gives
that client's voice-to-voice latency, once per client per speech end.

A turn that never gets a reply must not be measured against a later one: the clock
disarms itself after ``timeout_s`` without a reply frame being heard (counted from the
arming, then from the latest client that heard the reply).
"""

from __future__ import annotations

import time
from collections.abc import Callable

REPLY_TIMEOUT_S = 10.0
"Armed this long without any client hearing the reply: the turn got none."


class ReplyClock:
    """One session's wait for the AI's reply after the users stopped speaking."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 timeout_s: float = REPLY_TIMEOUT_S) -> None:
        if timeout_s <= 0:
            raise ValueError(f"'timeout_s' must be > 0 (got {timeout_s})")
        self.timeout_s = timeout_s
        self.speech_ended_at: float | None = None
        "Capture time (unix seconds) of the speech end being answered; None: not armed."
        self._clock = clock
        self._last_heard = 0.0
        self._heard: set[str] = set()

    def voice_activity(self, active: bool, at: float) -> bool:
        """A client of the session started (``active``) or stopped speaking at ``at``;
        True when this armed the clock. A stop without a time (``at`` = 0) is ignored."""
        if active:
            self.speech_ended_at = None
            return False
        if at <= 0:
            return False
        self.speech_ended_at = at
        self._last_heard = self._clock()
        self._heard = set()
        return True

    @property
    def armed(self) -> bool:
        if self.speech_ended_at is None:
            return False
        if self._clock() - self._last_heard > self.timeout_s:
            self.speech_ended_at = None  # a turn that never got a reply
            return False
        return True

    def waiting(self, client_id: str) -> bool:
        """Whether ``client_id``'s first reply frame is still awaited."""
        return self.armed and client_id not in self._heard

    def heard(self, client_id: str) -> float | None:
        """``client_id`` is handed the reply's first audible frame now: its voice-to-voice
        latency in seconds (never negative, should clocks of two machines disagree), or
        None when not waiting for it."""
        if not self.waiting(client_id):
            return None
        assert self.speech_ended_at is not None
        now = self._clock()
        self._heard.add(client_id)
        self._last_heard = now
        return max(0.0, now - self.speech_ended_at)
