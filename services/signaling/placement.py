"""Placement: which live instance holds what, and RPC clients to reach them.

New work (a session, a client) goes to the least-loaded instance that missed no
heartbeat: one killed a second ago still counts as alive for ``DEAD_AFTER_S`` and would
time out the request. While no instance of a kind is surely alive — the only one is
being restarted — :meth:`Placement.place` waits for one, up to the configured
``VOXRELAY_PLACEMENT_WAIT_S``, so a session created during a mixer restart is created a
few seconds late rather than refused.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import zmq

from proto.heartbeat import Heartbeat
from services.runtime.heartbeat import FRESH_S, Registry
from services.runtime.rpc import RpcClient

from .config import REQUIRED_SERVICES


class NoInstance(Exception):
    """No live instance of a service kind: the stack is not (yet) complete."""

    def __init__(self, service: str) -> None:
        super().__init__(f"no live {service} instance")
        self.service = service


POLL_S = 0.1


class Placement:
    def __init__(self, ctx: zmq.Context[Any], registry: Registry, wait_s: float = 0.0) -> None:
        self.ctx = ctx
        self.registry = registry
        self.wait_s = wait_s
        "How long :meth:`place` waits for an instance that is surely alive."
        self._clients: dict[tuple[str, str], RpcClient] = {}

    def pick(self, service: str) -> Heartbeat:
        beat = self.registry.least_loaded(service)
        if beat is None:
            raise NoInstance(service)
        return beat

    async def place(self, service: str) -> Heartbeat:
        """The least-loaded instance that missed no heartbeat, waiting up to ``wait_s``
        for one; then any live one; :class:`NoInstance` if there is none."""
        deadline = time.monotonic() + self.wait_s
        while (beat := self.registry.least_loaded(service, within_s=FRESH_S)) is None:
            if time.monotonic() >= deadline:
                return self.pick(service)
            await asyncio.sleep(POLL_S)
        return beat

    def instance(self, name: str) -> Heartbeat:
        beat = self.registry.get(name)
        if beat is None:
            raise NoInstance(name)
        return beat

    def client(self, beat: Heartbeat) -> RpcClient:
        """An RPC client for this instance (a restarted instance gets a fresh one)."""
        key = (beat.instance, beat.rpc)
        if key not in self._clients:
            for old in [k for k in self._clients if k[0] == beat.instance]:
                self._clients.pop(old).close()
            self._clients[key] = RpcClient(self.ctx, beat.rpc, f"signaling->{beat.instance}")
        return self._clients[key]

    def health(self) -> dict[str, list[dict[str, object]]]:
        """Live instances per required service, with pid and load."""
        return {service: [{"instance": b.instance, "pid": b.pid, "load": b.load,
                           "loop_lag_ms": round(b.loop_lag_ms, 1), "metrics": b.metrics}
                          for b in sorted(self.registry.alive(service), key=lambda b: b.instance)]
                for service in REQUIRED_SERVICES}

    def complete(self) -> bool:
        return all(self.health().values())

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
