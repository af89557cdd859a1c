"""A lean RTP loop for tracks that hand aiortc ready voice packets.

For every packet, stock aiortc's ``RTCRtpSender._run_rtp`` asks its Opus encoder to
``pack`` it (converting the pts with ``Fraction`` arithmetic), builds an ``RtpPacket``,
fills its header extensions from the clock's ``datetime``, serializes it through the
general ``HeaderExtensionsMap``, keeps it for retransmission and only then encrypts and
sends it: some 125 Python calls a packet, and in a service woken for that packet they
find the CPU's caches cold (``python -m benchmarks.rtp_cost``: aiortc adds about 325 µs
to every packet sent over a bare socket).

:func:`install_lean_rtp_send` replaces ``_run_rtp`` with a loop that, for a track
marked ``voice_packets = True`` (its ``recv`` returns
:func:`~services.runtime.voice_codec.voice_packet`\\ s, pts at 24 kHz), builds the header
with one ``struct`` call and a precomputed extension block (:class:`RtpHeaders`: the
same bytes aiortc's serializer makes, the abs-send-time written in place), encrypts it
and sends it straight to the selected ICE candidate pair's UDP socket
(:class:`PairSend`, where aiortc goes through four coroutines of its DTLS and ICE
transports), and keeps the counters the sender's RTCP reports and ``getStats`` read.
Any other track takes the stock loop. Not kept: the retransmission history (aiortc
offers no NACK for audio).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import struct
import time
from typing import Any

from aiortc.mediastreams import MediaStreamError

logger = logging.getLogger(__name__)

NTP_EPOCH_S = 2_208_988_800
"Seconds from the NTP epoch (1900) to the Unix one."
RTP_TICKS_PER_PTS = 2
"A voice packet's pts counts 24 kHz samples; Opus's RTP clock runs at 48 kHz."
_HEADER = struct.Struct("!BBHLL")
_MARKER = 0x80
"Set on every voice packet, as aiortc sets it on a frame's last (here only) payload."


def ntp_now() -> int:
    """Now as a 64-bit NTP timestamp, to the microsecond (aiortc's
    ``clock.current_ntp_time``, without the ``datetime`` arithmetic)."""
    ns = time.time_ns() + NTP_EPOCH_S * 1_000_000_000
    return (ns // 1_000_000_000 << 32) | ((ns // 1000 % 1_000_000) << 32) // 1_000_000


class RtpHeaders:
    """RTP headers for one sender's voice packets, as aiortc serializes them: version 2,
    the marker set, the negotiated ``mid`` and ``abs-send-time`` extensions."""

    def __init__(self, extensions_map: Any, mid: str | None, payload_type: int,
                 ssrc: int) -> None:
        from aiortc.rtp import HeaderExtensions
        profile, zeros = extensions_map.set(HeaderExtensions(mid=mid, abs_send_time=0))
        _, ones = extensions_map.set(HeaderExtensions(mid=mid, abs_send_time=0xFFFFFF))
        self._at = next((i for i, (a, b) in enumerate(zip(zeros, ones)) if a != b), None)
        "Where the abs-send-time value sits in the block (None: not negotiated)."
        block = struct.pack("!HH", profile, len(zeros) >> 2) + zeros if zeros else b""
        if self._at is not None:
            self._at += 4  # past the profile and length
        self._block = block
        self._first = 0x90 if block else 0x80  # version 2, with or without extensions
        self._second = _MARKER | payload_type
        self._ssrc = ssrc

    def packet(self, sequence_number: int, timestamp: int, ntp: int, payload: bytes
               ) -> bytes:
        head = _HEADER.pack(self._first, self._second, sequence_number, timestamp,
                            self._ssrc)
        at = self._at
        if at is None:
            return head + self._block + payload
        sent = ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
        return head + self._block[:at] + sent + self._block[at + 3:] + payload


_installed = False


def install_lean_rtp_send() -> bool:
    """Send voice-packet tracks with the lean loop (see the module docs).

    Call it once per process before any peer connection starts (idempotent). Returns
    False, changing nothing, if this aiortc's sender has another shape.
    """
    global _installed
    if _installed:
        return True
    from aiortc import rtcrtpsender
    sender_class = rtcrtpsender.RTCRtpSender
    stock = sender_class._run_rtp
    if list(inspect.signature(stock).parameters) != ["self", "codec"] or not all(
            hasattr(rtcrtpsender, name) for name in ("random32", "random_sequence_number")):
        logger.warning("aiortc's RTCRtpSender changed shape: voice goes out its own way")
        return False

    async def run_rtp(self: Any, codec: Any) -> None:
        try:
            fields = _SenderFields(self)
        except AttributeError:
            logger.warning("aiortc's RTCRtpSender lacks what the lean loop keeps up")
            fields = None
        if fields is None or not getattr(fields.track(), "voice_packets", False):
            await stock(self, codec)
            return
        await _lean_loop(self, fields, codec, rtcrtpsender, stock)

    sender_class._run_rtp = run_rtp  # type: ignore[method-assign]
    _installed = True
    return True


class _SenderFields:
    """The private state of aiortc's ``RTCRtpSender`` that its stock loop keeps."""

    def __init__(self, sender: Any) -> None:
        self.sender = sender
        for name in ("track", "rtp_started", "rtp_exited", "mid",
                     "rtp_header_extensions_map", "ntp_timestamp", "rtp_timestamp",
                     "octet_count", "packet_count"):
            getattr(sender, f"_RTCRtpSender__{name}")  # AttributeError if renamed

    def track(self) -> Any:
        return self.sender._RTCRtpSender__track

    def get(self, name: str) -> Any:
        return getattr(self.sender, f"_RTCRtpSender__{name}")

    def sent(self, ntp: int, timestamp: int, octets: int) -> None:
        s = self.sender
        s._RTCRtpSender__ntp_timestamp = ntp
        s._RTCRtpSender__rtp_timestamp = timestamp
        s._RTCRtpSender__octet_count += octets
        s._RTCRtpSender__packet_count += 1


async def _lean_loop(sender: Any, fields: _SenderFields, codec: Any, rtcrtpsender: Any,
                     stock: Any) -> None:
    """aiortc's ``_run_rtp`` for ready voice packets: the same start, stop and counters.
    A track replaced by one of another kind goes on in ``stock``."""
    fields.get("rtp_started").set()
    headers = RtpHeaders(fields.get("rtp_header_extensions_map"), fields.get("mid"),
                         codec.payloadType, sender._ssrc)
    sequence_number = rtcrtpsender.random_sequence_number()
    timestamp_origin = rtcrtpsender.random32()
    transport = sender.transport
    send_now = PairSend.for_transport(transport)
    try:
        while True:
            track = fields.track()
            if not track:
                await asyncio.sleep(0.02)
                continue
            if not getattr(track, "voice_packets", False):
                await stock(sender, codec)
                return
            packet = await track.recv()
            if not sender._enabled:
                continue
            timestamp = (timestamp_origin + packet.pts * RTP_TICKS_PER_PTS) & 0xFFFFFFFF
            payload = bytes(packet)
            ntp = ntp_now()
            data = headers.packet(sequence_number, timestamp, ntp, payload)
            if not send_now(data):
                await transport._send_rtp(data)
            fields.sent(ntp, timestamp, len(payload))
            sequence_number = (sequence_number + 1) & 0xFFFF
    except (asyncio.CancelledError, ConnectionError, MediaStreamError):
        pass
    except Exception:  # as stock: the sender's stop() waits for rtp_exited
        logger.exception("lean RTP loop failed")
    track = fields.track()
    if track:
        track.stop()
        sender._RTCRtpSender__track = None
    fields.get("rtp_exited").set()


class PairSend:
    """Encrypt an RTP packet and send it on the selected candidate pair's UDP socket, as
    the DTLS transport's ``_send_rtp`` does through aioice's ``send``, ``sendto`` and
    ``send_data`` coroutines, counting it as the transport counts it. A call returns
    False, having sent nothing, where those coroutines must do it: the transport not
    connected (they raise), no pair selected yet, a TURN relay's pair, or a packet
    aiortc would take for RTCP."""

    def __init__(self, dtls: Any, connection: Any, udp: type) -> None:
        self._dtls = dtls
        self._nominated = connection._nominated
        self._udp = udp
        from aiortc.rtcdtlstransport import State
        self._connected = State.CONNECTED

    @classmethod
    def for_transport(cls, dtls: Any) -> Any:
        """The sender for ``dtls`` (an ``RTCDtlsTransport``); a function that never
        sends if aiortc or aioice has another shape."""
        from aioice.ice import StunProtocol
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        if not all(hasattr(dtls, name) for name in (
                "_state", "_tx_srtp", "_RTCDtlsTransport__tx_bytes",
                "_RTCDtlsTransport__tx_packets")) \
                or not isinstance(getattr(connection, "_nominated", None), dict):
            logger.warning("aiortc's DTLS or ICE transport changed shape: voice is sent "
                           "its own way")
            return lambda data: False
        return cls(dtls, connection, StunProtocol)

    def __call__(self, data: bytes) -> bool:
        dtls = self._dtls
        pair = self._nominated.get(1)
        if dtls._state is not self._connected or pair is None \
                or type(pair.protocol) is not self._udp or 192 <= data[1] <= 208:
            return False
        data = dtls._tx_srtp.protect(data)
        pair.protocol.transport.sendto(data, pair.remote_addr)
        dtls._RTCDtlsTransport__tx_bytes += len(data)
        dtls._RTCDtlsTransport__tx_packets += 1
        return True
