"""The edge's metrics: audio frames through it, and what it dropped and why."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

FRAMES = Counter("voxrelay_edge_frames_total",
                 "20 ms audio frames: in = browser mic published on aud/in, "
                 "out = model audio played to a browser", ["direction"])
FRAMES_DROPPED = Counter("voxrelay_edge_frames_dropped_total",
                         "Audio frames dropped: hwm = publish queue full, decode = unusable "
                         "frame, stale = a client's playout queue overflowed", ["reason"])
CHANNEL_DROPPED = Counter("voxrelay_edge_channel_messages_dropped_total",
                          "DataChannel messages dropped: oversized, malformed, backlog",
                          ["reason"])
CLIENTS = Gauge("voxrelay_edge_clients", "Browser peers connected to this edge")

FRAMES_IN = FRAMES.labels("in")
FRAMES_OUT = FRAMES.labels("out")
DROPPED_HWM = FRAMES_DROPPED.labels("hwm")
DROPPED_DECODE = FRAMES_DROPPED.labels("decode")
DROPPED_STALE = FRAMES_DROPPED.labels("stale")
