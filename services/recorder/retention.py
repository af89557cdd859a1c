"""How long recordings are kept: whole session folders removed, oldest first.

A sweep (at the recorder's start, then every :data:`SWEEP_INTERVAL_S`) looks at every
session folder in the recordings directory. A folder's age is that of its newest file
(when its session last recorded anything). Folders older than the age limit go; then, if
all of them together still exceed the size limit, the oldest go until the rest fit. A
folder is never removed while its session is being recorded — neither one this recorder
is recording, nor one written to within :data:`ACTIVE_WITHIN_S` (another recorder may be
recording it). What is removed is logged and counted.

Runs on a worker thread (``asyncio.to_thread``): listing and deleting many files takes
time the event loop does not have.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from proto.ids import is_id

from .audio_metrics import RECORDINGS_REMOVED

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 300.0
ACTIVE_WITHIN_S = 60.0
"A folder written to this recently is taken to be recorded now."


@dataclass(frozen=True)
class Folder:
    path: Path
    session_id: str
    last_written: float
    "Unix time of its newest file."
    size: int
    "Bytes of its files."


@dataclass(frozen=True)
class Removed:
    folder: Folder
    reason: str
    "'age' or 'size'."


def scan(root: Path) -> list[Folder]:
    """Every session folder under ``root`` (named by a session id), oldest first."""
    found = []
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return []
    for path in entries:
        if not path.is_dir() or not is_id(path.name):
            continue
        try:
            stats = [f.stat() for f in path.iterdir() if f.is_file()]
            last = max((s.st_mtime for s in stats), default=path.stat().st_mtime)
        except OSError as e:  # removed meanwhile, or unreadable: not ours to judge now
            logger.debug("retention: skipped %s: %s", path, e)
            continue
        found.append(Folder(path, path.name, last, sum(s.st_size for s in stats)))
    found.sort(key=lambda f: (f.last_written, f.session_id))
    return found


def due(folders: list[Folder], *, max_age_s: float | None, max_bytes: int,
        active: Collection[str], now: float) -> list[Removed]:
    """Which of ``folders`` (oldest first) the limits remove; never an active one."""
    removed: list[Removed] = []
    kept: list[Folder] = []
    for folder in folders:
        recording = folder.session_id in active or now - folder.last_written < ACTIVE_WITHIN_S
        if not recording and max_age_s is not None and now - folder.last_written > max_age_s:
            removed.append(Removed(folder, "age"))
        else:
            kept.append(folder)
    if max_bytes:
        total = sum(f.size for f in kept)
        for folder in kept:
            if total <= max_bytes:
                break
            if folder.session_id in active or now - folder.last_written < ACTIVE_WITHIN_S:
                continue
            removed.append(Removed(folder, "size"))
            total -= folder.size
    return removed


def sweep(root: Path, *, max_age_s: float | None, max_bytes: int, active: Collection[str],
          clock: Callable[[], float] = time.time) -> list[Removed]:
    """Remove what the limits say must go; returns what was removed."""
    if max_age_s is None and not max_bytes:
        return []
    folders = scan(root)
    done = []
    for removal in due(folders, max_age_s=max_age_s, max_bytes=max_bytes, active=active,
                       now=clock()):
        folder = removal.folder
        try:
            shutil.rmtree(folder.path)
        except OSError as e:
            logger.warning("retention: cannot remove %s: %s", folder.path, e)
            continue
        RECORDINGS_REMOVED.labels(removal.reason).inc()
        logger.info("retention: removed the recording of session %s (%d bytes, last written "
                    "%s; %s limit)", folder.session_id, folder.size,
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(folder.last_written)),
                    removal.reason, extra={"session_id": folder.session_id})
        done.append(removal)
    return done
