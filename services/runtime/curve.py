"""CURVE on every ZeroMQ socket, for deployments whose services span hosts.

``VOXRELAY_BUS_CURVE_SECRET_KEY`` holds the Z85 secret key of one keypair shared by every
service of a deployment (``voxrelay keygen`` makes one); its public key is derived from
it. With the key set, each process secures its context with :func:`secure`: every socket
it connects is a CURVE client with the cluster keypair that expects the cluster public key
from its server, every socket it binds is made a CURVE server (:func:`serve`, called by
``sockets.bind``), and a ZAP handler admits only clients that present the cluster public
key. A peer without the secret gets nothing through in either direction, and everything
on the wire is encrypted.

Without the key, endpoints stay on this machine: binding a non-loopback address is refused
at start (:func:`cluster_key_from_env`) unless ``VOXRELAY_BUS_INSECURE=1`` says the network
is trusted.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.z85 import Z85CHARS

from .config import ConfigError, Secret, env_bool, env_str

logger = logging.getLogger(__name__)

SECRET_KEY_VAR = "VOXRELAY_BUS_CURVE_SECRET_KEY"
INSECURE_VAR = "VOXRELAY_BUS_INSECURE"
Z85_KEY_CHARS = 40
"A 32-byte CURVE key in Z85."


@dataclass(frozen=True)
class ClusterKey:
    """The deployment's CURVE keypair."""

    public: bytes
    "Z85 public key, derived from the secret."
    secret: Secret
    "Z85 secret key."


def new_secret_key() -> str:
    """A fresh cluster secret key (Z85)."""
    _, secret = zmq.curve_keypair()
    return secret.decode("ascii")


def parse_secret_key(value: str, key: str = SECRET_KEY_VAR) -> ClusterKey:
    """The keypair of a Z85 secret key; ConfigError naming ``key`` if it is not one."""
    text = value.strip()
    if len(text) != Z85_KEY_CHARS or not set(text.encode()) <= set(Z85CHARS):
        raise ConfigError(key, f"must be a {Z85_KEY_CHARS}-character Z85 CURVE secret key "
                          f"(got {len(text)} characters; `voxrelay keygen` makes one)")
    try:
        public = zmq.curve_public(text.encode("ascii"))
    except (ValueError, zmq.ZMQError) as e:
        raise ConfigError(key, "is not a valid Z85 CURVE secret key "
                          "(`voxrelay keygen` makes one)") from e
    return ClusterKey(public=public, secret=Secret(text))


def is_loopback(endpoint: str) -> bool:
    """Whether binding ``endpoint`` keeps it on this machine: tcp on a loopback address,
    or ipc/inproc. ``*``, interface and host names count as reachable from elsewhere."""
    transport, _, address = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cluster_key_from_env(binds: Mapping[str, str],
                         env: Mapping[str, str] | None = None) -> ClusterKey | None:
    """The cluster key (None when unset), once every endpoint this process binds
    (``binds``: variable → endpoint) is allowed: a non-loopback one needs the key, or
    ``VOXRELAY_BUS_INSECURE=1``. ConfigError names the variables otherwise."""
    raw = env_str(SECRET_KEY_VAR, "", env)
    key = parse_secret_key(raw) if raw.strip() else None
    if key is None and not env_bool(INSECURE_VAR, False, env):
        exposed = [name for name, endpoint in binds.items() if not is_loopback(endpoint)]
        if exposed:
            raise ConfigError(", ".join(exposed), (
                f"binding {', '.join(binds[name] for name in exposed)} beyond loopback needs "
                f"{SECRET_KEY_VAR} (CURVE; `voxrelay keygen`), or {INSECURE_VAR}=1 on a "
                "network you trust"))
    return key


class _ClusterPeers:
    """The ZAP credentials check: a client is one of ours if it holds the cluster key."""

    def __init__(self, public: bytes) -> None:
        self.public = public

    def callback(self, domain: str, key: bytes) -> bool:
        return key == self.public


class Curve:
    """One context's CURVE: the keys its new sockets get, and the ZAP handler (a thread,
    as services' sockets are read synchronously on their loop and the bus has no loop)
    that admits only the cluster key. :meth:`close` before the context is terminated."""

    def __init__(self, ctx: zmq.Context[Any], key: ClusterKey) -> None:
        # The handler's own sockets are made first, so they stay plain.
        self._auth = ThreadAuthenticator(ctx, log=logger)
        self._auth.start()
        self._auth.configure_curve_callback("*", _ClusterPeers(key.public))
        # Context defaults, applied to every socket made from now on: a CURVE client of a
        # server holding the cluster key, until :func:`serve` turns it into that server.
        ctx.setsockopt(zmq.CURVE_PUBLICKEY, key.public)
        ctx.setsockopt(zmq.CURVE_SECRETKEY, key.secret.reveal().encode("ascii"))
        ctx.setsockopt(zmq.CURVE_SERVERKEY, key.public)

    def close(self) -> None:
        """Stop the ZAP handler (idempotent)."""
        self._auth.stop()


def secure(ctx: zmq.Context[Any], key: ClusterKey | None) -> Curve | None:
    """CURVE for every socket ``ctx`` makes from now on; None (nothing done) without a key."""
    return None if key is None else Curve(ctx, key)


def serve(sock: zmq.Socket[Any]) -> None:
    """Make a socket about to bind a CURVE server, if its context gave it the cluster keys."""
    if sock.getsockopt(zmq.MECHANISM) == zmq.CURVE:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
