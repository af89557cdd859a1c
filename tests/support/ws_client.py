"""Reading a Realtime WebSocket connection (the official SDK's) event by event, validated."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from .realtime_events import validate_server_event

CHUNK_BYTES = 960 * 5  # 100 ms


class EventReader:
    """Wraps an ``AsyncRealtimeConnection``: every received event is validated and kept."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv_bytes(), timeout)
        event = json.loads(raw)
        validate_server_event(event)
        self.events.append(event)
        return event

    async def until(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """Read until an event of ``kind``; returns it."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                if event["type"] == kind:
                    return event

    async def append(self, pcm: bytes) -> None:
        for i in range(0, len(pcm), CHUNK_BYTES):
            await self.conn.input_audio_buffer.append(
                audio=base64.b64encode(pcm[i : i + CHUNK_BYTES]).decode("ascii"))

    def types(self, skip_deltas: bool = True) -> list[str]:
        return [e["type"] for e in self.events
                if not (skip_deltas and e["type"].endswith(".delta"))]

    def audio(self, response_id: str | None = None) -> bytes:
        """The PCM of every ``response.output_audio.delta`` received (of one response)."""
        return b"".join(
            base64.b64decode(e["delta"]) for e in self.events
            if e["type"] == "response.output_audio.delta"
            and response_id in (None, e["response_id"])
        )
