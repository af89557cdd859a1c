"""Run a service's async main with uvloop and staged signal handling.

SIGINT/SIGTERM cancel the main task, which lets its TaskGroup unwind and close
what it owns; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

EXIT_FORCED = 130


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_service(main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run ``main()`` until it returns or a signal stops it; return an exit code."""
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    task = loop.create_task(main())
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(EXIT_FORCED)
        logger.info("%s: shutting down", signal.Signals(signum).name)
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return 0
