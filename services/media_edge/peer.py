"""One browser client's RTCPeerConnection on this edge.

A :class:`ClientPeer` answers the browser's offer, drains its microphone into an
:class:`Uplink` (``aud/in``), plays the model's voice on a :class:`DownlinkTrack`, and
holds the ``events`` DataChannel the browser opened. With the ``datachannel`` transport
its audio goes both ways as PCM16 on an ``audio`` DataChannel instead
(:mod:`.audio_channel`). It lives (``run()``) until it is
ended — removed, replaced by a reconnect, its session stopped, the edge shutting
down — or its connection fails, closes, never comes up, or goes silent (``lost``: no
microphone frame and no channel message for ``LOSS_AFTER_S``); then it closes
everything it owns and returns why it ended.

While it lives it pings the browser on its ``events`` channel every
``channel.PING_INTERVAL_S`` (the round trip metric, and a heartbeat the browser answers). When it connects it observes how
long ICE and DTLS took from the offer (``voxrelay_edge_ice_connect_seconds``) and
whether the path goes through a TURN relay (``voxrelay_edge_relayed_clients_total``,
once per client: a peer replacing another inherits ``relay_counted``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription

from proto.client_audio import LABEL as AUDIO_LABEL
from proto.ids import check_id
from services.runtime import rtc_configuration, strip_mdns_candidates
from services.runtime.ratelimit import TokenBucket
from services.runtime.reclaim import collect_soon

from .audio_channel import ChannelDownlink, ChannelUplink
from .channel import LABEL, PING_INTERVAL_S, EventsChannel, ignore_channel
from .config import EdgeConfig
from .ice_path import relayed
from .metrics import ICE_CONNECT, LOST, RELAYED_CLIENTS
from .tracks import DownlinkTrack
from .uplink import Publish, Uplink

logger = logging.getLogger(__name__)

LOSS_AFTER_S = 2.5
"A connected browser silent this long (no microphone frame, no channel message) is lost."
WATCH_INTERVAL_S = 0.5

ROLES = ("speaker", "listener")
TRANSPORTS = ("track", "datachannel")
OFFER_ERRORS = (
    ValueError, KeyError, IndexError, AttributeError, TypeError, AssertionError,
    InternalError, InvalidAccessError, InvalidStateError,
)
"What aiortc raises on an offer it cannot use (a truncated one can trip any of these)."


class InvalidOffer(ValueError):
    """The SDP offer cannot be answered; the message says why."""


@dataclass(frozen=True)
class ClientInfo:
    session_id: str
    client_id: str
    name: str = ""
    role: str = "speaker"
    "'speaker' (its microphone is published) or 'listener' (it only hears)."
    transport: str = "track"
    "'track' (audio over RTP) or 'datachannel' (PCM16 over a DataChannel)."

    def __post_init__(self) -> None:
        check_id(self.session_id, "session_id")
        check_id(self.client_id, "client_id")
        if self.role not in ROLES:
            raise ValueError(f"'role' must be one of {', '.join(ROLES)} (got {self.role!r})")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"'transport' must be one of {', '.join(TRANSPORTS)} "
                             f"(got {self.transport!r})")

    @property
    def label(self) -> str:
        return f"{self.session_id[:8]}/{self.client_id[:8]}"


def check_offer(sdp: str) -> None:
    """Reject what is plainly not a complete SDP offer before aiortc sees it.

    aiortc accepts an empty or garbage offer and answers it with nothing.
    """
    if not sdp.startswith("v=0"):
        raise InvalidOffer("expected an SDP offer starting with 'v=0'")
    if "\nm=" not in sdp:
        raise InvalidOffer("the offer has no media sections")
    try:
        parsed = SessionDescription.parse(sdp)
    except OFFER_ERRORS as e:
        raise InvalidOffer(f"unparseable SDP: {e or type(e).__name__}") from e
    for media in parsed.media:
        if media.dtls is None or not media.dtls.fingerprints:
            raise InvalidOffer(f"no DTLS fingerprint for media section '{media.kind}'")
        if not media.ice.usernameFragment or not media.ice.password:
            raise InvalidOffer(f"no ICE credentials for media section '{media.kind}'")


def ask_for_dtx(pc: RTCPeerConnection) -> None:
    """Put ``usedtx=1`` on Opus in the answer ``pc`` is about to make.

    Chromium's encoder honours it from the remote description: measured here, a
    microphone in a quiet room went from 50 packets a second to 4–6 (comfort noise every
    400 ms), each one saving the edge a wake-up, an SRTP decryption and a decode. aiortc
    writes the answer's ``a=fmtp`` from each transceiver's negotiated codecs and has no
    public way to add a parameter there, so this sets it on those codecs directly.
    """
    for transceiver in pc.getTransceivers():
        for codec in getattr(transceiver, "_codecs", ()):
            if codec.mimeType.lower() == "audio/opus":
                codec.parameters["usedtx"] = 1


def plays_dtx(offer_sdp: str) -> bool:
    """Whether the offer puts ``usedtx=1`` on Opus: its receiver asks for DTX (RFC 7587
    §6.1), so the model's pauses may reach it as DTX (``DownlinkTrack.dtx``). The web
    client's offer does; Chromium's own offer never says so, though it plays DTX."""
    types = re.findall(r"^a=rtpmap:(\d+) opus/48000", offer_sdp, re.MULTILINE | re.IGNORECASE)
    return any(re.search(rf"^a=fmtp:{pt} [^\r\n]*\busedtx=1\b", offer_sdp, re.MULTILINE)
               for pt in types)


class ClientPeer:
    """A browser's peer connection: answer, mic → ``aud/in``, model voice, events channel."""

    def __init__(self, info: ClientInfo, config: EdgeConfig, publish: Publish,
                 on_connected: Callable[[ClientPeer], None], *, first_seq: int = 0,
                 on_mute: Callable[[ClientPeer, bool], None] = lambda peer, muted: None) -> None:
        self.info = info
        self.name = info.label
        self._connect_timeout_s = config.connect_timeout_s
        self._dtx = config.dtx
        self._channel_limit = (config.channel_rate, config.channel_burst)
        self._ignored_channels = 0
        self.pc = RTCPeerConnection(rtc_configuration(config.ice_servers))
        self.uplink = Uplink(info.session_id, info.client_id, publish,
                             enabled=info.role == "speaker", first_seq=first_seq,
                             skip_silence=config.service.skip_silence)
        self.downlink: DownlinkTrack | ChannelDownlink
        "The model's voice to this client: an Opus track, or PCM16 on its audio channel."
        if info.transport == "datachannel":
            self.downlink = ChannelDownlink(config.queue_frames)
            self._channel_uplink: ChannelUplink | None = ChannelUplink(self.uplink, self.name)
        else:
            self.downlink = DownlinkTrack(config.queue_frames)
            self.uplink.on_heard = self.downlink.nudge  # its silence in the mic's wake-ups
            self._channel_uplink = None
        self.audio_channel: RTCDataChannel | None = None
        self.events: EventsChannel | None = None
        self.connected = False
        self.relay_counted = False
        "This client was already counted as relayed (by this peer or one it replaced)."
        self.end_reason = ""
        self._on_connected = on_connected
        self._on_mute = on_mute
        self._ended = asyncio.Event()
        self._channel_opened = asyncio.Event()
        self._offered_at: float | None = None
        self._closed = False
        self._mics: list[MediaStreamTrack] = []
        self._readers: list[asyncio.Task[None]] = []
        self._tg: asyncio.TaskGroup | None = None
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_state)

    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer to the browser's offer; raises InvalidOffer."""
        check_offer(offer_sdp)
        offer = RTCSessionDescription(sdp=strip_mdns_candidates(offer_sdp), type="offer")
        self._offered_at = time.monotonic()
        try:
            await self.pc.setRemoteDescription(offer)
        except OFFER_ERRORS as e:
            raise InvalidOffer(f"{type(e).__name__}: {e}") from e
        has_audio = any(t.kind == "audio" for t in self.pc.getTransceivers())
        if self.info.transport == "track":
            if not has_audio:
                raise InvalidOffer("the offer has no audio section")
            self.pc.addTrack(self.downlink)
            if self._dtx:
                ask_for_dtx(self.pc)
                assert isinstance(self.downlink, DownlinkTrack)
                self.downlink.dtx = plays_dtx(offer_sdp)
        elif has_audio:
            raise InvalidOffer("with transport 'datachannel' the audio goes on the 'audio' "
                               "DataChannel: the offer must not have an audio section")
        elif self.pc.sctp is None:
            raise InvalidOffer("the offer has no data channel")
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except OFFER_ERRORS as e:
            raise InvalidOffer(f"cannot answer: {type(e).__name__}: {e}") from e
        return self.pc.localDescription.sdp

    async def run(self) -> str:
        """Live until ended or the connection goes; close everything; return why it ended."""
        deadline = asyncio.get_running_loop().call_later(
            self._connect_timeout_s, self._on_connect_deadline)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for track in self._mics:
                    self._read(track)
                pinger = tg.create_task(self._ping(), name=f"ping-{self.name}")
                sender = (tg.create_task(self.downlink.run(), name=f"downlink-{self.name}")
                          if isinstance(self.downlink, ChannelDownlink) else None)
                await self._ended.wait()
                pinger.cancel()
                if sender is not None:
                    sender.cancel()
                await self.close()
                for reader in self._readers:
                    reader.cancel()  # a track that never started never ends by itself
        finally:
            self._tg = None
            deadline.cancel()
            await self.close()
        logger.info("ClientPeer(%s) ended: %s", self.name, self.end_reason)
        return self.end_reason

    def end(self, reason: str) -> None:
        """Ask ``run()`` to finish; the first reason given is the one reported."""
        if not self._ended.is_set():
            self.end_reason = reason
            self.uplink.enabled = False  # a replacement may carry on this client's aud/in
            self._ended.set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def close(self) -> None:
        """Close the peer connection and the outbound track (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.downlink.stop()
        await self.pc.close()
        collect_soon()  # the closed connection is cyclic garbage: see runtime.reclaim

    def play(self, pcm: bytes, packet: bytes, capture_ns: int) -> None:
        """Queue one 20 ms frame of model audio (PCM and its Opus ``packet``) captured at
        ``capture_ns`` (ignored until connected)."""
        if self.connected and not self.ended:
            self.downlink.push(pcm, packet, capture_ns)

    def interrupt(self) -> int:
        """Drop the queued model audio at once; returns the frames dropped."""
        return self.downlink.clear()

    def mute(self, muted: bool) -> None:
        """The client (un)muted its microphone: stop or resume publishing it."""
        if muted == self.uplink.muted or self.ended:
            return
        self.uplink.muted = muted
        logger.info("ClientPeer(%s) %s", self.name, "muted" if muted else "unmuted")
        self._on_mute(self, muted)

    def send_event(self, text: str) -> bool:
        return self.events is not None and self.events.send(text)

    async def _ping(self) -> None:
        """Ping the browser on its events channel, once it has one, and watch for its
        loss, until cancelled."""
        await self._channel_opened.wait()
        loop = asyncio.get_running_loop()
        next_ping = loop.time()
        while not self.ended:
            if self.events is not None and loop.time() >= next_ping:
                self.events.ping()
                next_ping = loop.time() + PING_INTERVAL_S
            self._watch(time.monotonic())
            await asyncio.sleep(WATCH_INTERVAL_S)

    def _watch(self, now: float) -> None:
        """End the peer as ``lost`` once the browser has been silent for ``LOSS_AFTER_S``:
        no microphone frame and no message on its channel (it answers every ping).

        aiortc has no "disconnected" state and reports a vanished peer as failed only
        after ~30 s of consent checks; this notices within a few seconds, so the client's
        place is freed (and its reconnect, under the same id, replaces this peer anyway).
        Only what the client has shown counts: one that never sent either is not judged.
        """
        heard = [t for t in (self.uplink.heard_at,
                             self.events.heard_at if self.events is not None else None)
                 if t is not None]
        if self.connected and heard and now - max(heard) > LOSS_AFTER_S:
            logger.warning("ClientPeer(%s) silent for %.1f s: lost", self.name,
                           now - max(heard))
            LOST.inc()
            self.end("lost")

    def _read(self, track: MediaStreamTrack) -> None:
        assert self._tg is not None
        self._readers.append(self._tg.create_task(self.uplink.run(track),
                                                  name=f"uplink-{self.name}"))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            logger.info("ClientPeer(%s) ignores a %s track", self.name, track.kind)
            return
        if self._tg is None:
            self._mics.append(track)  # the offer is being applied: run() starts the reader
        else:
            self._read(track)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label == AUDIO_LABEL and self._channel_uplink is not None \
                and self.audio_channel is None:
            self._on_audio_channel(channel)
            return
        if channel.label != LABEL or self.events is not None:
            self._ignored_channels += 1
            if self._ignored_channels == 1:  # once: a client may open thousands
                logger.info("ClientPeer(%s) ignores data channel %r", self.name,
                            channel.label[:64])
            ignore_channel(channel)
            return
        self.events = EventsChannel(channel, self.name, on_mute=self.mute,
                                    limit=TokenBucket(*self._channel_limit))
        self._channel_opened.set()

    def _on_audio_channel(self, channel: RTCDataChannel) -> None:
        assert self._channel_uplink is not None and isinstance(self.downlink, ChannelDownlink)
        if not channel.ordered or channel.maxRetransmits is not None \
                or channel.maxPacketLifeTime is not None:
            logger.warning("ClientPeer(%s) ignores its audio channel: it must be ordered and "
                           "reliable", self.name)
            ignore_channel(channel)
            return
        self.audio_channel = channel
        channel.on("message", self._channel_uplink.on_message)
        self.downlink.attach(channel)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        logger.debug("ClientPeer(%s) connection %s", self.name, state)
        if state == "connected" and not self.connected and not self.ended:
            self.connected = True
            self._observe_connection()
            self._on_connected(self)
        elif state in ("failed", "closed"):
            self.end(state)

    def _observe_connection(self) -> None:
        if self._offered_at is not None:
            ICE_CONNECT.observe(time.monotonic() - self._offered_at)
        if not self.relay_counted and relayed(self.pc):
            self.relay_counted = True
            RELAYED_CLIENTS.inc()
            logger.info("ClientPeer(%s) connected through a TURN relay", self.name)

    def _on_connect_deadline(self) -> None:
        if not self.connected:
            logger.warning("ClientPeer(%s) did not connect within %.0f s", self.name,
                           self._connect_timeout_s)
            self.end("connect_timeout")
