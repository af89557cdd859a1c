"""The recorder's schema, as numbered migrations recorded in ``schema_version``.

Each migration is a tuple of statements applied in a transaction together with the
row that records its version, so a database is always at exactly one known version.
Later versions append to :data:`MIGRATIONS` (``ALTER TABLE … ADD COLUMN`` with a
default, new tables, new indexes); a migration is never edited once released.

The DML elsewhere is portable SQL. The DDL here is SQLite's (``INTEGER PRIMARY KEY
AUTOINCREMENT``, ``REAL``); a PostgreSQL store will carry the same migrations spelled
with ``BIGSERIAL`` and ``DOUBLE PRECISION``.
"""

from __future__ import annotations

import logging
import sqlite3
import time

logger = logging.getLogger(__name__)

SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at REAL NOT NULL
)"""

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        """CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            instructions TEXT NOT NULL DEFAULT '',
            voice TEXT NOT NULL DEFAULT '',
            record INTEGER NOT NULL DEFAULT 0,
            created_at REAL,
            ended_at REAL,
            end_reason TEXT
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            type TEXT NOT NULL,
            producer TEXT NOT NULL,
            seq INTEGER NOT NULL,
            ts REAL NOT NULL,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX events_by_session ON events (session_id, id)",
        """CREATE TABLE transcript (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            turn_id TEXT NOT NULL,
            role TEXT NOT NULL,
            speaker TEXT NOT NULL,
            text TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL NOT NULL,
            UNIQUE (session_id, turn_id)
        )""",
        "CREATE INDEX transcript_by_session ON transcript (session_id, started_at, id)",
    )),
    (2, (  # gap fills: one row per (producer, epoch, seq); marks over events lost for good
        "ALTER TABLE events ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0",
        "CREATE UNIQUE INDEX events_by_stream ON events (producer, epoch, seq) WHERE epoch > 0",
        """CREATE TABLE streams (
            producer TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            contiguous INTEGER NOT NULL,
            lost INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (producer, epoch)
        )""",
    )),
)

LATEST_VERSION = MIGRATIONS[-1][0]


class SchemaError(RuntimeError):
    """The database was written by a newer recorder than this one."""


def current_version(conn: sqlite3.Connection) -> int:
    conn.execute(SCHEMA_VERSION_TABLE)
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(version)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to :data:`LATEST_VERSION`; returns the version found before.

    ``conn`` must be in autocommit mode (``isolation_level=None``): the pending
    migrations run in one ``BEGIN IMMEDIATE`` … ``COMMIT``, so two recorders opening
    one new file cannot both apply them, and a failure leaves the old version intact.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = current_version(conn)
        if found > LATEST_VERSION:
            raise SchemaError(f"database schema version {found} is newer than this recorder's "
                              f"({LATEST_VERSION}); upgrade voxrelay")
        for version, statements in MIGRATIONS:
            if version <= found:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                         (version, time.time()))
            logger.info("recorder schema migrated to version %d", version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
