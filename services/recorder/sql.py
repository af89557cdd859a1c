"""What the recorder's SQL needs from a database: a synchronous :class:`Connection` and
its :class:`Dialect`.

The store's logic (``sql_store.py``) and the schema migrations (``migrations.py``) are
written once, against this small interface, in portable SQL with ``?`` placeholders;
each backend (``sqlite_store.py``, ``postgres_store.py``) adapts its driver to it. What
cannot be spelled portably is a field of :class:`Dialect` (the column types of the DDL,
the two-argument maximum) or up to the connection (how a migration shuts out a second
recorder: :meth:`Connection.begin` with ``exclusive``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Row = tuple[Any, ...]


class Connection(Protocol):
    """One open database connection, used from one thread at a time.

    Statements use ``?`` placeholders. ``begin``/``commit``/``rollback`` bracket a
    transaction; outside one every statement commits by itself.
    """

    errors: tuple[type[BaseException], ...]
    "What a failing statement (a bad row, a lost server) raises."

    def execute(self, sql: str, args: Sequence[object] = ()) -> int:
        """Run a statement; returns how many rows it inserted, updated or deleted."""

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one statement for each row, in order (in one round trip where the driver can)."""

    def fetchone(self, sql: str, args: Sequence[object] = ()) -> Row | None: ...

    def fetchall(self, sql: str, args: Sequence[object] = ()) -> list[Row]: ...

    def begin(self, exclusive: bool = False) -> None:
        """Open a transaction; ``exclusive``: one that no other recorder using the same
        database can hold at the same time (schema migrations)."""

    def commit(self) -> None: ...

    def rollback(self) -> None:
        """Roll back the transaction in progress, if any; never raises."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Dialect:
    name: str
    types: Mapping[str, str]
    """DDL column types by the placeholder the migrations use: ``{id}`` (an increasing
    row id, the primary key), ``{int}`` (64-bit), ``{real}`` (double)."""
    greatest: str
    "The function giving the larger of two values (SQLite's two-argument MAX)."

    def ddl(self, template: str) -> str:
        return template.format_map(self.types)


SQLITE = Dialect(
    name="sqlite",
    types={"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "int": "INTEGER", "real": "REAL"},
    greatest="MAX",
)

POSTGRES = Dialect(
    name="postgres",
    types={"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "int": "BIGINT",
           "real": "DOUBLE PRECISION"},
    greatest="GREATEST",
)
