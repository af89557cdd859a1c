"""A real aiortc WebRTC client of the Realtime API, as voxrelay's link (or a browser) is.

It offers one sendrecv audio transceiver and the ``oai-events`` DataChannel,
plays PCM into its microphone track in real time, and records what it hears.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from services.client.rtc import PcmTrack
from services.runtime.media import drain_track


class RealtimeRtcClient:
    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("oai-events")
        self.mic = PcmTrack()
        self.pc.addTrack(self.mic)
        self.events: list[dict[str, Any]] = []
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.heard = bytearray()
        "Everything received on the model's track, PCM16 24 kHz mono."
        self.heard_started_at: float | None = None
        self._reader: asyncio.Task[None] | None = None
        self.opened = asyncio.Event()
        self.channel.on("open", self.opened.set)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def wait_for(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event of ``kind`` (earlier events of other kinds are kept in ``events``)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._inbox.get()
                if event["type"] == kind:
                    return event

    def heard_ms(self) -> int:
        return len(self.heard) // 48

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, MediaStreamError):
                pass

    def _on_message(self, message: str | bytes) -> None:
        event = json.loads(message)
        self.events.append(event)
        self._inbox.put_nowait(event)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        await drain_track(track, self._hear)

    def _hear(self, pcm: bytes) -> None:
        if self.heard_started_at is None:
            self.heard_started_at = time.monotonic()
        self.heard += pcm
