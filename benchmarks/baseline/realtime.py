"""The baseline bridge's leg to the Realtime API: one WebRTC call per conversation.

Set up as OpenAI's WebRTC guide has a client do it: an ``RTCPeerConnection`` with the
``oai-events`` DataChannel created before the offer and one sendrecv audio transceiver;
the offer goes to ``POST {base}/realtime/calls`` as ``multipart/form-data`` (parts
``sdp`` and ``session``) and the answer comes back as SDP. Once the channel opens,
``session.update`` asks for server VAD, the conversation's voice and instructions and
input transcription; the call is usable when ``session.updated`` comes back.

The model's audio track is read for as long as the call lasts; server events other than
``error`` are not used.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from services.runtime import Secret, rtc_configuration

from .audio import read_track

logger = logging.getLogger(__name__)

EVENTS_LABEL = "oai-events"
DEFAULT_MODEL = "gpt-realtime"
TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
CONNECT_TIMEOUT_S = 8.0
MAX_ERROR_CHARS = 300

Spawn = Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]


class RealtimeUnavailable(RuntimeError):
    """The Realtime call could not be set up; the message says where it stopped."""


@dataclass(frozen=True)
class RealtimeApi:
    """Where the Realtime API is and how to reach it."""

    base_url: str
    "Without a trailing slash, e.g. https://api.openai.com/v1."
    api_key: Secret
    model: str = DEFAULT_MODEL
    ice_servers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Persona:
    """What a conversation asks of the model; empty means the API's default."""

    instructions: str = ""
    voice: str = ""


def session_update(persona: Persona) -> dict[str, Any]:
    """The ``session.update`` event: server VAD, transcription, voice and instructions."""
    session: dict[str, Any] = {
        "type": "realtime",
        "output_modalities": ["audio"],
        "audio": {"input": {"transcription": {"model": TRANSCRIPTION_MODEL},
                            "turn_detection": {"type": "server_vad"}}},
    }
    if persona.instructions:
        session["instructions"] = persona.instructions
    if persona.voice:
        session["audio"]["output"] = {"voice": persona.voice}
    return {"type": "session.update", "session": session}


class RealtimeLeg:
    """One conversation's call: ``uplink`` is what the model hears, ``on_audio`` gets
    what it says (PCM16 24 kHz mono)."""

    def __init__(self, api: RealtimeApi, persona: Persona, http: aiohttp.ClientSession,
                 uplink: MediaStreamTrack, on_audio: Callable[[bytes], None], spawn: Spawn,
                 name: str) -> None:
        self.api = api
        self.persona = persona
        self.name = name
        self._http = http
        self._on_audio = on_audio
        self._spawn = spawn
        self.pc = RTCPeerConnection(rtc_configuration(api.ice_servers))
        self.channel = self.pc.createDataChannel(EVENTS_LABEL)
        self.pc.addTransceiver(uplink, direction="sendrecv")
        self._opened = asyncio.Event()
        self._updated: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._model_track: MediaStreamTrack | None = None
        self._reader: asyncio.Task[None] | None = None
        self.channel.on("open", self._opened.set)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def __repr__(self) -> str:
        return f"RealtimeLeg({self.name})"

    async def open(self) -> None:
        """Offer, answer, channel, ``session.update``; raises RealtimeUnavailable."""
        step = "making the offer"
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self.pc.setLocalDescription(await self.pc.createOffer())
                step = "posting the offer"
                answer = await self._post_offer(self.pc.localDescription.sdp)
                step = "applying the answer"
                await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
                step = f"opening the {EVENTS_LABEL} channel"
                await self._opened.wait()
                step = "waiting for session.updated"
                self.channel.send(json.dumps(session_update(self.persona)))
                await self._updated
        except TimeoutError as e:
            raise RealtimeUnavailable(
                f"no usable call within {CONNECT_TIMEOUT_S:g} s (stuck {step})") from e
        if self._model_track is not None:
            self._reader = self._spawn(read_track(self._model_track, self._on_audio))
        logger.info("%r connected", self)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()

    async def _post_offer(self, offer_sdp: str) -> str:
        form = aiohttp.FormData()
        form.add_field("sdp", offer_sdp, content_type="application/sdp")
        form.add_field("session", json.dumps({"type": "realtime", "model": self.api.model}),
                       content_type="application/json")
        url = f"{self.api.base_url}/realtime/calls"
        headers = {"Authorization": f"Bearer {self.api.api_key.reveal()}"}
        try:
            async with self._http.post(url, data=form, headers=headers) as resp:
                body = await resp.text()
        except aiohttp.ClientError as e:
            raise RealtimeUnavailable(f"cannot reach {url}: {e}") from e
        if resp.status != 201:
            raise RealtimeUnavailable(
                f"{url} answered {resp.status}: {self._redacted(body)[:MAX_ERROR_CHARS]}")
        return body

    def _redacted(self, text: str) -> str:
        key = self.api.api_key.reveal()
        return text.replace(key, "sk-…") if key else text

    def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            logger.info("%r ignored an undecodable server event", self)
            return
        if kind == "session.updated" and not self._updated.done():
            self._updated.set_result(None)
        elif kind == "error":
            message = self._redacted(str(event.get("error")))[:MAX_ERROR_CHARS]
            logger.warning("%r: the API reported an error: %s", self, message)
            if not self._updated.done():
                self._updated.set_exception(RealtimeUnavailable(f"session.update: {message}"))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._model_track is None:
            self._model_track = track

    def _on_state(self) -> None:
        if self.pc.connectionState == "failed":
            logger.warning("%r: the connection failed", self)

