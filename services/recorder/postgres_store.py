"""The recorder's store in PostgreSQL (``VOXRELAY_DATABASE_URL=postgresql://…``), over asyncpg.

Why a private event loop: the :class:`~.store.Store` interface is synchronous and
owned by one thread, the batch writer's (``writer.py``), so the recorder's event loop
never waits on the database and every store call runs in submission order. asyncpg only
speaks asyncio; rather than an async store interface (and a second design beside
SQLite's), :class:`PostgresConnection` creates its own event loop on the writer's
thread when the store is opened (``BatchWriter.open`` runs the opener there), and runs
each asyncpg call to completion on it with ``loop.run_until_complete``. The connection
and its loop stay on that thread for their whole life, exactly as the SQLite connection
does; nothing else ever runs on that loop. (So a PostgresStore cannot be used from a
thread whose own event loop is running: ``run_until_complete`` refuses to nest.) The
price is the loop's turn around each call, on the order of the local round trip itself;
batches keep the calls few (see ``sql_store.py``).

Durability: a batch is one transaction, committed with the server's defaults
(``synchronous_commit=on``: on disk when ``COMMIT`` returns). Statements time out after
:data:`COMMAND_TIMEOUT_S`; a connection the server dropped fails the batch in flight
(the writer retries it one write at a time) and is reopened at the next transaction.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import asyncpg

from services.runtime import Secret
from services.runtime.lifecycle import new_event_loop

from .migrations import migrate
from .sql import POSTGRES, Row
from .sql_store import SqlStore
from .store import StoreError

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0
MIGRATION_LOCK_KEY = 0x766F7872656C6179
"The advisory lock held while migrating ('voxrelay' in ASCII: a 64-bit key of our own)."

_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1``, ``$2``, … (the SQL has no literal ``?``)."""
    counter = iter(range(1, sql.count("?") + 1))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class PostgresConnection:
    """A :class:`~.sql.Connection` on one asyncpg connection and a loop of its own."""

    errors: tuple[type[BaseException], ...] = (
        asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

    def __init__(self, url: Secret, label: str) -> None:
        self._url = url
        self.label = label
        self._loop = new_event_loop()
        self._conn: asyncpg.Connection[Any] | None = None
        self._in_transaction = False

    @classmethod
    def connect(cls, url: Secret, label: str) -> PostgresConnection:
        """Connect (raises :class:`~.store.StoreError` naming ``label``, never the password)."""
        db = cls(url, label)
        try:
            db._connect()
        except BaseException:
            db.close()
            raise
        return db

    def execute(self, sql: str, args: Sequence[object] = ()) -> int:
        status = self._run(self._connection().execute(numbered(sql), *args))
        count = status.rpartition(" ")[2]  # "INSERT 0 1", "UPDATE 2", "BEGIN"
        return int(count) if count.isdigit() else 0

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._run(self._connection().executemany(numbered(sql), rows))  # pipelined

    def fetchone(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        record = self._run(self._connection().fetchrow(numbered(sql), *args))
        return None if record is None else tuple(record)

    def fetchall(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        return [tuple(r) for r in self._run(self._connection().fetch(numbered(sql), *args))]

    def begin(self, exclusive: bool = False) -> None:
        self.execute("BEGIN")
        self._in_transaction = True
        if exclusive:  # held until the transaction ends; a second recorder waits here
            self.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")

    def commit(self) -> None:
        self.execute("COMMIT")
        self._in_transaction = False

    def rollback(self) -> None:
        if self._in_transaction:
            self._in_transaction = False
            with contextlib.suppress(*self.errors):
                self.execute("ROLLBACK")

    def close(self) -> None:
        """Close the connection and the loop. Idempotent."""
        if self._loop.is_closed():
            return
        if self._conn is not None:
            with contextlib.suppress(*self.errors):
                self._run(self._conn.close(timeout=CLOSE_TIMEOUT_S))
            self._conn = None
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def _connection(self) -> asyncpg.Connection[Any]:
        """The connection; reopened if the server dropped it between transactions (within
        one, the statement fails: the transaction is gone with the connection)."""
        if self._conn is None or (self._conn.is_closed() and not self._in_transaction):
            if self._conn is not None:
                logger.warning("PostgresConnection(%s): connection lost; reconnecting",
                               self.label)
            self._connect()
        assert self._conn is not None
        return self._conn

    def _connect(self) -> None:
        try:
            self._conn = self._run(asyncpg.connect(
                self._url.reveal(), timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S))
        except (*self.errors, ValueError) as e:
            raise StoreError(f"cannot connect to {self.label}: {e}") from e

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(call)


class PostgresStore(SqlStore):
    """A :class:`~.store.Store` in a PostgreSQL database, used from the thread that opened it."""

    @classmethod
    def open(cls, url: Secret, label: str) -> PostgresStore:
        """Connect and migrate the schema; ``label`` is the URL with its password masked."""
        db = PostgresConnection.connect(url, label)
        try:
            migrate(db, POSTGRES)
            store = cls(db, POSTGRES, label)
        except BaseException:
            db.close()
            raise
        logger.info("PostgresStore(%s): open", label)
        return store
