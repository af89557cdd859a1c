"""recorder configuration: the common service settings plus ``VOXRELAY_RECORDER_*``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime import ConfigError, Secret, env_int, env_str
from services.runtime.service import ServiceConfig, service_config

from .audio_config import RecordingConfig, recording_config
from .database import Database, parse_database_url

DB_FILENAME = "recorder.sqlite3"
DEFAULT_FLUSH_MS = 50
MAX_FLUSH_MS = 60_000
DEFAULT_MAX_PENDING = 200_000


@dataclass(frozen=True)
class RecorderConfig:
    service: ServiceConfig
    flush_interval_s: float = DEFAULT_FLUSH_MS / 1000
    "How long an event may wait in memory before its batch is committed."
    max_pending: int = DEFAULT_MAX_PENDING
    "Events held in memory while the database is slow; beyond this they are dropped and counted."
    database_url: Secret | None = None
    "``VOXRELAY_DATABASE_URL``: None for SQLite at :attr:`db_path`, else see ``database.py``."
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    "Which sessions' audio is recorded, where, and for how long (``audio_config.py``)."

    def __post_init__(self) -> None:
        _ = self.database  # a bad URL fails here, at start
        if not 0 < self.flush_interval_s <= MAX_FLUSH_MS / 1000:
            flush_ms = self.flush_interval_s * 1000
            raise ConfigError("VOXRELAY_RECORDER_FLUSH_MS",
                              f"must be in 1..{MAX_FLUSH_MS} (got {flush_ms:g})")
        if self.max_pending < 1:
            raise ConfigError("VOXRELAY_RECORDER_MAX_PENDING",
                              f"must be >= 1 (got {self.max_pending})")

    @property
    def db_path(self) -> Path:
        return self.service.data_dir / DB_FILENAME

    @property
    def database(self) -> Database:
        """Where the recorder stores: SQLite at :attr:`db_path` unless a URL says otherwise."""
        url = self.database_url.reveal() if self.database_url else ""
        return parse_database_url(url, self.db_path)


def from_env(env: Mapping[str, str] | None = None) -> RecorderConfig:
    """``VOXRELAY_DATA_DIR`` (where ``recorder.sqlite3`` lives), ``VOXRELAY_RECORDER_FLUSH_MS``,
    ``VOXRELAY_RECORDER_MAX_PENDING``, ``VOXRELAY_DATABASE_URL`` and the common service
    settings."""
    return RecorderConfig(
        service=service_config("recorder", env),
        flush_interval_s=env_int("VOXRELAY_RECORDER_FLUSH_MS", DEFAULT_FLUSH_MS, env,
                                 minimum=1, maximum=MAX_FLUSH_MS) / 1000,
        max_pending=env_int("VOXRELAY_RECORDER_MAX_PENDING", DEFAULT_MAX_PENDING, env, minimum=1),
        database_url=Secret(env_str("VOXRELAY_DATABASE_URL", "", env)) or None,
        recording=recording_config(env),
    )
