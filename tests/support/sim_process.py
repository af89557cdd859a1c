"""The simulator as a real child process on a random loopback port."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
_URL = re.compile(r"listening on (http://\S+)")


@dataclass
class SimProcess:
    proc: subprocess.Popen[str]
    url: str

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    @classmethod
    def start(cls, *flags: str, env: dict[str, str] | None = None) -> SimProcess:
        cmd = [sys.executable, "-m", "services.openai_sim", "--port", "0", "--loopback", *flags]
        full_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=full_env)
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                line = proc.stdout.readline()
                match = _URL.search(line)
                if match:
                    return cls(proc, match.group(1))
            if proc.poll() is not None:
                raise RuntimeError(f"openai_sim exited early with {proc.returncode}")
        proc.kill()
        raise RuntimeError("openai_sim did not announce its URL in time")

    def stop(self) -> int:
        """Ctrl-C the simulator; returns its exit code (it must exit by itself)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("openai_sim did not exit within 10 s of SIGINT") from None
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode
