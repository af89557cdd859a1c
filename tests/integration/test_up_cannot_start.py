"""``voxrelay up`` that cannot run as configured stops at once and says why.

A port already taken or a bad setting fails a service the same way on every restart:
instead of restarting it forever (a traceback every few seconds, the URL never
printed), the supervisor stops the stack and exits 1, the reason in one line.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.ports import free_port, free_port_block, free_tcp_endpoint

EXIT_TIMEOUT_S = 60


def up(tmp_path: Path, port: int, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    environment.update({"VOXRELAY_BUS_PUBLISH": free_tcp_endpoint(),
                        "VOXRELAY_BUS_SUBSCRIBE": free_tcp_endpoint(), **env})
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "up", "--port", str(port), "--sim-port",
         str(free_port()), "--loopback", "--edges", "1", "--metrics-port",
         str(free_port_block(5)), "--data-dir", str(tmp_path / "data")],
        env=environment, capture_output=True, text=True, timeout=EXIT_TIMEOUT_S)


def test_a_taken_http_port_stops_the_stack_with_one_line_saying_so(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = up(tmp_path, port)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "voxrelay up on" not in done.stdout
    lines = [line for line in done.stderr.splitlines() if "cannot listen" in line]
    assert len(lines) == 1, done.stderr[-2000:]  # signaling is not restarted into it again
    assert lines[0].startswith("signaling-1: ") and str(port) in lines[0]
    assert "Traceback" not in done.stderr


def test_a_bad_setting_stops_the_stack_naming_it(tmp_path: Path):
    done = up(tmp_path, free_port(), VOXRELAY_EDGE_QUEUE_FRAMES="0")
    assert done.returncode == 1, done.stderr[-2000:]
    named = [line for line in done.stderr.splitlines()
             if "VOXRELAY_EDGE_QUEUE_FRAMES" in line]
    assert named and named[0].startswith("media_edge"), done.stderr[-2000:]
    assert "cannot run as configured" in done.stderr
    assert "Traceback" not in done.stderr
