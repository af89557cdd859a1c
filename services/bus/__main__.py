"""``python -m services.bus``: forward events from every publisher to every subscriber.

Publishers connect to ``VOXRELAY_BUS_PUBLISH`` (XSUB), subscribers to
``VOXRELAY_BUS_SUBSCRIBE`` (XPUB). SIGINT/SIGTERM stop the proxy through its
control socket; the forwarder holds no state, so a restart loses nothing but
messages in flight.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import zmq

from services.runtime import setup_logging
from services.runtime.bus_config import bus_from_env
from services.runtime.sockets import Role, bind, make_socket

logger = logging.getLogger("services.bus")
CONTROL = "inproc://bus-control"


def main() -> int:
    setup_logging()
    endpoints = bus_from_env()
    ctx = zmq.Context()
    xsub = make_socket(ctx, Role.BUS_XSUB)
    xpub = make_socket(ctx, Role.BUS_XPUB)
    bind(xsub, endpoints.publish)
    bind(xpub, endpoints.subscribe)
    control = ctx.socket(zmq.PAIR)
    control.bind(CONTROL)
    stopper = ctx.socket(zmq.PAIR)
    stopper.connect(CONTROL)
    lock = threading.Lock()

    def stop(signum: int, frame: object) -> None:
        with lock:
            if not stopper.closed:
                stopper.send(b"TERMINATE")

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    sys.stdout.write(f"bus forwarding {endpoints.publish} -> {endpoints.subscribe}\n")
    sys.stdout.flush()
    try:
        zmq.proxy_steerable(xsub, xpub, None, control)
    except zmq.ContextTerminated:
        pass
    logger.info("bus stopped")
    with lock:
        stopper.close()
    for sock in (xsub, xpub, control):
        sock.close(linger=0)
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
