"""The event bus seen from a service: publish events and heartbeats, subscribe to them.

Publishers connect a PUB to the forwarder's XSUB; subscribers connect a SUB to its
XPUB. Messages are ``[topic, msgpack body]``. Anyone who reaches the bus may publish, so
a subscriber decodes every message once, here, and drops and counts (socket ``events``)
what is not an event or heartbeat of the wire contract; never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import zmq
from prometheus_client import Counter

from proto import events, heartbeat, topics

from .outbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_EVENTS, EventOutbox
from .sockets import Role, make_socket
from .zmq_loop import Rejected, SocketReader, send_nowait

logger = logging.getLogger(__name__)
T = TypeVar("T")

DROPPED = Counter("voxrelay_bus_messages_dropped_total",
                  "Bus messages a publisher did not send (hwm: its queue was full)", ["reason"])


@dataclass(frozen=True)
class BusEndpoints:
    publish: str
    "The forwarder's XSUB: where publishers connect."
    subscribe: str
    "The forwarder's XPUB: where subscribers connect."


class EventPublisher:
    """Stamps and publishes events, keeping the last ones in its :class:`EventOutbox`
    (``outbox_events`` / ``outbox_bytes`` bound it) for consumers that missed some."""

    def __init__(self, ctx: zmq.Context[Any], bus: BusEndpoints, producer: str, *,
                 outbox_events: int = DEFAULT_MAX_EVENTS,
                 outbox_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.sock = make_socket(ctx, Role.EVENT_PUB)
        self.sock.connect(bus.publish)
        self.stamper = events.Stamper(producer)
        self.outbox = EventOutbox(producer, self.stamper.epoch, max_events=outbox_events,
                                  max_bytes=outbox_bytes)

    def publish(self, event: events.Event) -> events.Event:
        """Stamp (producer, epoch, seq, ts), keep in the outbox and send; returns the
        stamped event. Dropped sends are counted; the outbox still holds the event."""
        stamped = self.stamper.stamp(event)
        body = events.encode(stamped)
        self.outbox.add(stamped.seq, body)
        topic = topics.evt(events.tag(stamped), stamped.session_id)
        if not send_nowait(self.sock, [topic, body]):
            DROPPED.labels("hwm").inc()
        return stamped

    def beat(self, beat: heartbeat.Heartbeat) -> None:
        send_nowait(self.sock, [topics.sys_hb(beat.instance), heartbeat.encode(beat)])

    def close(self) -> None:
        self.sock.close()


class EventSubscriber:
    """Delivers decoded events and heartbeats to callbacks."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        bus: BusEndpoints,
        name: str,
        on_event: Callable[[events.AnyEvent], None] | None = None,
        on_heartbeat: Callable[[heartbeat.Heartbeat], None] | None = None,
    ) -> None:
        self.sock = make_socket(ctx, Role.EVENT_SUB)
        self.sock.connect(bus.subscribe)
        self.on_event = on_event
        self.on_heartbeat = on_heartbeat
        if on_event is not None:
            self.sock.subscribe(topics.EVT)
        if on_heartbeat is not None:
            self.sock.subscribe(topics.SYS_HB)
        self._reader = SocketReader(self.sock, self._on_message, f"{name}-events", "events")

    def start(self) -> None:
        self._reader.start()

    def _on_message(self, parts: list[bytes]) -> None:
        if len(parts) != 2:
            raise Rejected("frames", f"{len(parts)} parts")
        topic, body = parts
        if topic.startswith(topics.EVT) and self.on_event is not None:
            self.on_event(_decoded(events.decode, body, topic))
        elif topic.startswith(topics.SYS_HB) and self.on_heartbeat is not None:
            self.on_heartbeat(_decoded(heartbeat.decode, body, topic))
        else:
            raise Rejected("kind", f"topic {topic[:60]!r}")

    def close(self) -> None:
        self._reader.stop()
        self.sock.close()


def _decoded(decode: Callable[[bytes], T], body: bytes, topic: bytes) -> T:
    try:
        return decode(body)
    except ValueError as e:  # EventError, msgspec.DecodeError
        raise Rejected("decode", f"on {topic[:60]!r}: {e}") from e
