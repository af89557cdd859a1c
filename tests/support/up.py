"""``voxrelay up`` for tests: the whole stack, every service its own process.

    with running_up(tmp_path, "--tls") as up:   # extra arguments go to `voxrelay up`
        ... up.url ...                          # http(s)://127.0.0.1:<free port>

The stack runs on loopback (``--loopback``, bus and HTTP on free 127.0.0.1 ports)
against the built-in simulator, and is stopped with SIGINT (as Ctrl-C) on exit.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .ports import free_port, free_port_block, free_tcp_endpoint

UP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
READY_LINE = "voxrelay up on "


@dataclass
class Up:
    url: str
    proc: subprocess.Popen[str]
    data_dir: Path
    log_path: Path
    metrics_port: int
    "The first of the per-service /metrics ports (the bus's)."
    sim_url: str
    "The built-in Realtime simulator (its control endpoints: /_sim/calls, /_sim/drop)."
    env: dict[str, str]
    "The environment it runs in (its bus endpoints: VOXRELAY_BUS_PUBLISH/_SUBSCRIBE)."

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_up(tmp_path: Path, *args: str, edges: int = 2,
               env_extra: dict[str, str] | None = None) -> Iterator[Up]:
    # Never the caller's own OpenAI key or database: a test stack uses its own.
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "VOXRELAY_DATABASE_URL")}
    env.update({
        "VOXRELAY_BUS_PUBLISH": free_tcp_endpoint(),
        "VOXRELAY_BUS_SUBSCRIBE": free_tcp_endpoint(),
        "VOXRELAY_SIM_RESPONSE_LATENCY_MS": "150",
        "PYTHONUNBUFFERED": "1",
        **(env_extra or {}),
    })
    data_dir = tmp_path / "data"
    log_path = tmp_path / "up.log"
    metrics_port = free_port_block(4 + edges)
    sim_port = free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--port", str(free_port()),
             "--sim-port", str(sim_port), "--loopback", "--edges", str(edges),
             "--metrics-port", str(metrics_port),
             "--data-dir", str(data_dir), *args],
            env=env, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        try:
            line = _ready_line(proc, log_path)
            yield Up(line[len(READY_LINE):].split()[0], proc, data_dir, log_path, metrics_port,
                     f"http://127.0.0.1:{sim_port}", env)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(STOP_TIMEOUT_S)
            assert proc.stdout is not None
            proc.stdout.close()


def _ready_line(proc: subprocess.Popen[str], log_path: Path) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + UP_TIMEOUT_S
    line = ""
    while READY_LINE not in line:
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"voxrelay up did not become ready (exit {proc.returncode}):"
                                 f"\n{tail}")
        if select.select([proc.stdout], [], [], 0.5)[0]:
            line = proc.stdout.readline()
    return line[line.index(READY_LINE):]
