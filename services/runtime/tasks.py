"""An owner for tasks that outlive the request that started them (calls, sessions).

Each spawned task runs inside one ``asyncio.TaskGroup``; a failing task is logged
and does not take its siblings down; ``aclose()`` cancels and awaits them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class TaskOwner:
    def __init__(self, name: str) -> None:
        self.name = name
        self._tg: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name=f"{self.name}-owner")
        await self._ready.wait()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            self._ready.set()
            await self._stop.wait()
            for task in list(self._tasks):
                task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._tg is None or self._stop.is_set():
            coro.close()
            raise RuntimeError(f"TaskOwner({self.name}) is not running")
        task = self._tg.create_task(self._guard(coro, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await coro
        except Exception:
            logger.exception("TaskOwner(%s): task %s failed", self.name, name)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner
            self._runner = None
