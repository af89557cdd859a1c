"""One supervised child process: start, watch, restart with backoff, stop with a deadline."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import sys
import time
from dataclasses import dataclass, field

from services.runtime.lifecycle import EXIT_CONFIG

logger = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
HEALTHY_AFTER_S = 30.0
"A child that ran this long gets its backoff reset."
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the supervisor dies, so nothing is orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass(frozen=True)
class ChildSpec:
    name: str
    module: str
    env: dict[str, str]
    stage: int
    "Shutdown order: lower stages stop first (signaling 0 … bus last)."


@dataclass
class Child:
    spec: ChildSpec
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    stopping: bool = False
    _backoff: float = field(default=BACKOFF_START_S)
    _stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    "Set by stop()/kill(): cuts a restart backoff short, so a stop never waits it out."

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        # A session of its own: a terminal's Ctrl-C goes to the supervisor's process group
        # only, so the supervisor alone decides the order in which children stop.
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.spec.module, env=self.spec.env,
            stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        logger.info("started %s (pid %d)", self.spec.name, self.proc.pid)

    async def watch(self) -> int | None:
        """Keep the child running: restart it with backoff whenever it exits unasked.

        Returns None once stopped; the exit code if the child cannot run as configured:
        its first run exited with ``EXIT_CONFIG`` (a bad setting, an address taken) before
        it was healthy, and restarting it as it is would fail the same way, forever.
        """
        while not self.stopping:
            assert self.proc is not None
            code = await self.proc.wait()
            if self.stopping:
                return None
            ran_s = time.monotonic() - self.started_at
            if code == EXIT_CONFIG and self.restarts == 0 and ran_s < HEALTHY_AFTER_S:
                logger.error("%s cannot run as configured (exit %d; its message is above)",
                             self.spec.name, code)
                return code
            if ran_s > HEALTHY_AFTER_S:
                self._backoff = BACKOFF_START_S
            logger.warning("%s exited with %s; restarting in %.1f s", self.spec.name, code,
                           self._backoff)
            try:
                await asyncio.wait_for(self._stop_requested.wait(), self._backoff)
                return None
            except TimeoutError:
                pass
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            self.restarts += 1
            await self.start()
        return None

    async def stop(self, deadline_s: float) -> int | None:
        """SIGTERM, then SIGKILL after the deadline; returns the exit code."""
        self.stopping = True
        self._stop_requested.set()
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc else None
        proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.wait(), deadline_s)
        except TimeoutError:
            logger.warning("%s did not stop within %.0f s: killing it", self.spec.name, deadline_s)
            proc.kill()
            return await proc.wait()

    def kill(self) -> None:
        self.stopping = True
        self._stop_requested.set()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
