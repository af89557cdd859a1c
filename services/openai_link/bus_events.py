"""The few bus events the link needs about its sessions: who is speaking, who is here,
when each client began hearing a reply.

One SUB socket on the bus, subscribed per session to exactly the kinds in ``KINDS``
(``evt/<kind>/<session>``), so the link does not read every event of every session.
Messages are decoded once here; what cannot be decoded is dropped and counted
(``voxrelay_bus_messages_rejected_total``, socket ``events``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zmq

from proto import events, topics
from services.runtime.bus import BusEndpoints
from services.runtime.sockets import Role, make_socket
from services.runtime.zmq_loop import Rejected, SocketReader

KINDS = ("voice.activity", "client.joined", "client.left", "turn.heard")


class SessionEvents:
    """Delivers the ``KINDS`` events of followed sessions to ``on_event``."""

    def __init__(self, ctx: zmq.Context[Any], bus: BusEndpoints, name: str,
                 on_event: Callable[[events.AnyEvent], None]) -> None:
        self.name = name
        self.on_event = on_event
        self.sock = make_socket(ctx, Role.EVENT_SUB)
        self.sock.connect(bus.subscribe)
        self._reader = SocketReader(self.sock, self._on_message, f"{name}-session-events",
                                    "events")

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
            raise Rejected("frames", f"{len(parts)} parts")
        try:
            event = events.decode(parts[1])
        except events.EventError as e:
            raise Rejected("decode", f"on {parts[0][:60]!r}: {e}") from e
        self.on_event(event)

    def close(self) -> None:
        self._reader.stop()
        self.sock.close(linger=0)
