"""Conversations in the baseline bridge: browser legs and one Realtime leg, in one process.

Each browser client has an ``RTCPeerConnection`` answering its offer. Its microphone is
decoded, resampled and buffered (:class:`PcmBuffer`); the session's uplink track takes
one 20 ms frame from every client's buffer each tick and sums them into what the model
hears. The model's audio is decoded, resampled and appended to every client's playout
buffer, which that client's own track sends (and aiortc encodes) every 20 ms.

The Realtime call is opened on a session's first join (the join answers once it is
usable) and ends with the session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from services.runtime import rtc_configuration

from .audio import SILENCE, PacedTrack, PcmBuffer, mix, read_track
from .realtime import Persona, RealtimeApi, RealtimeLeg, Spawn

logger = logging.getLogger(__name__)

OFFER_ERRORS = (ValueError, KeyError, IndexError, AttributeError, TypeError, AssertionError)
"What aiortc raises on an SDP offer it cannot use."


class InvalidOffer(ValueError):
    """The client's SDP offer cannot be answered; the message says why."""


def new_id() -> str:
    return secrets.token_hex(8)


class ClientLeg:
    """One browser client: its microphone in, the model's voice out, its events channel."""

    def __init__(self, name: str, ice_servers: tuple[str, ...], spawn: Spawn,
                 on_gone: Callable[[ClientLeg], None]) -> None:
        self.client_id = new_id()
        self.name = name
        self.mic = PcmBuffer()
        "Heard from the client, waiting for the session's next mix."
        self.speaker = PcmBuffer()
        "The model's voice, waiting for this client's track."
        self.track = PacedTrack(lambda: self.speaker.take() or SILENCE)
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self._spawn = spawn
        self._on_gone = on_gone
        self._readers: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_state)

    def __repr__(self) -> str:
        return f"ClientLeg({self.client_id}, {self.name!r})"

    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer to the client's offer; raises InvalidOffer."""
        if not offer_sdp.startswith("v=0"):
            raise InvalidOffer("expected an SDP offer starting with 'v=0'")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            if not any(t.kind == "audio" for t in self.pc.getTransceivers()):
                raise InvalidOffer("the offer has no audio section")
            self.pc.addTrack(self.track)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except OFFER_ERRORS as e:
            raise InvalidOffer(f"{type(e).__name__}: {e}") from e
        return self.pc.localDescription.sdp

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        self.track.stop()
        await self.pc.close()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._readers.append(self._spawn(read_track(track, self.mic.push)))

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        channel.on("message", lambda message: answer_ping(channel, message))

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._on_gone(self)


def answer_ping(channel: RTCDataChannel, message: str | bytes) -> None:
    """Answer a ``latency.ping`` with a ``latency.pong``, as voxrelay's edge does; any other
    message is ignored."""
    try:
        event = json.loads(message)
        ping_id = event["payload"]["ping_id"] if event["type"] == "latency.ping" else None
    except (ValueError, KeyError, TypeError):
        return
    if ping_id is not None and channel.readyState == "open":
        channel.send(json.dumps({"type": "latency.pong", "ts": time.time(),
                                 "payload": {"ping_id": ping_id, "client_ts": event.get("ts")}}))


class Session:
    """One conversation: its clients and, from the first join, its Realtime call."""

    def __init__(self, persona: Persona, name: str, api: RealtimeApi,
                 http: aiohttp.ClientSession, spawn: Spawn) -> None:
        self.session_id = new_id()
        self.token = secrets.token_urlsafe(24)
        self.persona = persona
        self.name = name
        self.clients: dict[str, ClientLeg] = {}
        self.realtime: RealtimeLeg | None = None
        self._api = api
        self._http = http
        self._spawn = spawn
        self._opening = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Session({self.session_id})"

    async def join(self, offer_sdp: str, name: str) -> tuple[ClientLeg, str]:
        """A new client and its SDP answer; raises InvalidOffer or RealtimeUnavailable."""
        await self._open_realtime()
        client = ClientLeg(name, self._api.ice_servers, self._spawn, self._client_gone)
        try:
            answer = await client.answer(offer_sdp)
        except InvalidOffer:
            await client.close()
            raise
        self.clients[client.client_id] = client
        logger.info("%r: %r joined", self, client)
        return client, answer

    async def remove(self, client_id: str) -> bool:
        """Close one client; False if the session has no such client."""
        client = self.clients.pop(client_id, None)
        if client is None:
            return False
        await client.close()
        logger.info("%r: %r left", self, client)
        return True

    async def close(self) -> None:
        for client_id in list(self.clients):
            await self.remove(client_id)
        if self.realtime is not None:
            await self.realtime.close()

    async def _open_realtime(self) -> None:
        async with self._opening:
            if self.realtime is not None:
                return
            leg = RealtimeLeg(self._api, self.persona, self._http, PacedTrack(self._mix_clients),
                              self._to_clients, self._spawn, name=self.session_id)
            try:
                await leg.open()
            except BaseException:
                await leg.close()
                raise
            self.realtime = leg

    def _mix_clients(self) -> bytes:
        """What the model hears next: one frame from every client that has one, summed."""
        frames = [frame for client in self.clients.values()
                  if (frame := client.mic.take()) is not None]
        return mix(frames)

    def _to_clients(self, pcm: bytes) -> None:
        for client in self.clients.values():
            client.speaker.push(pcm)

    def _client_gone(self, client: ClientLeg) -> None:
        if client.client_id in self.clients:
            self._spawn(self.remove(client.client_id))


class Bridge:
    """Every session of the process; ``tasks`` owns whatever runs in the background."""

    def __init__(self, api: RealtimeApi, http: aiohttp.ClientSession,
                 tasks: asyncio.TaskGroup) -> None:
        self.api = api
        self.sessions: dict[str, Session] = {}
        self._http = http
        self._tasks = tasks

    def create(self, persona: Persona, name: str) -> Session:
        session = Session(persona, name, self.api, self._http, self.spawn)
        self.sessions[session.session_id] = session
        logger.info("%r created (%s)", session, name or "unnamed")
        return session

    async def end(self, session_id: str) -> bool:
        """Close one session; False if there is no such session."""
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        await session.close()
        logger.info("%r ended", session)
        return True

    async def close(self) -> None:
        for session_id in list(self.sessions):
            await self.end(session_id)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` in the background; a failure is logged and ends only that work."""
        return self._tasks.create_task(_logged(work))


async def _logged(work: Coroutine[Any, Any, None]) -> None:
    try:
        await work
    except Exception:
        logger.exception("background work failed")
