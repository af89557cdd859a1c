"""recorder: every bus event stored durably (SQLite, or PostgreSQL by URL), transcripts,
recorded sessions, and their RPCs."""

from .config import RecorderConfig, from_env
from .database import Database, parse_database_url
from .postgres_store import PostgresStore
from .recorder import Recorder, main
from .sqlite_store import SqliteStore
from .store import CloseSession, OpenSession, Store, StoreError
from .writer import BatchWriter

__all__ = [
    "BatchWriter",
    "CloseSession",
    "Database",
    "OpenSession",
    "PostgresStore",
    "Recorder",
    "RecorderConfig",
    "SqliteStore",
    "Store",
    "StoreError",
    "from_env",
    "main",
    "parse_database_url",
]
