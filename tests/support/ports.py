"""Free loopback ports for child processes that must be told their port up front.

The ports come from below the kernel's ephemeral range. A port the kernel picks (bind
to port 0) comes from that range, and between closing it here and the child binding it,
any outbound connection on the machine (Chromium's, a load client's) may be given it as
its local port: the child's bind then fails, and a stack comes up without its signaling
or its link. A port below the range is never handed out that way. Ports are handed out
in turn through the pool (from a random start), so one comes round again only after
thousands of others: two children of one stack never get the same one.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20_000
ATTEMPTS = 500


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


_POOL = range(LOWEST, max(_ephemeral_start(), LOWEST + 5_000))
_next = random.randrange(_POOL.start, _POOL.stop)
"The first port of the next block handed out."


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    return free_port_block(1)


def free_tcp_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def free_port_block(count: int, attempts: int = ATTEMPTS) -> int:
    """The first of ``count`` consecutive ports free on 127.0.0.1 right now, the next
    such block in this process's turn through the pool."""
    global _next
    for _ in range(attempts):
        first = _next if _next + count <= _POOL.stop else _POOL.start
        _next = first + count
        if all(_bindable(port) for port in range(first, first + count)):
            return first
    raise RuntimeError(f"no block of {count} free ports found in {_POOL}")
