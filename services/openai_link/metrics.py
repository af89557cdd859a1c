"""The link's Prometheus metrics (no session ids as labels)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
