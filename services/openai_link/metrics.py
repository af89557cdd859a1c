"""The link's Prometheus metrics (no session ids as labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FRAMES = Counter(
    "voxrelay_link_frames_total",
    "20 ms audio frames through the link: 'uplink' (aud/mix to the model), "
    "'downlink' (the model's voice to aud/model)",
    ["direction"],
)
FRAMES_DROPPED = Counter(
    "voxrelay_link_frames_dropped_total",
    "Audio frames the link dropped, by reason",
    ["reason"],
)
FRAMES_UPLINK = FRAMES.labels("uplink")
FRAMES_DOWNLINK = FRAMES.labels("downlink")
"Bound once: ``labels()`` takes a lock and a lookup, too much for every frame."
REALTIME_EVENTS_IGNORED = Counter(
    "voxrelay_link_realtime_events_ignored_total",
    "Realtime server events not translated: 'unknown_type' (recorded only) or 'malformed' "
    "(dropped)",
    ["reason"],
)
CONNECTS = Counter(
    "voxrelay_link_realtime_connects_total",
    "Attempts to open a Realtime connection, by result ('ok' or 'unavailable')",
    ["result"],
)
CONNECT_SECONDS = Histogram(
    "voxrelay_link_realtime_connect_seconds",
    "From the offer to session.updated, for connections that became usable",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
)
DISCONNECTS = Counter(
    "voxrelay_link_realtime_disconnects_total",
    "Realtime connections that ended without the link closing them",
)
ROLLOVERS = Counter(
    "voxrelay_link_realtime_rollovers_total",
    "Calls replaced before the API's session cap, by how: 'quiet' (at a quiet moment), "
    "'forced' (no quiet moment came in time) or 'failed' (the new call could not be "
    "opened; the old one carries on)",
    ["result"],
)
RECONNECTS = Counter(
    "voxrelay_link_realtime_reconnects_total",
    "Attempts to reopen a dropped Realtime connection by itself, by result: 'ok', "
    "'failed' (another attempt follows) or 'gave_up' (the outage's last attempt failed)",
    ["result"],
)
TIME_TO_FIRST_AUDIO = Histogram(
    "voxrelay_realtime_time_to_first_audio_seconds",
    "Realtime API: speech stopped (or response.create) to the reply's first audible frame "
    "at the link",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
)
REALTIME_ERRORS = Counter(
    "voxrelay_link_realtime_errors_total",
    "Error events from the Realtime API, by code (codes beyond the first 32 seen: 'other')",
    ["code"],
)
FALLBACKS = Counter(
    "voxrelay_fallbacks_total",
    "Switches to a fallback transport: realtime_websocket (the link's WebRTC to the "
    "Realtime API failed)",
    ["kind"],
)
SESSIONS = Gauge("voxrelay_link_sessions", "Conversations this link holds")

FALLBACKS.labels("realtime_websocket")
for _result in ("ok", "failed", "gave_up"):
    RECONNECTS.labels(_result)
MAX_ERROR_CODES = 32
_error_codes: set[str] = set()


def count_realtime_error(code: str) -> None:
    """Count one Realtime error; the label set stays bounded whatever the server sends."""
    if code not in _error_codes and len(_error_codes) < MAX_ERROR_CODES and \
            code.replace("_", "").isalnum() and len(code) <= 64:
        _error_codes.add(code)
    REALTIME_ERRORS.labels(code if code in _error_codes else "other").inc()
TOOL_CALLS = Counter(
    "voxrelay_link_tool_calls_total",
    "Tool calls the model made, by outcome: ok, error, timeout, cancelled (barge-in), "
    "unknown (no such tool)",
    ["status"],
)
TOOL_SECONDS = Histogram(
    "voxrelay_link_tool_seconds",
    "How long a tool call ran, from the model's call to its result",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
