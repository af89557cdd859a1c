"""Heartbeats: each service says it is alive, from its event loop, once a second.

Beating from the loop (not a thread) means a stalled loop stops the beat, so a hung
service is seen as dead. The beat carries the loop's lag and the service's endpoints;
:class:`Registry` turns the beats it hears into the list of live instances.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from proto.heartbeat import Heartbeat

from .bus import EventPublisher

INTERVAL_S = 1.0
DEAD_AFTER_S = 3.5
FRESH_S = 1.8
"A beat this recent means the instance missed none (they come every INTERVAL_S)."


@dataclass
class HeartbeatSender:
    publisher: EventPublisher
    service: str
    instance: str
    rpc: str = ""
    audio: str = ""
    load: Callable[[], int] = lambda: 0
    metrics: str = ""
    started_at: float = field(default_factory=time.time)
    on_beat: Callable[[], None] = lambda: None
    "Called before each beat (the service's periodic upkeep)."

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        lag = 0.0
        while True:
            self.on_beat()
            self.publisher.beat(Heartbeat(
                service=self.service, instance=self.instance, pid=os.getpid(), rpc=self.rpc,
                audio=self.audio, started_at=self.started_at, ts=time.time(), load=self.load(),
                loop_lag_ms=lag * 1000, metrics=self.metrics,
            ))
            due = loop.time() + INTERVAL_S
            await asyncio.sleep(INTERVAL_S)
            lag = max(0.0, loop.time() - due)


class Registry:
    """Live service instances, from their heartbeats."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[float, Heartbeat]] = {}

    def observe(self, beat: Heartbeat) -> None:
        self._seen[beat.instance] = (self._clock(), beat)

    def alive(self, service: str | None = None) -> list[Heartbeat]:
        now = self._clock()
        return [beat for seen, beat in self._seen.values()
                if now - seen < DEAD_AFTER_S and service in (None, beat.service)]

    def get(self, instance: str) -> Heartbeat | None:
        entry = self._seen.get(instance)
        if entry is None or self._clock() - entry[0] >= DEAD_AFTER_S:
            return None
        return entry[1]

    def fresh(self, instance: str, within_s: float = FRESH_S) -> Heartbeat | None:
        """The instance's beat if it beat within ``within_s`` (it missed none), else None.

        ``get`` still answers for a process that died up to ``DEAD_AFTER_S`` ago; a caller
        about to hand it new work (a reconnecting client) wants one that is surely alive.
        """
        entry = self._seen.get(instance)
        if entry is None or self._clock() - entry[0] >= within_s:
            return None
        return entry[1]

    def least_loaded(self, service: str, within_s: float = DEAD_AFTER_S) -> Heartbeat | None:
        """The live instance of ``service`` with the least load; with ``within_s``, only
        among those that beat that recently (``FRESH_S``: surely alive)."""
        now = self._clock()
        candidates = [beat for seen, beat in self._seen.values()
                      if now - seen < min(within_s, DEAD_AFTER_S) and beat.service == service]
        return min(candidates, key=lambda b: (b.load, b.instance)) if candidates else None
