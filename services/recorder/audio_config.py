"""Audio recording settings: which sessions, where, and for how long they are kept.

``VOXRELAY_RECORD_AUDIO``             ``session`` (default): sessions created with
                                      ``"record": true``; ``all``: every session; ``off``
``VOXRELAY_RECORDINGS_DIR``           default ``<VOXRELAY_DATA_DIR>/recordings``
``VOXRELAY_RECORDINGS_MAX_AGE_DAYS``  recordings of ended sessions older than this are
                                      removed (default 30; 0 = kept forever)
``VOXRELAY_RECORDINGS_MAX_BYTES``     beyond this in all, the oldest are removed (default
                                      0 = no limit)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.runtime import ConfigError, env_float, env_int, env_str
from services.runtime.recordings import RECORDINGS_SUBDIR, recordings_dir

DEFAULT_MAX_AGE_DAYS = 30.0
DAY_S = 86_400.0


class RecordMode(enum.Enum):
    OFF = "off"
    SESSION = "session"
    ALL = "all"


@dataclass(frozen=True)
class RecordingConfig:
    mode: RecordMode = RecordMode.SESSION
    directory: Path = Path("./data") / RECORDINGS_SUBDIR
    max_age_days: float = DEFAULT_MAX_AGE_DAYS
    "0: recordings are kept however old they are."
    max_bytes: int = 0
    "0: no limit on the recordings' total size."

    def __post_init__(self) -> None:
        if self.max_age_days < 0:
            raise ConfigError("VOXRELAY_RECORDINGS_MAX_AGE_DAYS",
                              f"must be >= 0 (got {self.max_age_days})")
        if self.max_bytes < 0:
            raise ConfigError("VOXRELAY_RECORDINGS_MAX_BYTES",
                              f"must be >= 0 (got {self.max_bytes})")

    @property
    def max_age_s(self) -> float | None:
        return self.max_age_days * DAY_S if self.max_age_days else None

    def records(self, requested: bool) -> bool:
        """Whether a session created with ``record`` = ``requested`` has its audio recorded."""
        return self.mode is RecordMode.ALL or (self.mode is RecordMode.SESSION and requested)


def recording_config(env: Mapping[str, str] | None = None) -> RecordingConfig:
    raw_mode = env_str("VOXRELAY_RECORD_AUDIO", RecordMode.SESSION.value, env).strip().lower()
    try:
        mode = RecordMode(raw_mode or RecordMode.SESSION.value)
    except ValueError as e:
        choices = ", ".join(m.value for m in RecordMode)
        raise ConfigError("VOXRELAY_RECORD_AUDIO",
                          f"must be one of {choices} (got {raw_mode!r})") from e
    return RecordingConfig(
        mode=mode,
        directory=recordings_dir(env),
        max_age_days=env_float("VOXRELAY_RECORDINGS_MAX_AGE_DAYS", DEFAULT_MAX_AGE_DAYS, env,
                               minimum=0.0),
        max_bytes=env_int("VOXRELAY_RECORDINGS_MAX_BYTES", 0, env, minimum=0),
    )
