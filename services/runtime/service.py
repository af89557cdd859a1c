"""The shell every bus-connected service runs in.

A :class:`Service` owns the process's ZeroMQ context, its event publisher, its RPC
server and its heartbeat, all inside one TaskGroup. The RPC server answers
``GetOutbox`` from the publisher's outbox itself, before the service's handler, so
every bus-connected service serves it and no handler has to know it exists. A service supplies a handler for
RPC requests, what to run beside them, and its load; shutdown is staged: stop intake
(the RPC server), cancel the service's own tasks, close sockets, terminate the context.
With a cluster key (``VOXRELAY_BUS_CURVE_SECRET_KEY``, ``curve.py``) the context makes
every socket CURVE, from the first one on.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from prometheus_client import start_http_server

from proto import rpc

from .bus import BusEndpoints, EventPublisher
from .bus_config import bus_from_env
from .config import env_bool, env_int, env_str
from .curve import ClusterKey, cluster_key_from_env, secure
from .heartbeat import HeartbeatSender
from .metrics import LoopLagMonitor, announce
from .outbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_EVENTS
from .reclaim import freeze_startup
from .rpc import RpcServer
from .sockets import take_subscriptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceConfig:
    service: str
    instance: str
    bus: BusEndpoints
    rpc_bind: str
    audio_bind: str
    metrics_host: str
    metrics_port: int
    "0 = no metrics endpoint."
    data_dir: Path
    outbox_events: int = DEFAULT_MAX_EVENTS
    "Events the publisher keeps for ``GetOutbox`` (``VOXRELAY_OUTBOX_EVENTS``)..."
    outbox_bytes: int = DEFAULT_MAX_BYTES
    "...and at most this many bytes of them (``VOXRELAY_OUTBOX_BYTES``)."
    curve: ClusterKey | None = None
    "CURVE on every socket (``VOXRELAY_BUS_CURVE_SECRET_KEY``); None: none."
    skip_silence: bool = True
    """Audio publishers keep silence off the bus (``VOXRELAY_BUS_SKIP_SILENCE``, on by
    default; ``0`` sends every frame): see SilenceGate."""


def service_config(service: str, env: Mapping[str, str] | None = None) -> ServiceConfig:
    """Common settings: ``VOXRELAY_INSTANCE``, ``VOXRELAY_RPC_BIND``, ``VOXRELAY_AUDIO_BIND``,
    ``VOXRELAY_METRICS_PORT``, ``VOXRELAY_DATA_DIR``, ``VOXRELAY_OUTBOX_EVENTS``,
    ``VOXRELAY_OUTBOX_BYTES``, ``VOXRELAY_BUS_SKIP_SILENCE``, the bus endpoints and CURVE (``VOXRELAY_BUS_CURVE_SECRET_KEY``,
    required to bind RPC or audio beyond loopback unless ``VOXRELAY_BUS_INSECURE=1``)."""
    rpc_bind = env_str("VOXRELAY_RPC_BIND", "tcp://127.0.0.1:*", env)
    audio_bind = env_str("VOXRELAY_AUDIO_BIND", "tcp://127.0.0.1:*", env)
    return ServiceConfig(
        service=service,
        instance=env_str("VOXRELAY_INSTANCE", f"{service}-{os.getpid()}", env),
        bus=bus_from_env(env),
        rpc_bind=rpc_bind,
        audio_bind=audio_bind,
        metrics_host=env_str("VOXRELAY_METRICS_HOST", "127.0.0.1", env),
        metrics_port=env_int("VOXRELAY_METRICS_PORT", 0, env, minimum=0, maximum=65535),
        data_dir=Path(env_str("VOXRELAY_DATA_DIR", "./data", env)),
        outbox_events=env_int("VOXRELAY_OUTBOX_EVENTS", DEFAULT_MAX_EVENTS, env, minimum=1),
        outbox_bytes=env_int("VOXRELAY_OUTBOX_BYTES", DEFAULT_MAX_BYTES, env, minimum=1024),
        curve=cluster_key_from_env({"VOXRELAY_RPC_BIND": rpc_bind,
                                    "VOXRELAY_AUDIO_BIND": audio_bind}, env),
        skip_silence=env_bool("VOXRELAY_BUS_SKIP_SILENCE", True, env),
    )


def serve_metrics(config: ServiceConfig) -> str:
    """Serve this process's registry on ``VOXRELAY_METRICS_PORT`` (0: not at all); the URL."""
    announce(config.service, config.instance)
    if not config.metrics_port:
        return ""
    server, _ = start_http_server(config.metrics_port, addr=config.metrics_host)
    host = config.metrics_host if config.metrics_host not in ("0.0.0.0", "::", "") \
        else "127.0.0.1"
    return f"http://{host}:{server.server_port}/metrics"


class Service:
    """Context, publisher, RPC server and heartbeat of one service process."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.curve = secure(self.ctx, config.curve)
        self.events = EventPublisher(self.ctx, config.bus, config.instance,
                                     outbox_events=config.outbox_events,
                                     outbox_bytes=config.outbox_bytes)
        self.rpc: RpcServer | None = None
        self.audio_endpoint = ""
        self.metrics_url = ""
        "Where this process's metrics are served, if not on VOXRELAY_METRICS_PORT."
        self._publishers: list[zmq.Socket[Any]] = []

    @property
    def instance(self) -> str:
        return self.config.instance

    def tend_publisher(self, sock: zmq.Socket[Any]) -> None:
        """Have the audio PUB ``sock`` take in its subscribers' (un)subscriptions at every
        heartbeat, whether or not it has sent anything (:func:`.sockets.take_subscriptions`)."""
        self._publishers.append(sock)

    def _upkeep(self) -> None:
        for sock in self._publishers:
            take_subscriptions(sock)

    async def run(
        self,
        handler: Callable[[rpc.AnyRequest], Awaitable[rpc.Reply]],
        *,
        load: Callable[[], int] = lambda: 0,
        tasks: tuple[Callable[[], Awaitable[None]], ...] = (),
    ) -> None:
        """Serve until cancelled; then shut down in stages."""
        metrics = serve_metrics(self.config) or self.metrics_url
        self.rpc = RpcServer(self.ctx, self.config.rpc_bind, handler, self.instance,
                             runtime=self.events.outbox.answer)
        self.rpc.start()
        beat = HeartbeatSender(self.events, self.config.service, self.instance,
                               rpc=self.rpc.endpoint, audio=self.audio_endpoint, load=load,
                               metrics=metrics, on_beat=self._upkeep)
        logger.info("%s up: rpc %s audio %s metrics %s", self.instance, self.rpc.endpoint,
                    self.audio_endpoint or "-", metrics or "-")
        freeze_startup()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(beat.run(), name=f"{self.instance}-heartbeat")
                tg.create_task(LoopLagMonitor().run(), name=f"{self.instance}-loop-lag")
                for task in tasks:
                    tg.create_task(task(), name=f"{self.instance}-{task.__name__}")
        finally:
            await self.close()

    async def close(self) -> None:
        if self.rpc is not None:
            await self.rpc.close()
            self.rpc = None
        self.events.close()
        if self.curve is not None:
            self.curve.close()
        self.ctx.destroy()  # each socket closes with its own linger (events get 200 ms)
