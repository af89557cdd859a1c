"""Where recorded audio lives, and what its files are called: one contract, two services.

The recorder writes a session's audio and signaling serves it, from the same directory:

    <VOXRELAY_RECORDINGS_DIR, default <VOXRELAY_DATA_DIR>/recordings>/
        <session_id>/
            index.json          what is there, and when each file's sample 0 was captured
            mix.wav             the mix the model heard
            model.wav           the model's voice
            client-<client_id>.wav   one client's microphone

Every WAV file is PCM16, mono, 24 kHz. ``index.json`` is
``{"session_id", "streams": [{"file", "kind", "client_id"?, "client_name"?, "started_at",
"sample_rate", "channels", "frames", "duration_s", "gaps_filled_ms", "frames_dropped"}]}``;
sample N of a file was captured at ``started_at + N / sample_rate`` (epoch seconds), the
clock of the events' ``ts``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from .config import env_str

RECORDINGS_SUBDIR = "recordings"
INDEX_FILE = "index.json"
MIX_FILE = "mix.wav"
MODEL_FILE = "model.wav"
FILE_NAME = re.compile(r"^(mix|model|client-[0-9a-f]{32})\.wav$")
"Every name a recorded audio file can have."


def recordings_dir(env: Mapping[str, str] | None = None) -> Path:
    """``VOXRELAY_RECORDINGS_DIR``, by default ``recordings`` in ``VOXRELAY_DATA_DIR``."""
    configured = env_str("VOXRELAY_RECORDINGS_DIR", "", env)
    if configured:
        return Path(configured)
    return Path(env_str("VOXRELAY_DATA_DIR", "./data", env)) / RECORDINGS_SUBDIR


def client_file(client_id: str) -> str:
    return f"client-{client_id}.wav"
