"""The mixer's metrics: frames in and out, what was dropped or ducked and why, its clock."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .jitter import DropReason

FRAMES_DROPPED = Counter(
    "voxrelay_mixer_frames_dropped_total",
    "Client audio frames not mixed: decode = malformed, unknown = no such session or client, "
    "stale = late/duplicate/too old, overflow = the client's jitter buffer was full, "
    "gap = never arrived (a hole in the client's sequence), catch_up = shed to take back "
    "delay (a buffer deeper than its target for a second, or a quiet frame waiting ahead of "
    "another while mixing on arrival)",
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
TICKS_SLEPT = Counter(
    "voxrelay_mixer_ticks_slept_total",
    "Mixer ticks not run because no session needed them (lone clients mixed as their "
    "frames arrive, quiet sessions): each is a wake-up the process was spared",
)

FRAMES_DUCKED = Counter(
    "voxrelay_mixer_frames_ducked_total",
    "Client frames attenuated before mixing because they carried the AI's own voice (echo)",
)
MODEL_FRAMES_DROPPED = Counter(
    "voxrelay_mixer_model_frames_dropped_total",
    "Model audio frames (aud/model, the echo reference) not used: decode = malformed, "
    "unknown = no such session, overflow = arrived faster than the mixer's clock",
    ["reason"],
)
ACTIVITY_CHANGES = Counter(
    "voxrelay_mixer_voice_activity_changes_total",
    "Clients starting or stopping to speak, as published in voice.activity events",
    ["active"],
)
TICK_SECONDS = Histogram(
    "voxrelay_mixer_tick_seconds",
    "CPU time of one session's 20 ms tick: jitter buffers, echo gating, activity, mix",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02),
)
