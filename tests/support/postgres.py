"""A real PostgreSQL server for tests: a private throwaway cluster, or the one named by
``VOXRELAY_TEST_DATABASE_URL``.

The session-scoped ``postgres_server`` fixture initdb's a cluster in a new temp dir and
runs ``postgres`` on 127.0.0.1 at a free port (its unix socket in the same dir, fsync
off: a server killed with the test run loses nothing anyone needs), with a password, as
an unprivileged user — PostgreSQL refuses to run as root, so under root it runs as
``postgres`` (Debian's package creates that user) or ``nobody`` through ``setpriv``,
which also has the server shut down (SIGQUIT) if the test run dies. The server is
stopped and its dir removed when the session ends. Each test that asks for
``postgres_database`` gets a database of its own, dropped afterwards.

Without PostgreSQL's server binaries the tests that need them are skipped, saying so
(``-ra`` lists the reason). ``VOXRELAY_TEST_DATABASE_URL`` (a user allowed to create
databases) uses that server instead of starting one.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from .ports import free_port
from .stack import stop_problem

T = TypeVar("T")

TEST_URL_ENV = "VOXRELAY_TEST_DATABASE_URL"
INSTALL_HINT = ("install Debian's postgresql package (scripts/bootstrap --test does), or set "
                f"{TEST_URL_ENV}=postgresql://user:password@host:port/database")
BINARY_DIRS = "/usr/lib/postgresql/*/bin"
SUPERUSER = "voxrelay"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0


def run_sync(make: Callable[[], Coroutine[Any, Any, T]], timeout: float = CALL_TIMEOUT_S) -> T:
    """Run a coroutine to completion on a loop of its own, in a thread of its own (a sync
    fixture or test may be called while an event loop runs in this thread)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(timeout)


def fetch(url: str, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """Rows of one query (``$1`` placeholders) on a connection of its own."""
    async def go() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url)
        try:
            return [tuple(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()
    return run_sync(go)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@dataclass
class PostgresServer:
    url: str
    "Where to connect as a user allowed to create databases."

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"voxrelay_test_{secrets.token_hex(6)}"
        fetch(self.url, f'CREATE DATABASE "{name}"')
        return with_database(self.url, name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        assert re.fullmatch(r"voxrelay_test_[0-9a-f]+", name), name
        fetch(self.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def find_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: on PATH, else the newest of
    Debian's ``/usr/lib/postgresql/<version>/bin``."""
    candidates = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    versions = sorted(Path("/").glob(BINARY_DIRS.lstrip("/")),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                      reverse=True)
    candidates += versions
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


def _unprivileged() -> tuple[list[str], int | None, int | None]:
    """The command prefix that runs the server as a non-root user (and stops it with us),
    and that user's uid and gid (None when we are not root)."""
    setpriv = shutil.which("setpriv")
    prefix = [setpriv, "--pdeathsig", "SIGQUIT"] if setpriv else []
    if os.geteuid() != 0:
        return prefix, None, None
    if not setpriv:
        raise RuntimeError("running as root, and setpriv (util-linux) is missing to run "
                           "PostgreSQL as another user")
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return ([setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                 "--pdeathsig", "SIGQUIT"], user.pw_uid, user.pw_gid)
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists")


class TempCluster:
    """initdb + postgres in a temp dir of their own; :meth:`stop` removes everything."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="voxrelay-pg-"))  # not under pytest's 0700 dirs
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.url = f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/postgres"
        self.log_path = self.dir / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        prefix, uid, gid = _unprivileged()
        (self.dir / "pwfile").write_text(self.password + "\n")
        if uid is not None and gid is not None:
            os.chown(self.dir, uid, gid)
            os.chown(self.dir / "pwfile", uid, gid)
        with self.log_path.open("ab") as log:
            subprocess.run(
                [*prefix, str(self.bindir / "initdb"), "-D", str(self.dir / "data"),
                 "-U", SUPERUSER, f"--pwfile={self.dir / 'pwfile'}", "--auth-local=trust",
                 "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
                stdout=log, stderr=subprocess.STDOUT, check=True, timeout=120, cwd=self.dir)
            self.proc = subprocess.Popen(
                [*prefix, str(self.bindir / "postgres"), "-D", str(self.dir / "data"),
                 "-k", str(self.dir), "-h", "127.0.0.1", "-p", str(self.port),
                 "-c", "fsync=off", "-c", "full_page_writes=off"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log()}")
            try:
                fetch(self.url, "SELECT 1")
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres not ready after {READY_TIMEOUT_S:g} s:\n"
                                       f"{self.log()}") from None
                time.sleep(0.1)

    def stop(self) -> str:
        """Fast shutdown (SIGINT), then remove the dir; returns what went wrong, if anything.
        Idempotent."""
        problem = "" if self.proc is None else stop_problem(self.proc, signal.SIGINT,
                                                             STOP_TIMEOUT_S)
        if problem:
            problem = f"{problem}:\n{self.log()}"
        shutil.rmtree(self.dir, ignore_errors=True)
        return problem

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session (skips, saying why, without one)."""
    given = os.environ.get(TEST_URL_ENV)
    if given:
        yield PostgresServer(given)
        return
    bindir = find_binaries()
    if bindir is None:
        pytest.skip(f"PostgreSQL server binaries (initdb, postgres) not found: {INSTALL_HINT}")
    cluster = TempCluster(bindir)
    try:
        cluster.start()
        yield PostgresServer(cluster.url)
    finally:
        problem = cluster.stop()
    assert not problem, f"postgres {problem}"


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new empty database, dropped after the test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
