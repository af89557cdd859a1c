"""Retention of recordings: whole session folders, oldest first, never one being recorded.
Real folders and files in a temporary directory, their ages set on the files."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prometheus_client import REGISTRY

from proto.ids import new_id
from services.recorder.retention import scan, sweep

DAY_S = 86_400.0
NOW = time.time()


def removed(reason: str) -> float:
    return REGISTRY.get_sample_value("voxrelay_recorder_recordings_removed_total",
                                     {"reason": reason}) or 0.0


def session_folder(root: Path, days_ago: float, size: int = 1000,
                   name: str | None = None) -> Path:
    """A recorded session last written ``days_ago``, its files ``size`` bytes in all."""
    folder = root / (name or new_id())
    folder.mkdir(parents=True)
    files = {"mix.wav": size // 2, "model.wav": size - size // 2 - 10, "index.json": 10}
    when = NOW - days_ago * DAY_S
    for file, length in files.items():
        (folder / file).write_bytes(bytes(length))
        os.utime(folder / file, (when, when))
    os.utime(folder, (when, when))
    return folder


def remaining(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def test_recordings_older_than_the_age_limit_are_removed(tmp_path):
    old, older = session_folder(tmp_path, 31), session_folder(tmp_path, 400)
    recent = session_folder(tmp_path, 29)
    before = removed("age")
    done = sweep(tmp_path, max_age_s=30 * DAY_S, max_bytes=0, active=(), clock=lambda: NOW)
    assert [r.folder.path for r in done] == [older, old]  # oldest first
    assert {r.reason for r in done} == {"age"}
    assert remaining(tmp_path) == {recent.name}
    assert removed("age") - before == 2


def test_beyond_the_size_limit_the_oldest_go_until_the_rest_fit(tmp_path):
    folders = [session_folder(tmp_path, days, size=1000) for days in (5, 4, 3, 2, 1)]
    before = removed("size")
    done = sweep(tmp_path, max_age_s=None, max_bytes=2500, active=(), clock=lambda: NOW)
    assert [r.folder.path for r in done] == folders[:3]
    assert {r.reason for r in done} == {"size"}
    assert remaining(tmp_path) == {f.name for f in folders[3:]}
    assert removed("size") - before == 3
    assert sum(f.size for f in scan(tmp_path)) <= 2500


def test_a_session_being_recorded_is_never_removed(tmp_path):
    """Neither one this recorder records (however old its files look), nor one another
    recorder wrote to a moment ago."""
    recording = session_folder(tmp_path, 100, size=5000)
    just_written = session_folder(tmp_path, 10 / DAY_S, size=5000)
    ended = session_folder(tmp_path, 100, size=5000)
    done = sweep(tmp_path, max_age_s=30 * DAY_S, max_bytes=1, active={recording.name},
                 clock=lambda: NOW)
    assert [r.folder.path for r in done] == [ended]
    assert remaining(tmp_path) == {recording.name, just_written.name}


def test_without_limits_and_outside_session_folders_nothing_is_touched(tmp_path):
    ancient = session_folder(tmp_path, 1000, size=10**6)
    other = session_folder(tmp_path, 1000, name="notes")  # not a session id: not ours
    assert sweep(tmp_path, max_age_s=None, max_bytes=0, active=(), clock=lambda: NOW) == []
    assert remaining(tmp_path) == {ancient.name, other.name}
    sweep(tmp_path, max_age_s=DAY_S, max_bytes=1, active=(), clock=lambda: NOW)
    assert remaining(tmp_path) == {other.name}
    assert sweep(tmp_path / "missing", max_age_s=DAY_S, max_bytes=1, active=()) == []
