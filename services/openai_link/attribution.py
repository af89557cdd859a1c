"""Who spoke in a user turn: the clients whose voice activity falls within it.

The mixer publishes ``voice.activity`` for each client as it starts and stops speaking,
stamped with capture times. The Realtime API's turn detection hears only the mix, and
the link learns its turn boundaries (``speech_started`` … ``committed``) a little late,
so a turn is widened by ``margin_s`` on both sides before the clients' activity is
intersected with it; a client is named when at least ``min_overlap_s`` of its speech
falls inside. Names are joined with ``+`` in join order. When nobody was heard, the turn
is the sole speaking client's if there is just one, else ``user``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MARGIN_S = 0.3
MIN_OVERLAP_S = 0.15
KEEP_S = 600.0
"Activity older than this (before the newest) is forgotten."
MAX_INTERVALS = 256
"Intervals kept per client at most."
FALLBACK = "user"


@dataclass
class _Client:
    name: str
    role: str
    present: bool = True
    intervals: list[tuple[float, float]] = field(default_factory=list)
    "Closed stretches of speech (start, end), oldest first."
    open_since: float | None = None
    "Start of the stretch in progress, if the client is speaking."


class Attribution:
    """The session's clients, in join order, and when each of them spoke."""

    def __init__(self, margin_s: float = MARGIN_S, min_overlap_s: float = MIN_OVERLAP_S) -> None:
        self.margin_s = margin_s
        self.min_overlap_s = min_overlap_s
        self._clients: dict[str, _Client] = {}

    def add_client(self, client_id: str, name: str, role: str = "speaker") -> None:
        client = self._clients.get(client_id)
        if client is None:
            self._clients[client_id] = _Client(name or client_id[:8], role)
        else:
            client.name, client.role, client.present = name or client.name, role, True

    def name_of(self, client_id: str) -> str:
        """The client's name (its id's first 8 characters if it never joined here)."""
        client = self._clients.get(client_id)
        return client.name if client is not None else client_id[:8]

    def present(self, client_id: str, present: bool) -> None:
        """The client's connection came (back) or went (its past speech still counts)."""
        client = self._clients.get(client_id)
        if client is not None:
            client.present = present

    def anyone_present(self) -> bool:
        """Whether any client (listeners too) is connected: someone to carry on for."""
        return any(client.present for client in self._clients.values())

    def observe(self, client_id: str, active: bool, at: float) -> None:
        """A ``voice.activity`` transition (``at``: capture time, unix seconds)."""
        client = self._clients.get(client_id)
        if client is None:
            return
        if active:
            if client.open_since is None:
                client.open_since = at
            return
        if client.open_since is not None:
            client.intervals.append((client.open_since, max(at, client.open_since)))
            client.open_since = None
            self._forget(client, at - KEEP_S)

    def speaker(self, start: float, end: float) -> str:
        """The name(s) for a user turn between two wall times (unix seconds)."""
        low, high = start - self.margin_s, end + self.margin_s
        names = [c.name for c in self._clients.values()
                 if self._overlap(c, low, high) >= self.min_overlap_s]
        if names:
            return "+".join(dict.fromkeys(names))
        speakers = [c.name for c in self._clients.values() if c.role == "speaker" and c.present]
        return speakers[0] if len(speakers) == 1 else FALLBACK

    @staticmethod
    def _overlap(client: _Client, low: float, high: float) -> float:
        total = 0.0
        stretches = list(client.intervals)
        if client.open_since is not None:
            stretches.append((client.open_since, math.inf))
        for begin, finish in stretches:
            total += max(0.0, min(finish, high) - max(begin, low))
        return total

    @staticmethod
    def _forget(client: _Client, before: float) -> None:
        intervals = client.intervals
        drop = 0
        while drop < len(intervals) and intervals[drop][1] < before:
            drop += 1
        drop = max(drop, len(intervals) - MAX_INTERVALS)
        if drop:
            del intervals[:drop]
