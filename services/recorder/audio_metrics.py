"""The recorder's audio metrics: what was written, what was not and why, what was removed."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DROP_REASONS = ("decode", "queue_full", "backwards", "late", "write_error", "file_full")

AUDIO_FRAMES_DROPPED = Counter(
    "voxrelay_recorder_audio_frames_dropped_total",
    "Audio frames of recorded sessions not written: decode = malformed, queue_full = the "
    "disk fell behind (the queue to the writer thread was full), backwards = a repeat or "
    "out of order, late = captured too long before its place in the file, write_error = "
    "the write failed (a full disk), file_full = the WAV file reached 4 GiB",
    ["reason"],
)
DROPPED = {reason: AUDIO_FRAMES_DROPPED.labels(reason) for reason in DROP_REASONS}
"Pre-initialised children, one per reason."

AUDIO_BYTES = Counter(
    "voxrelay_recorder_audio_bytes_total",
    "PCM bytes written to recorded WAV files (the silence that fills gaps included)",
)
AUDIO_STREAMS = Gauge("voxrelay_recorder_audio_streams", "WAV files being recorded now")
RECORDINGS_REMOVED = Counter(
    "voxrelay_recorder_recordings_removed_total",
    "Session recording folders removed by retention: age = older than "
    "VOXRELAY_RECORDINGS_MAX_AGE_DAYS, size = beyond VOXRELAY_RECORDINGS_MAX_BYTES",
    ["reason"],
)
for _reason in ("age", "size"):
    RECORDINGS_REMOVED.labels(_reason)
