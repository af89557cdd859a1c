"""The recorder's default store: one SQLite file, ``<data_dir>/recorder.sqlite3``.

Durability: WAL with ``synchronous=NORMAL`` survives a crash of the process (a
committed transaction is in the WAL file); a power loss may drop the last commits.
The connection is in autocommit mode (``isolation_level=None``): the store brackets
its transactions itself, so a batch is exactly one ``BEGIN`` … ``COMMIT``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from .migrations import migrate
from .sql import SQLITE, Row
from .sql_store import SqlStore

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000


class SqliteConnection:
    """A :class:`~.sql.Connection` on :mod:`sqlite3` (``?`` is its own placeholder)."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[object] = ()) -> int:
        return self._conn.execute(sql, args).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._conn.executemany(sql, rows)

    def fetchone(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, args).fetchone()
        return row

    def fetchall(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        return self._conn.execute(sql, args).fetchall()

    def begin(self, exclusive: bool = False) -> None:
        # IMMEDIATE takes the file's write lock at once: a second recorder waits for it.
        self._conn.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()  # the last connection checkpoints the WAL into the database


class SqliteStore(SqlStore):
    """A :class:`~.store.Store` in one SQLite file, used from the thread that opened it."""

    def __init__(self, db: SqliteConnection, path: Path) -> None:
        super().__init__(db, SQLITE, str(path))
        self.path = path

    @classmethod
    def open(cls, path: Path) -> SqliteStore:
        """Create the directory and the file if needed, set WAL and migrate the schema."""
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)  # autocommit: we BEGIN ourselves
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _set_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            db = SqliteConnection(conn)
            migrate(db, SQLITE)
        except BaseException:
            conn.close()
            raise
        logger.info("SqliteStore(%s): open", path)
        return cls(db, path)


def _set_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL. SQLite answers "database is locked" at once, without its
    busy handler, while another connection opening the same new file holds its lock, so
    recorders starting together retry here for as long as the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
