"""Process-wide logging set-up: one line per record, to stderr."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | None = None) -> None:
    level = (level or os.environ.get("VOXRELAY_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=level, format=FORMAT)
    # aiortc and aioice log every packet-level event at INFO/DEBUG.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
