"""Every ZeroMQ socket voxrelay opens, with its options from one table.

Data plane (audio) is cheap and lossy: small high-water marks, linger 0, stale frames
dropped rather than queued. Control plane (events, RPC) keeps more and lingers a
little so a clean shutdown still delivers what was sent. :class:`SharedConnections`
counts the users of each endpoint a subscriber connects to.

Sockets that bind accept connections from any process that can reach them, so they
refuse frames over :data:`MAX_MESSAGE_BYTES` (libzmq drops the sending peer's connection;
the peer reconnects). With a cluster key (``curve.py``) a context gives every socket it
makes the keys of a CURVE client, and :func:`bind` makes the socket it binds a CURVE server.
"""

from __future__ import annotations

import collections
import enum
import logging
from typing import Any

import zmq

from . import curve

logger = logging.getLogger(__name__)

AUDIO_HWM = 50
"Frames (1 s of 20 ms audio) a publisher or subscriber queues before dropping."
EVENT_HWM = 10_000
CONTROL_LINGER_MS = 200
MAX_MESSAGE_BYTES = 1024 * 1024
"""Largest frame a bound socket accepts. The largest real ones are far below it: RPC
requests carry SDP (at most 64 KiB), events a Realtime server event's JSON (audio
excluded), audio frames 960 bytes of PCM."""


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
    Role.AUDIO_PUB: {zmq.SNDHWM: AUDIO_HWM, zmq.LINGER: 0, zmq.MAXMSGSIZE: MAX_MESSAGE_BYTES},
    Role.AUDIO_SUB: {zmq.RCVHWM: AUDIO_HWM, zmq.LINGER: 0},
    Role.EVENT_PUB: {zmq.SNDHWM: EVENT_HWM, zmq.LINGER: CONTROL_LINGER_MS},
    Role.EVENT_SUB: {zmq.RCVHWM: EVENT_HWM, zmq.LINGER: 0},
    Role.BUS_XSUB: {zmq.RCVHWM: EVENT_HWM, zmq.LINGER: 0, zmq.MAXMSGSIZE: MAX_MESSAGE_BYTES},
    Role.BUS_XPUB: {zmq.SNDHWM: EVENT_HWM, zmq.LINGER: 0, zmq.MAXMSGSIZE: MAX_MESSAGE_BYTES},
    Role.RPC_SERVER: {zmq.LINGER: CONTROL_LINGER_MS, zmq.ROUTER_MANDATORY: 1,
                      zmq.MAXMSGSIZE: MAX_MESSAGE_BYTES},
    Role.RPC_CLIENT: {zmq.LINGER: 0, zmq.SNDHWM: 1000},
}


def make_socket(ctx: zmq.Context[Any], role: Role) -> zmq.Socket[Any]:
    sock = ctx.socket(SOCKET_TYPES[role])
    for option, value in SOCKET_OPTIONS[role].items():
        sock.setsockopt(option, value)
    return sock


def take_subscriptions(sock: zmq.Socket[Any]) -> None:
    """Let a PUB socket take in the (un)subscriptions its subscribers sent.

    libzmq applies them only when the application calls into the socket. A publisher
    with nothing to send (a link whose model is quiet, a mixer nobody speaks into) keeps
    them queued meanwhile, each holding the 8 KB read buffer it arrived in, up to the
    pipe's high-water mark (1 000 messages, about 8 MB per subscriber); past that,
    libzmq stops reading that subscriber. Asking for the socket's events processes them.
    """
    if sock.closed:
        return
    try:
        sock.getsockopt(zmq.EVENTS)
    except zmq.ZMQError as e:  # e.g. the context is terminating: the next beat retries
        logger.warning("could not take a publisher's subscriptions: %s", e)


def bind(sock: zmq.Socket[Any], endpoint: str) -> str:
    """Bind (as a CURVE server, with a cluster key) and return the real endpoint
    (``tcp://127.0.0.1:*`` picks a free port)."""
    curve.serve(sock)
    sock.bind(endpoint)
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


class SharedConnections:
    """A SUB socket's connections to publishers, counted by user.

    Many sessions (or clients) may take their audio from one publisher's endpoint; the
    socket connects to it for the first user and disconnects after the last.
    """

    def __init__(self, sock: zmq.Socket[Any], what: str) -> None:
        self.sock = sock
        self.what = what
        "What the endpoints are, for errors and logs (e.g. 'edge_audio')."
        self._users: collections.Counter[str] = collections.Counter()

    def __contains__(self, endpoint: str) -> bool:
        return self._users[endpoint] > 0

    def acquire(self, endpoint: str) -> None:
        """One more user of ``endpoint``; raises ValueError for an unusable endpoint."""
        if not self._users[endpoint]:
            try:
                self.sock.connect(endpoint)
            except zmq.ZMQError as e:
                raise ValueError(f"cannot connect to {self.what} {endpoint!r}: {e}") from e
            logger.info("connected to %s %s", self.what, endpoint)
        self._users[endpoint] += 1

    def release(self, endpoint: str) -> None:
        """One user fewer; the last one disconnects (an unknown endpoint is ignored)."""
        if self._users[endpoint] <= 0:
            del self._users[endpoint]
            return
        self._users[endpoint] -= 1
        if not self._users[endpoint]:
            del self._users[endpoint]
            try:
                self.sock.disconnect(endpoint)
            except zmq.ZMQError:
                pass  # already gone
            logger.info("disconnected from %s %s", self.what, endpoint)
