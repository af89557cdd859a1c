"""Model audio from the links: one SUB socket for every session with clients here.

Each session's link publishes ``aud/model/<session>`` on its own endpoint. The edge
connects once per endpoint (however many sessions it carries), subscribes to the
sessions it hosts clients of, and forgets both when the last client of a session
leaves. Every frame is checked (``proto.audio.unpack``) and handed on with its
session id and capture time; malformed ones are dropped and counted. Good frames are
metered as the ``link_to_edge`` bus hop (``sent_ns``); a gap in a session's sequence is
counted as frames dropped for ``gap``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import zmq

from proto import audio, topics
from services.runtime.metrics import HopMeter
from services.runtime.sockets import Role, make_socket
from services.runtime.zmq_loop import Rejected, SocketReader

from .metrics import DROPPED_DECODE, DROPPED_GAP

logger = logging.getLogger(__name__)

OnFrame = Callable[[str, bytes, int], None]
"Called with (session id, 960 bytes of PCM16 24 kHz mono, capture_ns) for every good frame."


class Downlink:
    """The edge's ``aud/model`` subscriptions: which link endpoint carries which session."""

    def __init__(self, ctx: zmq.Context[Any], on_frame: OnFrame, name: str) -> None:
        self.name = name
        self.sock = make_socket(ctx, Role.AUDIO_SUB)
        self.on_frame = on_frame
        self._endpoint_of: dict[str, str] = {}
        self._sessions_at: dict[str, set[str]] = {}
        self._hops = HopMeter("link_to_edge", on_gap=DROPPED_GAP.inc)
        self._reader = SocketReader(self.sock, self._on_message, f"{name}-downlink",
                                    "aud_model")

    def start(self) -> None:
        self._reader.start()

    @property
    def sessions(self) -> frozenset[str]:
        return frozenset(self._endpoint_of)

    def attach(self, session_id: str, endpoint: str) -> None:
        """Receive ``session_id``'s model audio from ``endpoint``; raises zmq.ZMQError."""
        current = self._endpoint_of.get(session_id)
        if current == endpoint:
            return
        if endpoint not in self._sessions_at:
            self.sock.connect(endpoint)
            logger.info("Downlink(%s) connected to %s", self.name, endpoint)
        self._sessions_at.setdefault(endpoint, set()).add(session_id)
        self._endpoint_of[session_id] = endpoint
        if current is None:
            self.sock.subscribe(topics.aud_model(session_id))
        else:  # the session moved to another link: its stream starts afresh
            self._hops.forget(topics.aud_model(session_id))
            self._release(session_id, current)

    def detach(self, session_id: str) -> None:
        """Stop receiving ``session_id`` (idempotent)."""
        endpoint = self._endpoint_of.pop(session_id, None)
        if endpoint is None:
            return
        topic = topics.aud_model(session_id)
        self.sock.unsubscribe(topic)
        self._hops.forget(topic)
        self._release(session_id, endpoint)

    def _release(self, session_id: str, endpoint: str) -> None:
        sessions = self._sessions_at[endpoint]
        sessions.discard(session_id)
        if not sessions:
            del self._sessions_at[endpoint]
            self.sock.disconnect(endpoint)
            logger.info("Downlink(%s) disconnected from %s", self.name, endpoint)

    def _on_message(self, parts: list[bytes]) -> None:
        try:
            topic, header, pcm = audio.unpack(parts)
            parsed = topics.parse(topic)
        except (audio.FrameError, topics.TopicError) as e:
            DROPPED_DECODE.inc()
            raise Rejected("decode", str(e)) from e
        if parsed.channel != "aud/model" or parsed.session_id is None \
                or header.samples != audio.FRAME_SAMPLES:
            DROPPED_DECODE.inc()
            raise Rejected("kind", f"a {header.samples}-sample frame on {topic[:60]!r}")
        self._hops.observe(topic, header)
        self.on_frame(parsed.session_id, pcm, header.capture_ns)

    def close(self) -> None:
        self._reader.stop()
        self.sock.close()
