"""The few bus events the link needs about its sessions: who is speaking, who is here,
when each client began hearing a reply.

One SUB socket on the bus, subscribed per session to exactly the kinds in ``KINDS``
(``evt/<kind>/<session>``), so the link does not read every event of every session.
Messages are decoded once here; what cannot be decoded is dropped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import zmq

from proto import events, topics
from services.runtime.bus import DROPPED, BusEndpoints
from services.runtime.sockets import Role, make_socket
from services.runtime.zmq_loop import SocketReader

logger = logging.getLogger(__name__)

KINDS = ("voice.activity", "client.joined", "client.left", "turn.heard")


class SessionEvents:
    """Delivers the ``KINDS`` events of followed sessions to ``on_event``."""

    def __init__(self, ctx: zmq.Context[Any], bus: BusEndpoints, name: str,
                 on_event: Callable[[events.AnyEvent], None]) -> None:
        self.name = name
        self.on_event = on_event
        self.sock = make_socket(ctx, Role.EVENT_SUB)
        self.sock.connect(bus.subscribe)
        self._reader = SocketReader(self.sock, self._on_message, f"{name}-session-events")

    def start(self) -> None:
        self._reader.start()

    def follow(self, session_id: str) -> None:
        for kind in KINDS:
            self.sock.subscribe(topics.evt(kind, session_id))

    def unfollow(self, session_id: str) -> None:
        for kind in KINDS:
            self.sock.unsubscribe(topics.evt(kind, session_id))

    def _on_message(self, parts: list[bytes]) -> None:
        if len(parts) != 2:
            DROPPED.labels("malformed").inc()
            return
        try:
            event = events.decode(parts[1])
        except events.EventError as e:
            DROPPED.labels("decode").inc()
            logger.debug("SessionEvents(%s) dropped an event on %r: %s", self.name,
                         parts[0][:60], e)
            return
        self.on_event(event)

    def close(self) -> None:
        self._reader.stop()
        self.sock.close(linger=0)
