"""Real voxrelay service processes on a real bus, for integration tests.

    async with Stack() as stack:
        mixer = await stack.start("mixer")          # python -m services.mixer
        reply = await stack.rpc(mixer).call(rpc.Ping())

Every process is started with ``VOXRELAY_*`` settings on loopback and must exit
by itself within 10 s of SIGTERM; a test fails if one does not.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from proto import events, heartbeat
from services.runtime.bus import BusEndpoints, EventPublisher, EventSubscriber
from services.runtime.heartbeat import Registry
from services.runtime.rpc import RpcClient

from .ports import free_port, free_tcp_endpoint

STOP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 20.0


@dataclass
class Running:
    service: str
    instance: str
    proc: subprocess.Popen[bytes]
    beat: heartbeat.Heartbeat | None = None


@dataclass
class Stack:
    data_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bus = BusEndpoints(free_tcp_endpoint(), free_tcp_endpoint())
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.registry = Registry()
        self.events: list[events.AnyEvent] = []
        self.processes: list[Running] = []
        self._clients: dict[str, RpcClient] = {}
        self._bus_proc: subprocess.Popen[bytes] | None = None
        self._subscriber: EventSubscriber | None = None
        self._counter = 0

    def free_port(self) -> int:
        """A free loopback port that is not one of the bus's (it may not have bound yet)."""
        taken = {self.bus.publish, self.bus.subscribe}
        port = free_port()
        while f"tcp://127.0.0.1:{port}" in taken:
            port = free_port()
        return port

    def base_env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items()
                     if k != "VOXRELAY_DATABASE_URL"}  # the caller's database, never a test's
        env = {
            **inherited,
            "VOXRELAY_BUS_PUBLISH": self.bus.publish,
            "VOXRELAY_BUS_SUBSCRIBE": self.bus.subscribe,
            "VOXRELAY_ICE_HOSTS": "127.0.0.1",
            "OPENBLAS_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        if self.data_dir is not None:
            env["VOXRELAY_DATA_DIR"] = str(self.data_dir)
        return env

    async def __aenter__(self) -> Stack:
        self._bus_proc = subprocess.Popen([sys.executable, "-m", "services.bus"],
                                          env=self.base_env(), stdout=subprocess.DEVNULL)
        self._subscriber = EventSubscriber(self.ctx, self.bus, "test-stack",
                                           on_event=self.events.append,
                                           on_heartbeat=self._on_beat)
        self._subscriber.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        failures = []
        for client in self._clients.values():
            client.close()
        for running in reversed(self.processes):
            problem = stop_problem(running.proc)
            if problem:
                failures.append(f"{running.instance} {problem}")
        if self._subscriber is not None:
            self._subscriber.close()
        if self._bus_proc is not None:
            problem = stop_problem(self._bus_proc)
            if problem:
                failures.append(f"bus {problem}")
        self.ctx.destroy(linger=0)
        assert not failures, f"unclean stop on SIGTERM: {'; '.join(failures)}"

    def _on_beat(self, beat: heartbeat.Heartbeat) -> None:
        self.registry.observe(beat)
        for running in self.processes:
            if running.instance == beat.instance:
                running.beat = beat

    async def start(self, service: str, env: dict[str, str] | None = None,
                    instance: str | None = None) -> Running:
        """Start ``python -m services.<service>``; returns once its heartbeat is heard."""
        self._counter += 1
        instance = instance or f"{service}-{self._counter}"
        full_env = {**self.base_env(), "VOXRELAY_INSTANCE": instance, **(env or {})}
        proc = subprocess.Popen([sys.executable, "-m", f"services.{service}"], env=full_env)
        running = Running(service, instance, proc)
        self.processes.append(running)
        async with asyncio.timeout(READY_TIMEOUT_S):
            while running.beat is None:
                if proc.poll() is not None:
                    raise RuntimeError(f"{instance} exited with {proc.returncode}")
                await asyncio.sleep(0.05)
        return running

    def rpc(self, running: Running) -> RpcClient:
        assert running.beat is not None
        if running.instance not in self._clients:
            self._clients[running.instance] = RpcClient(self.ctx, running.beat.rpc,
                                                        f"test->{running.instance}")
        return self._clients[running.instance]

    def publisher(self, producer: str = "test-1") -> EventPublisher:
        return EventPublisher(self.ctx, self.bus, producer)

    async def wait_event(self, kind: type, timeout: float = 10.0, **match: Any) -> Any:
        """The first event (already seen or arriving) of class ``kind`` matching ``match``."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if isinstance(event, kind) and all(
                            getattr(event, k) == v for k, v in match.items()):
                        return event
                await asyncio.sleep(0.02)


def stop_problem(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                 timeout: float = STOP_TIMEOUT_S) -> str:
    """Signal (SIGTERM) and wait; '' if it exited by itself with status 0, else what went
    wrong (killed after ``timeout``)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return f"did not exit within {timeout:.0f} s"
    return "" if proc.returncode == 0 else f"exited with status {proc.returncode}"


def stop_process(proc: subprocess.Popen[bytes]) -> bool:
    """SIGTERM, wait; True if it exited by itself with status 0."""
    return not stop_problem(proc)
