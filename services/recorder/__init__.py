"""recorder: every bus event stored durably (SQLite), transcripts, and their RPCs."""

from .config import RecorderConfig, from_env
from .recorder import Recorder, main
from .store import CloseSession, OpenSession, SqliteStore, Store, StoreError
from .writer import BatchWriter

__all__ = [
    "BatchWriter",
    "CloseSession",
    "OpenSession",
    "Recorder",
    "RecorderConfig",
    "SqliteStore",
    "Store",
    "StoreError",
    "from_env",
    "main",
]
