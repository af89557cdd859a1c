"""The ``events`` DataChannel a browser opens: events out, its few requests in.

Out: client-facing bus events as ``{"type", "ts", "payload"}`` JSON
(``events.to_client_json``), dropped (and counted ``backlog``) while the channel is
not draining. In:

- ``latency.ping`` — ``{"type": "latency.ping", "ts": <client ms>, "payload": {"ping_id":
  …}}`` — answered at once with ``{"type": "latency.pong", "ts": <server unix seconds>,
  "payload": {"ping_id": …, "client_ts": <the ping's ts>}}`` so the browser can measure
  the round trip;
- ``client.mute`` — ``{"type": "client.mute", "ts": …, "payload": {"muted": true|false}}``
  — handed to ``on_mute``: the edge stops (or resumes) publishing the microphone.

Anything oversized, not JSON, or not a known request is dropped and counted; it never
closes the channel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import assert_never

import msgspec
from aiortc import RTCDataChannel

from .metrics import CHANNEL_DROPPED

logger = logging.getLogger(__name__)

LABEL = "events"
MAX_MESSAGE_BYTES = 16 * 1024
"A browser message larger than this is dropped unread."
MAX_BACKLOG_BYTES = 1024 * 1024
"Outgoing bytes aiortc may hold for one channel before further events are dropped."


class PingPayload(msgspec.Struct, frozen=True):
    ping_id: str | int


class MutePayload(msgspec.Struct, frozen=True):
    muted: bool


class Request(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    ts: float | None = None
    "The browser's clock when it sent the request (ms)."


class LatencyPing(Request, tag="latency.ping"):
    payload: PingPayload


class ClientMute(Request, tag="client.mute"):
    payload: MutePayload


ClientMessage = LatencyPing | ClientMute
"Everything a browser may send on the channel."


class LatencyPong(msgspec.Struct, frozen=True):
    ping_id: str | int
    client_ts: float | None


class Outgoing(msgspec.Struct, frozen=True):
    type: str
    ts: float
    payload: LatencyPong


class BadMessage(ValueError):
    """A browser message the edge cannot use; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


def decode(message: str | bytes) -> ClientMessage:
    """Check and decode one browser message; raises BadMessage."""
    data = message.encode() if isinstance(message, str) else message
    if len(data) > MAX_MESSAGE_BYTES:
        raise BadMessage("oversized", f"{len(data)} bytes (limit {MAX_MESSAGE_BYTES})")
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as e:
        raise BadMessage("malformed", str(e)) from e


def pong(ping: LatencyPing, now: float) -> str:
    """The answer to ``ping`` at server time ``now`` (unix seconds)."""
    reply = Outgoing("latency.pong", now, LatencyPong(ping.payload.ping_id, ping.ts))
    return _encoder.encode(reply).decode()


class EventsChannel:
    """One client's ``events`` channel: send JSON, answer pings, take mutes, drop the rest."""

    def __init__(self, channel: RTCDataChannel, name: str,
                 on_mute: Callable[[bool], None] = lambda muted: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.channel = channel
        self.name = name
        self._on_mute = on_mute
        self._clock = clock
        channel.on("message", self._on_message)

    @property
    def open(self) -> bool:
        return self.channel.readyState == "open"

    def send(self, text: str) -> bool:
        """Send if open and draining; False (counted when backlogged) otherwise."""
        if not self.open:
            return False
        if self.channel.bufferedAmount > MAX_BACKLOG_BYTES:
            CHANNEL_DROPPED.labels("backlog").inc()
            return False
        self.channel.send(text)
        return True

    def _on_message(self, message: str | bytes) -> None:
        try:
            request = decode(message)
        except BadMessage as e:
            CHANNEL_DROPPED.labels(e.reason).inc()
            logger.debug("EventsChannel(%s): dropped a message: %s", self.name, str(e)[:200])
            return
        match request:
            case LatencyPing():
                self.send(pong(request, self._clock()))
            case ClientMute(payload=MutePayload(muted=muted)):
                self._on_mute(muted)
            case _:
                assert_never(request)
