"""Run a service's async main with uvloop and staged signal handling.

SIGINT/SIGTERM cancel the main task, which lets its TaskGroup unwind and close
what it owns; a second signal exits at once.

A service that cannot run as configured (a bad setting, an address it cannot listen
on) says so in one line on stderr and exits with :data:`EXIT_CONFIG`, which the
supervisor reads as "restarting will not help" when it happens at start.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .config import ConfigError

logger = logging.getLogger(__name__)

EXIT_FORCED = 130
EXIT_CONFIG = 2
"Cannot run as configured: restarting as it is will fail the same way."
LISTEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL})
"A listening address already taken, or not this machine's."

C = TypeVar("C")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's where it is installed (every POSIX voxrelay), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_configured(service: str, load_config: Callable[[], C],
                   main: Callable[[C], Coroutine[Any, Any, None]]) -> int:
    """A service's ``python -m`` entry: its config from the environment, then ``main(config)``
    under :func:`run_service`. A bad setting is one line on stderr (naming the variable)
    and exit status 2, not a traceback."""
    try:
        config = load_config()
    except ConfigError as e:
        sys.stderr.write(f"{service}: {e}\n")
        return EXIT_CONFIG
    return run_service(lambda: main(config))


def run_service(main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run ``main()`` until it returns or a signal stops it; return an exit code
    (:data:`EXIT_CONFIG` with one line on stderr if it cannot run as configured)."""
    loop = new_event_loop()
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
    except Exception as e:
        reason = cannot_run_as_configured(e)
        if reason is None:
            raise
        name = os.environ.get("VOXRELAY_INSTANCE") or "voxrelay"
        sys.stderr.write(f"{name}: {reason}\n")
        return EXIT_CONFIG
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return 0


def cannot_run_as_configured(error: BaseException) -> str | None:
    """What to tell the operator if ``error`` means the service cannot run as configured
    (a bad setting, an address it cannot listen on); None for any other error."""
    if isinstance(error, ConfigError):
        return str(error)
    code = getattr(error, "errno", None)
    if isinstance(error, OSError | _zmq_error()) and code in LISTEN_ERRNOS:
        return (f"cannot listen: {error} (another program has that address, or it is not "
                "this machine's: choose another port or host)")
    return None


def _zmq_error() -> type[BaseException]:
    try:
        from zmq import ZMQError
    except ImportError:  # pragma: no cover - pyzmq is a dependency
        return OSError
    return ZMQError
