"""The supervisor's view of one child: a crashing child is restarted with backoff, and a
stop never waits that backoff out (Ctrl-C during a crash loop exits at once)."""

from __future__ import annotations

import asyncio
import os

from services.supervisor.children import Child, ChildSpec

WAIT_S = 10.0


def crashing_child() -> Child:
    # A module that does not exist: `python -m` exits 1 at once, like a child that crashes on start.
    child = Child(ChildSpec("crasher", "services.no_such_service", dict(os.environ), 0))
    child._backoff = 30.0
    return child


async def test_a_crashed_child_is_restarted_after_its_backoff():
    child = crashing_child()
    child._backoff = 0.05
    await child.start()
    first = child.pid
    watch = asyncio.create_task(child.watch())
    async with asyncio.timeout(WAIT_S):
        while child.restarts < 2:
            await asyncio.sleep(0.02)
    assert child.pid != first
    assert child._backoff > 0.05, "each restart in a row waits longer"
    await child.stop(1.0)
    await asyncio.wait_for(watch, WAIT_S)


async def test_stopping_a_child_in_its_restart_backoff_returns_at_once():
    child = crashing_child()
    await child.start()
    watch = asyncio.create_task(child.watch())
    assert child.proc is not None
    await asyncio.wait_for(child.proc.wait(), WAIT_S)
    await asyncio.sleep(0.1)  # the watch has seen the exit and sits in its 30 s backoff
    assert not watch.done()

    assert await child.stop(1.0) == 1
    # Well inside the 30 s backoff: the watch ends because of the stop, not the timer.
    await asyncio.wait_for(watch, WAIT_S)
    assert child.restarts == 0, "a stopped child is never started again"

