"""``python -m services.bus``: forward events from every publisher to every subscriber.

Publishers connect to ``VOXRELAY_BUS_PUBLISH`` (XSUB), subscribers to
``VOXRELAY_BUS_SUBSCRIBE`` (XPUB). The proxy runs in a worker thread; the main
thread waits for SIGINT/SIGTERM with the signals blocked (``sigwait``), so a signal
is never lost while the proxy is busy forwarding, and then stops the proxy through
its control socket. The forwarder holds no state: a restart loses only messages in
flight. With ``VOXRELAY_METRICS_PORT`` it serves its process metrics there.

The forwarder decodes nothing: both sides refuse oversize frames (``sockets.py``) and
every subscriber drops and counts what it cannot decode. With
``VOXRELAY_BUS_CURVE_SECRET_KEY`` both sides are CURVE servers admitting only the cluster
key; without it, binding beyond loopback is refused unless ``VOXRELAY_BUS_INSECURE=1``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import zmq

from services.runtime import ConfigError, setup_logging
from services.runtime.bus import BusEndpoints
from services.runtime.bus_config import bus_from_env
from services.runtime.curve import cluster_key_from_env, secure
from services.runtime.lifecycle import EXIT_CONFIG, cannot_run_as_configured
from services.runtime.service import serve_metrics, service_config
from services.runtime.sockets import Role, bind, make_socket

logger = logging.getLogger("services.bus")
CONTROL = "inproc://bus-control"
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
JOIN_TIMEOUT_S = 5.0


class Forwarder(threading.Thread):
    """Owns the proxy's sockets: they are created, used and closed in this thread."""

    def __init__(self, ctx: zmq.Context[Any], endpoints: BusEndpoints) -> None:
        super().__init__(name="bus-proxy", daemon=True)
        self.ctx = ctx
        self.endpoints = endpoints
        self.ready = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        xsub = make_socket(self.ctx, Role.BUS_XSUB)
        xpub = make_socket(self.ctx, Role.BUS_XPUB)
        control = self.ctx.socket(zmq.PAIR)
        try:
            bind(xsub, self.endpoints.publish)
            bind(xpub, self.endpoints.subscribe)
            control.bind(CONTROL)
        except zmq.ZMQError as e:
            self.error = e
            self.ready.set()
            return
        finally:
            if self.error is not None:
                for sock in (xsub, xpub, control):
                    sock.close(linger=0)
        self.ready.set()
        try:
            zmq.proxy_steerable(xsub, xpub, None, control)
        except zmq.ContextTerminated:
            pass
        finally:
            for sock in (xsub, xpub, control):
                sock.close(linger=0)


def main() -> int:
    setup_logging()
    endpoints = bus_from_env()
    try:
        key = cluster_key_from_env({"VOXRELAY_BUS_PUBLISH": endpoints.publish,
                                    "VOXRELAY_BUS_SUBSCRIBE": endpoints.subscribe})
    except ConfigError as e:
        sys.stderr.write(f"bus: {e}\n")
        return EXIT_CONFIG
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # inherited by the proxy thread
    ctx = zmq.Context()
    curve = secure(ctx, key)
    forwarder = Forwarder(ctx, endpoints)
    forwarder.start()
    forwarder.ready.wait()
    if forwarder.error is not None:
        sys.stderr.write(f"bus: cannot bind {endpoints.publish} / {endpoints.subscribe}: "
                         f"{forwarder.error}\n")
        if curve is not None:
            curve.close()
        ctx.term()
        return EXIT_CONFIG if cannot_run_as_configured(forwarder.error) else 1
    metrics = serve_metrics(service_config("bus"))  # the process's own: RSS, CPU
    sys.stdout.write(f"bus forwarding {endpoints.publish} -> {endpoints.subscribe}"
                     f"{' (metrics ' + metrics + ')' if metrics else ''}\n")
    sys.stdout.flush()
    received = signal.sigwait(STOP_SIGNALS)
    logger.info("%s: stopping the bus", signal.Signals(received).name)
    stopper = ctx.socket(zmq.PAIR)
    stopper.connect(CONTROL)
    stopper.send(b"TERMINATE")
    forwarder.join(JOIN_TIMEOUT_S)
    stopper.close(linger=0)
    if curve is not None:
        curve.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
