"""The mixer's metrics: frames in and out, what was dropped and why, and its clock."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .jitter import DropReason

FRAMES_DROPPED = Counter(
    "voxrelay_mixer_frames_dropped_total",
    "Client audio frames not mixed: decode = malformed, unknown = no such session or client, "
    "stale = late/duplicate/too old, overflow = the client's jitter buffer was full",
    ["reason"],
)
DROPPED = {reason: FRAMES_DROPPED.labels(reason.value) for reason in DropReason}
"Pre-initialised children, one per reason (the per-frame path uses these)."

FRAMES_MIXED = Counter("voxrelay_mixer_frames_total", "20 ms mix frames published on aud/mix")
SESSIONS = Gauge("voxrelay_mixer_sessions", "Sessions this mixer is mixing")

TICK_LATENESS = Histogram(
    "voxrelay_mixer_tick_lateness_seconds",
    "How late each 20 ms mixer tick ran against its schedule",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.1),
)
TICKS_SKIPPED = Counter("voxrelay_mixer_ticks_skipped_total",
                        "Mixer ticks skipped because the event loop fell several ticks behind")
