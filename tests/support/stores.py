"""The recorder's store on each backend, for tests: ``store_factory``, ["sqlite", "postgres"].

A test that asks for ``store_factory`` runs once on a SQLite file in its temp dir and
once on a PostgreSQL database of its own (``postgres.py``). The factory opens stores
there (``store_factory()``, as often as the test likes: they all see the same data),
names it for a recorder process (:attr:`StoreFactory.env`), and reads or writes it
directly, beside the store, with ``?`` placeholders on both backends. A test about
something else than storage pins one backend:
``@pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.recorder.postgres_store import PostgresStore, numbered
from services.recorder.sql_store import SqlStore
from services.recorder.sqlite_store import SqliteStore
from services.runtime import Secret

from .postgres import fetch

BACKENDS = ["sqlite", "postgres"]


@dataclass(frozen=True)
class StoreFactory:
    backend: str
    path: Path | None = None
    "The SQLite file."
    url: str = ""
    "The PostgreSQL database."

    def __call__(self) -> SqlStore:
        if self.path is not None:
            return SqliteStore.open(self.path)
        return PostgresStore.open(Secret(self.url), f"test database {self.url.rsplit('/', 1)[-1]}")

    @property
    def url_for_recorder(self) -> str:
        return f"sqlite://{self.path}" if self.path is not None else self.url

    @property
    def env(self) -> dict[str, str]:
        """What a recorder process needs to store here."""
        return {"VOXRELAY_DATABASE_URL": self.url_for_recorder}

    def query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement, outside any store (committed data only)."""
        if self.path is None:
            return fetch(self.url, numbered(sql), args)
        with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:
            return conn.execute(sql, args).fetchall()

    def __repr__(self) -> str:
        return f"StoreFactory({self.backend})"


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "postgres":
        return StoreFactory("postgres", url=request.getfixturevalue("postgres_database"))
    return StoreFactory("sqlite", path=tmp_path / "data" / "recorder.sqlite3")
