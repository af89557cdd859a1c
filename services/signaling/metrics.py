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
