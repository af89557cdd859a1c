"""CURVE on real ZeroMQ sockets: peers holding the cluster key talk, others get nothing.

Each side is a context secured the way every voxrelay process secures its own
(``services.runtime.curve.secure``), with voxrelay's RPC server and client and an audio
publisher bound through ``sockets.bind``; the configuration that turns CURVE on (or
refuses to expose an endpoint without it) is checked as each service reads it at start.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from proto import audio, ids, rpc, topics
from services.runtime.config import ConfigError
from services.runtime.curve import ClusterKey, new_secret_key, parse_secret_key, secure
from services.runtime.rpc import RpcClient, RpcServer
from services.runtime.service import service_config
from services.runtime.sockets import Role, bind, make_socket

REFUSED_WAIT_S = 1.5
"How long a peer without the key keeps trying before the test calls it refused."

Secured = Callable[[ClusterKey | None], zmq.Context[Any]]


@pytest.fixture
def cluster() -> ClusterKey:
    return parse_secret_key(new_secret_key())


@pytest.fixture
def secured() -> Iterator[Secured]:
    """Contexts as voxrelay processes make them: CURVE with a key, plain without."""
    made: list[tuple[zmq.Context[Any], Any]] = []

    def make(key: ClusterKey | None) -> zmq.Context[Any]:
        ctx: zmq.Context[Any] = zmq.Context()
        made.append((ctx, secure(ctx, key)))
        return ctx

    yield make
    for ctx, curve in made:
        if curve is not None:
            curve.close()
        ctx.destroy(linger=0)


async def ok(request: rpc.AnyRequest) -> rpc.Reply:
    return rpc.Ok()


async def test_a_client_with_the_cluster_key_is_answered(cluster, secured):
    server = RpcServer(secured(cluster), "tcp://127.0.0.1:*", ok, "server")
    server.start()
    client = RpcClient(secured(cluster), server.endpoint, "client")
    try:
        assert server.sock.getsockopt(zmq.CURVE_SERVER) == 1
        assert isinstance(await client.call(rpc.Ping(), timeout=5.0), rpc.Ok)
    finally:
        client.close()
        await server.close()


@pytest.mark.parametrize("client_key", ["another keypair", "no CURVE"])
async def test_a_client_without_the_cluster_secret_gets_nothing_through(
        cluster, secured, client_key):
    served: list[rpc.AnyRequest] = []

    async def handler(request: rpc.AnyRequest) -> rpc.Reply:
        served.append(request)
        return rpc.Ok()

    server = RpcServer(secured(cluster), "tcp://127.0.0.1:*", handler, "server")
    server.start()
    other = parse_secret_key(new_secret_key()) if client_key == "another keypair" else None
    client = RpcClient(secured(other), server.endpoint, "client")
    try:
        with pytest.raises(rpc.RpcError) as refused:
            await client.call(rpc.Ping(), timeout=REFUSED_WAIT_S, retries=0)
        assert refused.value.code == "timeout"
        assert served == []
    finally:
        client.close()
        await server.close()


@pytest.mark.parametrize("listener", ["the cluster key", "another keypair", "no CURVE"])
async def test_only_a_subscriber_with_the_cluster_key_hears_the_audio(
        cluster, secured, listener):
    pub = make_socket(secured(cluster), Role.AUDIO_PUB)
    endpoint = bind(pub, "tcp://127.0.0.1:*")
    key = {"the cluster key": cluster, "another keypair": parse_secret_key(new_secret_key()),
           "no CURVE": None}[listener]
    sub = make_socket(secured(key), Role.AUDIO_SUB)
    topic = topics.aud_model(ids.new_id())
    sub.subscribe(topic)
    sub.connect(endpoint)
    heard = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REFUSED_WAIT_S
    for seq in range(1_000_000):  # publish until heard, or for the whole wait
        pub.send_multipart(audio.pack(topic, seq, 0, bytes(audio.FRAME_BYTES)), zmq.NOBLOCK)
        if sub.poll(20):
            heard = audio.unpack(sub.recv_multipart())[0] == topic
            break
        if loop.time() > deadline:
            break
    assert heard == (listener == "the cluster key")


def test_services_read_the_cluster_key_at_start():
    secret = new_secret_key()
    config = service_config("mixer", {"VOXRELAY_BUS_CURVE_SECRET_KEY": secret})
    assert config.curve is not None
    assert config.curve.public == zmq.curve_public(secret.encode())
    assert secret not in repr(config)
    assert service_config("mixer", {}).curve is None


@pytest.mark.parametrize("value", ["abc", "#" * 40, "'" + "a" * 38 + "'", "é" * 40,
                                   "a" * 39 + " b"])
def test_a_malformed_key_is_refused_naming_the_variable(value):
    with pytest.raises(ConfigError) as refused:
        service_config("mixer", {"VOXRELAY_BUS_CURVE_SECRET_KEY": value})
    assert refused.value.key == "VOXRELAY_BUS_CURVE_SECRET_KEY"


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:*", "tcp://*:7000", "tcp://192.0.2.7:*",
                                      "tcp://eth0:*"])
def test_binding_beyond_loopback_needs_curve_or_an_explicit_insecure(endpoint):
    with pytest.raises(ConfigError) as refused:
        service_config("media_edge", {"VOXRELAY_RPC_BIND": endpoint})
    assert "VOXRELAY_RPC_BIND" in str(refused.value)
    assert "VOXRELAY_BUS_CURVE_SECRET_KEY" in str(refused.value)
    assert "VOXRELAY_BUS_INSECURE" in str(refused.value)
    assert service_config("media_edge", {"VOXRELAY_RPC_BIND": endpoint,
                                         "VOXRELAY_BUS_CURVE_SECRET_KEY": new_secret_key()})
    assert service_config("media_edge", {"VOXRELAY_RPC_BIND": endpoint,
                                         "VOXRELAY_BUS_INSECURE": "1"})


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:*", "tcp://127.0.0.2:7000",
                                      "tcp://localhost:*", "tcp://[::1]:*", "ipc:///tmp/x"])
def test_loopback_needs_no_curve(endpoint):
    assert service_config("mixer", {"VOXRELAY_AUDIO_BIND": endpoint}).curve is None


def test_keygen_prints_a_key_services_accept():
    done = subprocess.run([sys.executable, "-m", "services.cli", "keygen"], capture_output=True,
                          text=True, timeout=30, check=True)
    name, _, value = done.stdout.strip().partition("=")
    assert name == "VOXRELAY_BUS_CURVE_SECRET_KEY"
    assert service_config("mixer", {name: value.strip("'")}).curve is not None
