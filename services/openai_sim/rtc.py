"""WebRTC calls: the simulator as an aiortc answerer for ``POST /v1/realtime/calls``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from services.runtime import rtc_configuration, strip_mdns_candidates
from services.runtime.reclaim import collect_soon
from services.runtime.sdp import OFFER_PARSE_ERRORS, InvalidOffer, check_offer
from services.runtime.tasks import TaskOwner

from . import ids
from .config import SimConfig
from .realtime_session import RealtimeSession, Transport
from .rtc_audio import ModelAudioTrack, read_microphone
from .sinks import DataChannelSink
from .voice import Voice

logger = logging.getLogger(__name__)

EVENTS_LABEL = "oai-events"


def check_real_offer(sdp: str) -> None:
    """The checks every voxrelay answerer makes, plus the real service's own quirk."""
    if sdp.startswith("v=0") and not sdp.endswith("\n"):
        # The real service's parser needs every line terminated: an offer whose final
        # CRLF was trimmed (or that was cut off mid-line) fails with exactly this.
        raise InvalidOffer("failed to unmarshal SDP: EOF")
    check_offer(sdp)


class RtcCall:
    """One WebRTC call: peer connection, session, and any sideband sockets."""

    def __init__(self, sim: SimConfig, voice: Voice, session_config: dict[str, Any]) -> None:
        self.id = ids.rtc_call_id()
        self.sim = sim
        self.pc = RTCPeerConnection(rtc_configuration(sim.ice_servers))
        self.track = ModelAudioTrack(on_started=self._audio_started, on_stopped=self._audio_stopped)
        self.session = RealtimeSession(sim, voice, Transport.WEBRTC, session=session_config,
                                       track=self.track)
        self.sideband_closers: list[Callable[[int, str], None]] = []
        self._ended = asyncio.Event()
        self._microphones: list[MediaStreamTrack] = []
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)
        self._close_code, self._close_reason = 1000, "call ended"
        self.session.on_close(self._session_ended)

    async def answer(self, offer_sdp: str) -> str:
        check_real_offer(offer_sdp)
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=strip_mdns_candidates(offer_sdp), type="offer")
            )
        except OFFER_PARSE_ERRORS as e:
            raise InvalidOffer(str(e) or type(e).__name__) from e
        if not any(t.kind == "audio" for t in self.pc.getTransceivers()):
            raise InvalidOffer("the offer has no audio section")
        self.pc.addTrack(self.track)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def run(self, owner: TaskOwner) -> None:
        """Live until hangup, peer failure, the session cap or a drop."""
        session_task = owner.spawn(self.session.run(), f"session-{self.id}")
        for track in self._microphones:
            owner.spawn(read_microphone(track, self.session.feed_audio), f"mic-{self.id}")
        self._owner = owner
        try:
            if self.sim.drop_after_s > 0:
                try:
                    await asyncio.wait_for(self._ended.wait(), self.sim.drop_after_s)
                except TimeoutError:
                    logger.info("RtcCall(%s) dropped by the fault switch", self.id)
            else:
                await self._ended.wait()
        finally:
            self.session.close()
            await self.pc.close()
            collect_soon()  # the closed connection is cyclic garbage: see runtime.reclaim
            for close in list(self.sideband_closers):
                close(self._close_code, self._close_reason)
            await asyncio.wait({session_task}, timeout=1.0)

    def end(self) -> None:
        self._ended.set()

    def _session_ended(self, code: int, reason: str) -> None:
        """The session ended itself (the cap): sidebands hear why, as WebSockets do."""
        self._close_code, self._close_reason = code, reason
        self._ended.set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_LABEL:
            logger.info("RtcCall(%s) ignores data channel %r", self.id, channel.label)
            return
        sink = DataChannelSink(channel)
        self.session.attach(sink)
        channel.on("message", self.session.handle_message)
        channel.on("close", lambda: self.session.detach(sink))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            return
        owner = getattr(self, "_owner", None)
        if owner is None:
            self._microphones.append(track)
        else:
            owner.spawn(read_microphone(track, self.session.feed_audio), f"mic-{self.id}")

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._ended.set()

    def _audio_started(self, response_id: str) -> None:
        self.session.notify("output_audio_buffer.started", response_id=response_id)

    def _audio_stopped(self, response_id: str) -> None:
        self.session.notify("output_audio_buffer.stopped", response_id=response_id)
