"""Shared fixtures: a simulator process per module, fresh ones on demand; a PostgreSQL
server and the recorder's store on each backend (``tests/support/postgres.py``, ``stores.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from services.runtime import configure_ice_hosts
from tests.support.postgres import postgres_database, postgres_server  # noqa: F401 (fixtures)
from tests.support.sim_process import SimProcess
from tests.support.stores import store_factory  # noqa: F401 (fixture, both store backends)


@pytest.fixture(scope="session", autouse=True)
def loopback_ice() -> None:
    """aiortc peers in the test process gather only 127.0.0.1 candidates (no STUN)."""
    configure_ice_hosts(["127.0.0.1"])


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    """A default simulator (friendly script, short response latency)."""
    process = SimProcess.start("--response-latency-ms", "150")
    yield process
    assert process.stop() == 0


@pytest.fixture
def start_sim() -> Iterator[Callable[..., SimProcess]]:
    """Start simulators with custom flags; each must exit cleanly on SIGINT."""
    started: list[SimProcess] = []

    def start(*flags: str, env: dict[str, str] | None = None) -> SimProcess:
        process = SimProcess.start(*flags, env=env)
        started.append(process)
        return process

    yield start
    codes = [p.stop() for p in started]
    assert codes == [0] * len(codes), f"simulators exited with {codes}"
