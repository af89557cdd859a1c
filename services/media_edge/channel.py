"""The ``events`` DataChannel a browser opens: events out, its few requests in.

Out: client-facing bus events as ``{"type", "ts", "payload"}`` JSON
(``events.to_client_json``), dropped (and counted ``backlog``) while the channel is
not draining; and the edge's own round-trip probe, every ``PING_INTERVAL_S`` (sent by
the peer, :meth:`EventsChannel.ping`): ``{"type": "latency.ping", "ts": <server unix
seconds>, "payload": {"ping_id": "e<n>"}}``, which the browser answers at once with
``{"type": "latency.pong", "ts": <client ms>, "payload": {"ping_id": "e<n>"}}``; the
round trip is observed as ``voxrelay_edge_round_trip_seconds``. At most
``MAX_OUTSTANDING_PINGS`` unanswered pings are remembered, none older than
``PING_TIMEOUT_S``; a pong for any other id is ignored.

In:

- ``latency.ping`` — ``{"type": "latency.ping", "ts": <client ms>, "payload": {"ping_id":
  …}}`` — answered at once with ``{"type": "latency.pong", "ts": <server unix seconds>,
  "payload": {"ping_id": …, "client_ts": <the ping's ts>}}`` so the browser can measure
  the round trip;
- ``latency.pong`` — the browser's answer to the edge's own ping (above);
- ``client.mute`` — ``{"type": "client.mute", "ts": …, "payload": {"muted": true|false}}``
  — handed to ``on_mute``: the edge stops (or resumes) publishing the microphone.

Limits (``voxrelay_edge_channel_messages_dropped_total{reason}``; none closes the channel):

- ``rate`` — each channel has a token bucket (``VOXRELAY_EDGE_CHANNEL_RATE`` messages a
  second sustained, ``VOXRELAY_EDGE_CHANNEL_BURST`` at once; 50 and 100 by default, far
  above the browser's one pong a second and rare requests). A message over the limit is
  dropped before it is looked at, so a flooding client costs the edge little more than
  SCTP's own work, and other clients' channels are not slowed;
- ``binary`` — the protocol is JSON text only;
- ``oversized`` — text over ``MAX_MESSAGE_BYTES``;
- ``malformed`` — not JSON, or not a known request with the right types;
- ``unexpected_channel`` — anything on a channel the client opened besides its first
  ``events`` channel (:func:`ignore_channel`): such a channel is left open and unread.

A flooding client still counts as heard (the loss watchdog); it is never disconnected
for it, only its excess is dropped.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import assert_never

import msgspec
from aiortc import RTCDataChannel

from services.runtime.ratelimit import CLIENT_MESSAGE_BURST, CLIENT_MESSAGES_PER_S, TokenBucket

from .metrics import CHANNEL_DROPPED, CHANNEL_DROPPED_RATE, CHANNEL_DROPPED_UNEXPECTED, ROUND_TRIP

logger = logging.getLogger(__name__)

LABEL = "events"
MAX_MESSAGE_BYTES = 16 * 1024
"A browser message larger than this is dropped unread."
MAX_BACKLOG_BYTES = 1024 * 1024
"Outgoing bytes aiortc may hold for one channel before further events are dropped."
PING_INTERVAL_S = 1.0
"How often the edge pings each client: the round trip, and a heartbeat it answers."
PING_TIMEOUT_S = 10.0
"A ping unanswered this long is forgotten (its pong, if it ever comes, is ignored)."
MAX_OUTSTANDING_PINGS = 8
"Unanswered pings remembered per channel; the oldest is forgotten first."


class PingPayload(msgspec.Struct, frozen=True):
    ping_id: str | int


class MutePayload(msgspec.Struct, frozen=True):
    muted: bool


class Request(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    ts: float | None = None
    "The browser's clock when it sent the request (ms)."


class LatencyPing(Request, tag="latency.ping"):
    payload: PingPayload


class LatencyPong(Request, tag="latency.pong"):
    """The browser's answer to one of the edge's pings."""

    payload: PingPayload


class ClientMute(Request, tag="client.mute"):
    payload: MutePayload


ClientMessage = LatencyPing | LatencyPong | ClientMute
"Everything a browser may send on the channel."


class PongPayload(msgspec.Struct, frozen=True):
    ping_id: str | int
    client_ts: float | None


class Outgoing(msgspec.Struct, frozen=True):
    type: str
    ts: float
    payload: PongPayload | PingPayload


class BadMessage(ValueError):
    """A browser message the edge cannot use; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


def decode(message: str | bytes) -> ClientMessage:
    """Check and decode one browser message; raises BadMessage."""
    if not isinstance(message, str):
        raise BadMessage("binary", f"{len(message)} bytes of binary (the channel takes JSON text)")
    data = message.encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise BadMessage("oversized", f"{len(data)} bytes (limit {MAX_MESSAGE_BYTES})")
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as e:
        raise BadMessage("malformed", str(e)) from e


def pong(ping: LatencyPing, now: float) -> str:
    """The answer to ``ping`` at server time ``now`` (unix seconds)."""
    reply = Outgoing("latency.pong", now, PongPayload(ping.payload.ping_id, ping.ts))
    return _encoder.encode(reply).decode()


def ping(ping_id: str, now: float) -> str:
    """The edge's own ping ``ping_id`` at server time ``now`` (unix seconds)."""
    return _encoder.encode(Outgoing("latency.ping", now, PingPayload(ping_id))).decode()


class Pings:
    """The edge's unanswered pings on one channel, bounded in number and age."""

    def __init__(self, max_outstanding: int = MAX_OUTSTANDING_PINGS,
                 timeout_s: float = PING_TIMEOUT_S) -> None:
        self.max_outstanding = max_outstanding
        self.timeout_s = timeout_s
        self._sent: OrderedDict[str, float] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return len(self._sent)

    def issue(self, now: float) -> str:
        """A new ping id, sent at ``now`` (seconds of a monotonic clock)."""
        self._expire(now)
        self._count += 1
        ping_id = f"e{self._count}"
        self._sent[ping_id] = now
        if len(self._sent) > self.max_outstanding:
            self._sent.popitem(last=False)
        return ping_id

    def answer(self, ping_id: str | int, now: float) -> float | None:
        """The round trip of ``ping_id`` answered at ``now``; None if it is not ours (any
        more)."""
        self._expire(now)
        sent = self._sent.pop(ping_id, None) if isinstance(ping_id, str) else None
        return None if sent is None else max(0.0, now - sent)

    def _expire(self, now: float) -> None:
        while self._sent and now - next(iter(self._sent.values())) > self.timeout_s:
            self._sent.popitem(last=False)


class EventsChannel:
    """One client's ``events`` channel: send JSON, answer pings, time the edge's own pings,
    take mutes, drop the rest."""

    def __init__(self, channel: RTCDataChannel, name: str,
                 on_mute: Callable[[bool], None] = lambda muted: None,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.monotonic,
                 limit: TokenBucket | None = None) -> None:
        self.channel = channel
        self.name = name
        self.pings = Pings()
        self.limit = limit or TokenBucket(CLIENT_MESSAGES_PER_S, CLIENT_MESSAGE_BURST, timer)
        "One token per browser message; an empty bucket drops the message unread."
        self._on_mute = on_mute
        self._clock = clock
        self._timer = timer
        self.heard_at: float | None = None
        "``timer()`` when the browser last sent anything (the loss watchdog)."
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

    def ping(self) -> bool:
        """Send the edge's next latency.ping (if open and draining)."""
        if not self.open:
            return False
        return self.send(ping(self.pings.issue(self._timer()), self._clock()))

    def _on_message(self, message: str | bytes) -> None:
        self.heard_at = self._timer()
        if not self.limit.take():
            CHANNEL_DROPPED_RATE.inc()
            return
        try:
            request = decode(message)
        except BadMessage as e:
            CHANNEL_DROPPED.labels(e.reason).inc()
            logger.debug("EventsChannel(%s): dropped a message: %s", self.name, str(e)[:200])
            return
        match request:
            case LatencyPing():
                self.send(pong(request, self._clock()))
            case LatencyPong(payload=PingPayload(ping_id=ping_id)):
                rtt = self.pings.answer(ping_id, self._timer())
                if rtt is not None:
                    ROUND_TRIP.observe(rtt)
            case ClientMute(payload=MutePayload(muted=muted)):
                self._on_mute(muted)
            case _:
                assert_never(request)


def ignore_channel(channel: RTCDataChannel) -> None:
    """Leave a channel that is not the client's ``events`` channel open and unread: what
    arrives on it is only counted."""
    channel.on("message", lambda message: CHANNEL_DROPPED_UNEXPECTED.inc())
