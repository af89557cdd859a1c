"""Free loopback ports for child processes that must be told their port up front."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"
