"""Signaling's metrics: HTTP requests, and the sessions and clients it knows of."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from .conductor import Conductor

REQUESTS = Counter("voxrelay_http_requests_total", "HTTP API requests", ["route", "status"])
SESSIONS = Gauge("voxrelay_sessions", "Live sessions")
CLIENTS = Gauge("voxrelay_clients", "Clients of live sessions whose media is connected")
FALLBACKS = Counter(
    "voxrelay_fallbacks_total",
    "Switches to a fallback transport: browser_websocket (a browser's WebRTC failed and it "
    "streams PCM over signaling's WebSocket)",
    ["kind"],
)
FALLBACKS.labels("browser_websocket")


def watch(conductor: Conductor) -> None:
    """Read the session and client gauges from ``conductor`` at each scrape."""
    SESSIONS.set_function(lambda: len(conductor.sessions))
    CLIENTS.set_function(lambda: sum(
        client.connected for session in conductor.sessions.values()
        for client in session.clients.values()))
WS_FRAMES = Counter("voxrelay_ws_frames_total",
                    "20 ms audio frames carried for WebSocket clients", ["direction"])
WS_DROPPED = Counter(
    "voxrelay_ws_messages_dropped_total",
    "WebSocket client messages dropped: size (binary not a multiple of 10 ms up to 200 ms), "
    "ahead (microphone audio over 2 s ahead of real time), rate (text over the socket's "
    "limit), invalid (text that is no known request), oversized (over 64 KiB: the socket is "
    "closed), protocol (a WebSocket protocol error: the socket is closed), backlog (model "
    "audio the socket could not take), hwm (microphone audio the bus refused)",
    ["reason"],
)
WS_DROPPED_AHEAD = WS_DROPPED.labels("ahead")
WS_DROPPED_RATE = WS_DROPPED.labels("rate")
