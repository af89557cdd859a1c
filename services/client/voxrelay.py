"""A real aiortc client of voxrelay's own API, as the web client is.

It creates a session or joins one through signaling's HTTP API, offers one
sendrecv audio track (a microphone playing PCM in real time) and the ``events``
DataChannel, records what it hears, and collects the events it receives. With
``transport="datachannel"`` it offers no track: its microphone goes as 20 ms PCM16
messages on an ``audio`` DataChannel and it hears the model's voice there
(:mod:`proto.client_audio`), keeping when each message arrived and its ``seq``. Like the web
client, it answers the edge's ``latency.ping`` at once with a ``latency.pong``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

from proto import client_audio
from services.runtime.media import drain_track

from .rtc import PcmTrack


async def create_session(http: aiohttp.ClientSession, base: str,
                         headers: Mapping[str, str] | None = None, **fields: Any
                         ) -> dict[str, Any]:
    """``POST /v1/sessions`` with ``fields``; ``headers`` carry the admin key if needed."""
    async with http.post(f"{base}/v1/sessions", json=fields, headers=headers) as resp:
        body = await resp.json()
        assert resp.status == 201, body
        return body


def find_event(received: Iterable[dict[str, Any]], kind: str, **payload: Any
               ) -> dict[str, Any] | None:
    """The first event of ``kind`` whose payload has these values (None: none yet)."""
    for event in received:
        if event["type"] == kind and all(event["payload"].get(k) == v
                                         for k, v in payload.items()):
            return event
    return None


def answer_ping(channel: RTCDataChannel, ping: dict[str, Any]) -> None:
    """Answer the edge's ``latency.ping`` on ``channel`` with its ping_id, as browsers do."""
    payload = ping.get("payload")
    if isinstance(payload, dict) and "ping_id" in payload and channel.readyState == "open":
        channel.send(json.dumps({"type": "latency.pong", "ts": time.time() * 1000,
                                 "payload": {"ping_id": payload["ping_id"]}}))


class VoxrelayClient:
    def __init__(self, name: str, transport: str = "track", mic: PcmTrack | None = None
                 ) -> None:
        self.name = name
        self.transport = transport
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("events")
        self.mic = mic if mic is not None else PcmTrack()
        self.audio: RTCDataChannel | None = None
        "The datachannel transport's ``audio`` channel."
        self.arrivals: list[tuple[float, int]] = []
        "(time.monotonic(), seq) of each audio message received (datachannel transport)."
        self._pump: asyncio.Task[None] | None = None
        if transport == "datachannel":
            self.audio = self.pc.createDataChannel(client_audio.LABEL)
            self.audio.on("open", self._start_pump)
            self.audio.on("message", self._on_audio)
        else:
            self.pc.addTrack(self.mic)
        self.events: list[dict[str, Any]] = []
        self.heard = bytearray()
        self.first_audio_at: float | None = None
        self.client_id: str | None = None
        self.silent = False
        "Sending nothing at all, as when the network drops (see go_silent)."
        self._reader: asyncio.Task[None] | None = None
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    async def join(self, http: aiohttp.ClientSession, base: str, session: dict[str, Any],
                   client_id: str | None = None) -> None:
        """Join the session (with ``client_id``: reconnect as that client of it)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body: dict[str, Any] = {"sdp": self.pc.localDescription.sdp, "type": "offer",
                                "name": self.name, "transport": self.transport}
        if client_id is not None:
            body["client_id"] = client_id
        async with http.post(f"{base}/v1/sessions/{session['session_id']}/clients",
                             json=body,
                             headers={"Authorization": f"Bearer {session['token']}"}) as resp:
            body = await resp.json()
            assert resp.status == 201, body
        self.client_id = body["client_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))

    async def wait_connected(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.pc.connectionState != "connected" or self.channel.readyState != "open" \
                    or (self.audio is not None and self.audio.readyState != "open"):
                await asyncio.sleep(0.02)

    async def wait_event(self, kind: str, timeout: float = 20.0, **payload: Any) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while (event := find_event(self.events, kind, **payload)) is None:
                await asyncio.sleep(0.02)
            return event

    def heard_ms(self) -> int:
        return len(self.heard) // 48

    async def close(self) -> None:
        await self.pc.close()
        for task in (self._reader, self._pump):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            self.events.append({"type": "<undecodable>", "payload": {"raw": str(message)[:200]}})
            return
        self.events.append(event)
        if isinstance(event, dict) and event.get("type") == "latency.ping" and not self.silent:
            answer_ping(self.channel, event)

    def _start_pump(self) -> None:
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._send_mic())

    async def _send_mic(self) -> None:
        """The microphone on the audio channel: one 20 ms message at real time."""
        assert self.audio is not None
        while self.audio.readyState == "open":
            pcm, _ = await self.mic.next_frame()
            if not self.silent:
                self.audio.send(pcm)

    def _on_audio(self, message: str | bytes) -> None:
        if isinstance(message, str):
            return
        seq, _, pcm = client_audio.unpack(message)
        self.arrivals.append((time.monotonic(), seq))
        self._hear(pcm)

    def go_silent(self) -> None:
        """Send nothing more — no microphone RTP, no ping answers — as a device whose
        network dropped would (the connection itself stays open on this side)."""
        self.silent = True
        for sender in self.pc.getSenders():
            if sender.kind == "audio":
                sender.replaceTrack(None)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        await drain_track(track, self._hear)

    def _hear(self, pcm: bytes) -> None:
        if self.first_audio_at is None and any(pcm):
            self.first_audio_at = time.monotonic()
        self.heard += pcm
