"""The recorder's schema, as numbered migrations recorded in ``schema_version``.

One list serves both backends: each statement is a template whose column types
(``{id}``, ``{int}``, ``{real}``) the :class:`~.sql.Dialect` fills in — SQLite's
``INTEGER PRIMARY KEY AUTOINCREMENT`` / ``INTEGER`` / ``REAL``, PostgreSQL's identity
``BIGINT`` / ``BIGINT`` / ``DOUBLE PRECISION`` — so a SQLite file and a PostgreSQL
database at the same version have the same tables, columns and indexes.

Each migration's statements are applied in one transaction together with the row that
records its version, so a database is always at exactly one known version. Later
versions append to :data:`MIGRATIONS` (``ALTER TABLE … ADD COLUMN`` with a default, new
tables, new indexes); a migration is never edited once released. Two recorders opening
one new database cannot both apply them: the transaction starts with SQLite's write lock
(``BEGIN IMMEDIATE``) or PostgreSQL's advisory lock (``pg_advisory_xact_lock``), and the
second one, once let in, finds the work done.
"""

from __future__ import annotations

import logging
import time

from .sql import Connection, Dialect

logger = logging.getLogger(__name__)

SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at {real} NOT NULL
)"""

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        """CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            instructions TEXT NOT NULL DEFAULT '',
            voice TEXT NOT NULL DEFAULT '',
            record INTEGER NOT NULL DEFAULT 0,
            created_at {real},
            ended_at {real},
            end_reason TEXT
        )""",
        """CREATE TABLE events (
            id {id},
            session_id TEXT NOT NULL,
            type TEXT NOT NULL,
            producer TEXT NOT NULL,
            seq {int} NOT NULL,
            ts {real} NOT NULL,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX events_by_session ON events (session_id, id)",
        """CREATE TABLE transcript (
            id {id},
            session_id TEXT NOT NULL,
            turn_id TEXT NOT NULL,
            role TEXT NOT NULL,
            speaker TEXT NOT NULL,
            text TEXT NOT NULL,
            started_at {real} NOT NULL,
            ended_at {real} NOT NULL,
            UNIQUE (session_id, turn_id)
        )""",
        "CREATE INDEX transcript_by_session ON transcript (session_id, started_at, id)",
    )),
    (2, (  # gap fills: one row per (producer, epoch, seq); marks over events lost for good
        "ALTER TABLE events ADD COLUMN epoch {int} NOT NULL DEFAULT 0",
        "CREATE UNIQUE INDEX events_by_stream ON events (producer, epoch, seq) WHERE epoch > 0",
        """CREATE TABLE streams (
            producer TEXT NOT NULL,
            epoch {int} NOT NULL,
            contiguous {int} NOT NULL,
            lost {int} NOT NULL DEFAULT 0,
            PRIMARY KEY (producer, epoch)
        )""",
    )),
    (3, (  # the sessions listing, newest first
        "CREATE INDEX sessions_by_created_at ON sessions (created_at)",
    )),
    (4, (  # tenants: every row says whose it is; a tenant's listing, newest first
        "ALTER TABLE sessions ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default'",
        "ALTER TABLE events ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default'",
        "ALTER TABLE transcript ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default'",
        "CREATE INDEX sessions_by_tenant ON sessions (tenant_id, created_at)",
    )),
)

LATEST_VERSION = MIGRATIONS[-1][0]


class SchemaError(RuntimeError):
    """The database was written by a newer recorder than this one."""


def current_version(db: Connection, dialect: Dialect) -> int:
    db.execute(dialect.ddl(SCHEMA_VERSION_TABLE))
    row = db.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    return int(row[0]) if row else 0


def migrate(db: Connection, dialect: Dialect) -> int:
    """Bring the schema to :data:`LATEST_VERSION`; returns the version found before.

    The pending migrations run in one exclusive transaction (which holds off any other
    recorder migrating the same database), so a failure leaves the old version intact.
    """
    db.begin(exclusive=True)
    try:
        found = current_version(db, dialect)
        if found > LATEST_VERSION:
            raise SchemaError(f"database schema version {found} is newer than this recorder's "
                              f"({LATEST_VERSION}); upgrade voxrelay")
        for version, statements in MIGRATIONS:
            if version <= found:
                continue
            for statement in statements:
                db.execute(dialect.ddl(statement))
            db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                       (version, time.time()))
            logger.info("recorder schema (%s) migrated to version %d", dialect.name, version)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return found
