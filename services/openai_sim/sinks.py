"""Event sinks: where a session's server events go (DataChannel or WebSocket)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from aiohttp import web
from aiortc import RTCDataChannel

logger = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()


def encode(event: dict[str, Any]) -> str:
    return _encoder.encode(event).decode("utf-8")


class DataChannelSink:
    """The WebRTC ``oai-events`` channel; aiortc buffers sends itself."""

    def __init__(self, channel: RTCDataChannel) -> None:
        self.channel = channel

    def send(self, event: dict[str, Any]) -> None:
        if self.channel.readyState == "open":
            self.channel.send(encode(event))


class WebSocketSink:
    """A WebSocket; events queue here and ``run()`` writes them in order."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    def send(self, event: dict[str, Any]) -> None:
        self._queue.put_nowait(encode(event))

    def close(self, code: int, reason: str) -> None:
        """Close after the events already queued have been written."""
        self._close = (code, reason)
        self._queue.put_nowait(None)

    async def run(self) -> None:
        while True:
            text = await self._queue.get()
            if text is None:
                code, reason = self._close
                await self.ws.close(code=code, message=reason.encode("utf-8")[:123])
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionResetError, RuntimeError):
                return
