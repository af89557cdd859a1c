"""Which database the recorder stores in: ``VOXRELAY_DATABASE_URL``.

- unset or empty: SQLite at ``<data_dir>/recorder.sqlite3`` (the default);
- ``sqlite:///path/to/file``: SQLite at that (absolute) path;
- ``postgresql://user:password@host:port/database`` (or ``postgres://``, with asyncpg's
  query options such as ``?sslmode=require``): PostgreSQL.

Anything else is a :class:`~services.runtime.ConfigError` at start. The URL is kept as a
:class:`~services.runtime.Secret`; what is logged is :func:`masked`, without the password.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from services.runtime import ConfigError, Secret

from .postgres_store import PostgresStore
from .sqlite_store import SqliteStore
from .store import Store

KEY = "VOXRELAY_DATABASE_URL"
POSTGRES_SCHEMES = ("postgresql", "postgres")
SECRET_OPTIONS = ("password", "passfile", "sslpassword")
"Query options of a PostgreSQL URL that are masked in log lines, as the password is."
MASK = "***"


@dataclass(frozen=True)
class Database:
    """A SQLite file or a PostgreSQL server; ``str()`` of it never shows a password."""

    kind: Literal["sqlite", "postgres"]
    path: Path | None = None
    "The SQLite file."
    url: Secret | None = None
    "The PostgreSQL URL, password included."
    shown: str = ""
    "The PostgreSQL URL with its password masked."

    def __str__(self) -> str:
        return str(self.path) if self.kind == "sqlite" else self.shown

    def open(self) -> Store:
        """Open the store (on the thread that will own it) and migrate its schema."""
        if self.kind == "sqlite":
            assert self.path is not None
            return SqliteStore.open(self.path)
        assert self.url is not None
        return PostgresStore.open(self.url, self.shown)


def parse_database_url(value: str, default_path: Path) -> Database:
    """The database ``VOXRELAY_DATABASE_URL=value`` names (raises ConfigError naming it)."""
    value = value.strip()
    if not value:
        return Database("sqlite", path=default_path)
    try:
        parts = urlsplit(value)
        _ = parts.port  # urlsplit checks the port only when asked
    except ValueError as e:
        raise ConfigError(KEY, f"not a valid URL ({e}): {masked(value)}") from e
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path or parts.path == "/" or parts.query:
            raise ConfigError(KEY, f"a SQLite URL is sqlite:///absolute/path (got {value!r})")
        return Database("sqlite", path=Path(parts.path))
    if parts.scheme in POSTGRES_SCHEMES:
        if not parts.hostname and "host" not in dict(parse_qsl(parts.query)):
            raise ConfigError(KEY, f"a PostgreSQL URL names its server: postgresql://user:"
                              f"password@host:port/database (got {masked(value)})")
        return Database("postgres", url=Secret(value), shown=masked(value))
    raise ConfigError(KEY, "must be postgresql://user:password@host:port/database or "
                      f"sqlite:///path (got {masked(value)})")


def masked(url: str) -> str:
    """``url`` with its password (in the authority or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"<an unreadable URL of {len(url)} characters>"
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{host}"
    query = "&".join(f"{k}={MASK if k in SECRET_OPTIONS else v}"
                     for k, v in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
