"""The link's WebRTC connection to the Realtime API: one call per conversation.

Built as a browser client would be (and as ``tests/support/rtc_client.py`` is): an
``RTCPeerConnection`` with the ``oai-events`` data channel created before the offer and
one sendrecv audio transceiver whose outbound track is the session's uplink. The offer
goes to ``POST /realtime/calls``; once the channel opens the link sends ``session.update``.
When ``session.updated`` comes back, the conversation so far (``context``: the
``conversation.item.create`` events of :mod:`.history`, empty for a conversation's first
call) is sent, and the connection is usable once the API has added those items (or
after ``REPLAY_TIMEOUT_S``: a context that is late is still better than no call); the
WebSocket transport does the same (:mod:`.handshake`).

:meth:`RealtimeConnection.run` is the connection's whole life: connect (within the
connect timeout), carry the call until the peer ends it, and always tear down (hang up,
close the peer). Cancelling ``run`` is how the owner closes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from services.runtime import rtc_configuration, strip_mdns_candidates
from services.runtime.reclaim import collect_soon

from . import calls_api
from . import realtime_events as rt
from .calls_api import CallSettings
from .config import LinkConfig
from .errors import RealtimeUnavailable
from .handshake import Connection, Handshake
from .metrics import REALTIME_EVENTS_IGNORED
from .model_audio import read_model_audio
from .uplink_track import UplinkTrack

logger = logging.getLogger(__name__)

EVENTS_LABEL = "oai-events"
TEARDOWN_TIMEOUT_S = 4.0
ANSWER_ERRORS = (ValueError, KeyError, IndexError, AttributeError, TypeError, AssertionError)
"What aiortc raises on an SDP answer it cannot use."

EventHandler = Callable[[rt.AnyServerEvent | rt.OtherEvent, str], None]


class RealtimeConnection(Connection):
    def __init__(self, config: LinkConfig, http: aiohttp.ClientSession, settings: CallSettings,
                 *, name: str, on_event: EventHandler, on_audio: Callable[[bytes], None],
                 context: Sequence[dict[str, Any]] = ()) -> None:
        self.config = config
        self.http = http
        self.settings = settings
        self.name = name
        self.call_id: str | None = None
        self.uplink = UplinkTrack()
        self._on_event = on_event
        self._on_audio = on_audio
        self.pc = RTCPeerConnection(rtc_configuration(config.ice_servers))
        self.channel = self.pc.createDataChannel(EVENTS_LABEL)
        self.pc.addTrack(self.uplink)
        self.handshake = Handshake(name, settings, self._send, context)
        self._opened = asyncio.Event()
        self._gone = asyncio.Event()
        self._remote: MediaStreamTrack | None = None
        self.channel.on("open", self._opened.set)
        self.channel.on("close", self._gone.set)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def __repr__(self) -> str:
        return f"RealtimeConnection({self.name}, call {self.call_id or '-'})"

    async def run(self) -> None:
        began = time.monotonic()
        try:
            try:
                await self._open()
            except RealtimeUnavailable as e:
                self._unavailable(e)
                return
            self._connected(began)
            await self._serve()
            logger.info("%r ended by the peer", self)
        finally:
            self._fail(RealtimeUnavailable("the connection closed before it was ready"))
            await self._teardown()

    # -- connecting -------------------------------------------------------------

    async def _open(self) -> None:
        timeout = self.config.connect_timeout_s
        step = "making the offer"
        try:
            async with asyncio.timeout(timeout):
                await self.pc.setLocalDescription(await self.pc.createOffer())
                step = "posting the offer"
                answer = await calls_api.create_call(
                    self.http, self.config, self.pc.localDescription.sdp, self.settings)
                self.call_id = answer.call_id
                step = "applying the answer"
                await self._accept(answer.sdp)
                step = f"opening the {EVENTS_LABEL} channel"
                await self._opened.wait()
                step = "configuring the session"
                await self.handshake.configure(_plain)
        except TimeoutError as e:
            raise RealtimeUnavailable(
                f"no usable Realtime connection within {timeout:g} s (stuck {step})") from e

    async def _accept(self, answer_sdp: str) -> None:
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=strip_mdns_candidates(answer_sdp), type="answer"))
        except ANSWER_ERRORS as e:
            raise RealtimeUnavailable(f"unusable SDP answer: {e or type(e).__name__}") from e

    def _send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    # -- carrying the call ------------------------------------------------------

    async def _serve(self) -> None:
        """Until the peer goes: drain the model's track into ``on_audio``."""
        async with asyncio.TaskGroup() as tg:
            waits = {tg.create_task(self._gone.wait())}
            if self._remote is not None:
                waits.add(tg.create_task(read_model_audio(self._remote, self._heard)))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()

    def _heard(self, frame: bytes) -> None:
        """A 20 ms frame of the model's voice: the link is awake, so the uplink's slot of
        silence about to end goes now too (:meth:`UplinkTrack.nudge`)."""
        self.uplink.nudge()
        self._on_audio(frame)

    def _on_message(self, message: str | bytes) -> None:
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        try:
            event = rt.decode(text)
        except rt.MalformedEvent as e:
            REALTIME_EVENTS_IGNORED.labels("malformed").inc()
            logger.info("%r dropped a malformed server event: %s", self, e)
            return
        self.handshake.observe(event)
        try:
            self._on_event(event, text)
        except Exception:  # never let a bug here reach aiortc's SCTP receive path
            logger.exception("%r: handling a %s event failed", self, type(event).__name__)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._remote is None:
            self._remote = track

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._gone.set()

    # -- closing ----------------------------------------------------------------

    async def _teardown(self) -> None:
        try:
            async with asyncio.timeout(TEARDOWN_TIMEOUT_S):
                if self.call_id is not None:
                    await calls_api.hangup(self.http, self.config, self.call_id)
                await self.pc.close()
        except TimeoutError:
            logger.warning("%r did not close within %s s", self, TEARDOWN_TIMEOUT_S)
        self.uplink.stop()
        self._gone.set()
        collect_soon()  # the closed connection is cyclic garbage: see runtime.reclaim


async def _plain(awaitable: Awaitable[Any], step: str) -> Any:
    """No guard: the channel's close ends the connection through ``run``'s timeout."""
    return await awaitable
