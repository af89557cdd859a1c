"""A subscriber's connections, counted: one connect for many users, gone after the last."""

from __future__ import annotations

import pytest
import zmq

from services.runtime.sockets import Role, SharedConnections, make_socket


def test_an_endpoint_is_connected_once_and_released_after_its_last_user():
    ctx = zmq.Context()
    sub = make_socket(ctx, Role.AUDIO_SUB)
    try:
        shared = SharedConnections(sub, "edge_audio")
        endpoint = "tcp://127.0.0.1:5"  # never bound: ZeroMQ connects lazily
        shared.acquire(endpoint)
        shared.acquire(endpoint)
        shared.release(endpoint)
        assert endpoint in shared
        shared.release(endpoint)
        assert endpoint not in shared
        with pytest.raises(zmq.ZMQError):
            sub.disconnect(endpoint)  # already disconnected by the last release
        shared.release(endpoint)  # unknown now: ignored
        with pytest.raises(ValueError, match="cannot connect to edge_audio 'nonsense'"):
            shared.acquire("nonsense")
        assert "nonsense" not in shared
    finally:
        sub.close(linger=0)
        ctx.term()
