"""Audio of signaling's WebSocket clients on the bus: their microphones out, model audio in.

Signaling is the "edge" of browsers whose WebRTC could not connect (``ws_bridge.py``).
It publishes their microphones on its own ``aud/in`` publisher (the ``audio`` endpoint of
its heartbeat, so the mixer and signaling's recovery find it like an edge's), and
subscribes to ``aud/model/<session>`` at each session's link endpoint, connecting once per
endpoint and forgetting a session when its last WebSocket client leaves. Malformed model
frames are dropped and counted (``voxrelay_bus_messages_rejected_total``, socket
``aud_model``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zmq

from proto import audio, topics
from services.runtime.sockets import Role, bind, make_socket
from services.runtime.zmq_loop import Rejected, SocketReader, send_nowait

OnModelFrame = Callable[[str, bytes], None]
"Called with (session id, 960 bytes of PCM16 24 kHz mono) for every good model frame."


class WsAudio:
    """The bridge's two audio sockets: ``aud/in`` PUB (bound) and ``aud/model`` SUB."""

    def __init__(self, ctx: zmq.Context[Any], bind_to: str, on_model: OnModelFrame,
                 name: str) -> None:
        self.name = name
        self.pub = make_socket(ctx, Role.AUDIO_PUB)
        self.endpoint = bind(self.pub, bind_to)
        self.sub = make_socket(ctx, Role.AUDIO_SUB)
        self.on_model = on_model
        self._endpoint_of: dict[str, str] = {}
        self._sessions_at: dict[str, set[str]] = {}
        self._reader = SocketReader(self.sub, self._on_message, f"{name}-ws-model", "aud_model")

    def start(self) -> None:
        self._reader.start()

    def publish(self, parts: list[bytes]) -> bool:
        """One ``aud/in`` frame, without blocking; False when the socket refused it."""
        return send_nowait(self.pub, parts)

    def attach(self, session_id: str, endpoint: str) -> None:
        """Receive ``session_id``'s model audio from ``endpoint``; raises zmq.ZMQError."""
        current = self._endpoint_of.get(session_id)
        if current == endpoint or not endpoint:
            return
        if endpoint not in self._sessions_at:
            self.sub.connect(endpoint)
        self._sessions_at.setdefault(endpoint, set()).add(session_id)
        self._endpoint_of[session_id] = endpoint
        if current is None:
            self.sub.subscribe(topics.aud_model(session_id))
        else:  # the session's link was replaced
            self._release(session_id, current)

    def detach(self, session_id: str) -> None:
        """Stop receiving ``session_id`` (idempotent)."""
        endpoint = self._endpoint_of.pop(session_id, None)
        if endpoint is not None:
            self.sub.unsubscribe(topics.aud_model(session_id))
            self._release(session_id, endpoint)

    def _release(self, session_id: str, endpoint: str) -> None:
        sessions = self._sessions_at[endpoint]
        sessions.discard(session_id)
        if not sessions:
            del self._sessions_at[endpoint]
            self.sub.disconnect(endpoint)

    def _on_message(self, parts: list[bytes]) -> None:
        try:
            topic, header, pcm = audio.unpack(parts)
            parsed = topics.parse(topic)
        except (audio.FrameError, topics.TopicError) as e:
            raise Rejected("decode", str(e)) from e
        if parsed.channel != "aud/model" or parsed.session_id is None \
                or header.samples != audio.FRAME_SAMPLES:
            raise Rejected("kind", f"a {header.samples}-sample frame on {topic[:60]!r}")
        self.on_model(parsed.session_id, pcm)

    def close(self) -> None:
        self._reader.stop()
        self.sub.close()
        self.pub.close()
