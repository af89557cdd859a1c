"""Every ZeroMQ socket voxrelay opens, with its options from one table.

Data plane (audio) is cheap and lossy: small high-water marks, linger 0, stale frames
dropped rather than queued. Control plane (events, RPC) keeps more and lingers a
little so a clean shutdown still delivers what was sent.
"""

from __future__ import annotations

import enum
from typing import Any

import zmq

AUDIO_HWM = 50
"Frames (1 s of 20 ms audio) a publisher or subscriber queues before dropping."
EVENT_HWM = 10_000
CONTROL_LINGER_MS = 200


class Role(enum.Enum):
    AUDIO_PUB = "audio_pub"
    AUDIO_SUB = "audio_sub"
    EVENT_PUB = "event_pub"
    EVENT_SUB = "event_sub"
    BUS_XSUB = "bus_xsub"
    BUS_XPUB = "bus_xpub"
    RPC_SERVER = "rpc_server"
    RPC_CLIENT = "rpc_client"


SOCKET_TYPES: dict[Role, int] = {
    Role.AUDIO_PUB: zmq.PUB,
    Role.AUDIO_SUB: zmq.SUB,
    Role.EVENT_PUB: zmq.PUB,
    Role.EVENT_SUB: zmq.SUB,
    Role.BUS_XSUB: zmq.XSUB,
    Role.BUS_XPUB: zmq.XPUB,
    Role.RPC_SERVER: zmq.ROUTER,
    Role.RPC_CLIENT: zmq.DEALER,
}

SOCKET_OPTIONS: dict[Role, dict[int, Any]] = {
    Role.AUDIO_PUB: {zmq.SNDHWM: AUDIO_HWM, zmq.LINGER: 0},
    Role.AUDIO_SUB: {zmq.RCVHWM: AUDIO_HWM, zmq.LINGER: 0},
    Role.EVENT_PUB: {zmq.SNDHWM: EVENT_HWM, zmq.LINGER: CONTROL_LINGER_MS},
    Role.EVENT_SUB: {zmq.RCVHWM: EVENT_HWM, zmq.LINGER: 0},
    Role.BUS_XSUB: {zmq.RCVHWM: EVENT_HWM, zmq.LINGER: 0},
    Role.BUS_XPUB: {zmq.SNDHWM: EVENT_HWM, zmq.LINGER: 0},
    Role.RPC_SERVER: {zmq.LINGER: CONTROL_LINGER_MS, zmq.ROUTER_MANDATORY: 1},
    Role.RPC_CLIENT: {zmq.LINGER: 0, zmq.SNDHWM: 1000},
}


def make_socket(ctx: zmq.Context[Any], role: Role) -> zmq.Socket[Any]:
    sock = ctx.socket(SOCKET_TYPES[role])
    for option, value in SOCKET_OPTIONS[role].items():
        sock.setsockopt(option, value)
    return sock


def bind(sock: zmq.Socket[Any], endpoint: str) -> str:
    """Bind and return the real endpoint (``tcp://127.0.0.1:*`` picks a free port)."""
    sock.bind(endpoint)
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)
