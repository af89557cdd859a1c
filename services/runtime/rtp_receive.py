"""A lean path for received RTP: handled in the socket's callback, not a task later.

Stock aiortc receives every datagram in three steps. aioice's ``StunProtocol`` first
tries to parse it as STUN (an exception for every media packet), then its
``Connection`` puts it on a queue; the DTLS transport's task, woken for it, resumes
through five coroutine frames (``__run``, ``_recv_next``, the ICE transport's
``_recv``, ``recv``, ``recvfrom``) before it decrypts the packet and hands it to the
receiver. Woken once a packet, that is a task step and a cold walk of the loop's
machinery for every 20 ms of audio (``python -m benchmarks.rtp_cost``: aiortc adds
about 250 µs to every packet received over a bare socket).

:func:`install_lean_rtp_receive` lets an SRTP packet skip those steps once the DTLS
transport has its keys: the socket's callback counts it as the transport would and
decrypts it. A packet for an audio receiver with nothing but Opus to do (no NACK, REMB
or RTX: aiortc's audio receivers, with :class:`~.voice_codec.PromptJitterBuffer`) is
then handled by :class:`VoiceIn`, which does what the receiver's
``_handle_rtp_packet`` does for it with the header read once: the RTCP statistics,
the jitter buffer, the timestamp mapping, the decoder. Any other packet goes to the
transport's own ``_handle_rtp_data`` at once (:func:`run_now`). DTLS, STUN, RTCP and
anything that arrives while the transport's queue still holds data take the stock
path, so packets keep their order. With :func:`~.voice_codec.install_inline_decoding`
and :func:`~.media.read_frames`, a voice packet is decoded and its frame consumed in
the same callback, with no task woken for it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import struct
from collections.abc import Coroutine
from typing import Any

from .voice_codec import PromptJitterBuffer

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHLL")
_RECEIVER = "_RTCRtpReceiver__"
"The prefix of aiortc's receiver's private names."
_DECODER_THREAD = _RECEIVER + "decoder_thread"


def run_now(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` on the caller's stack; should it wait for something, a task takes
    it on from there (so a coroutine that never suspends costs no task at all).

    An exception it raises is logged, not passed to the caller: a bad packet must not
    break a socket callback.
    """
    done, waited = _step(coro)
    if not done:
        asyncio.ensure_future(_finish(coro, waited))


def _step(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Resume ``coro`` once: (True, None) once it has returned or failed (logged), else
    (False, what it now waits for)."""
    try:
        return False, coro.send(None)
    except StopIteration:
        return True, None
    except Exception:
        logger.exception("a received packet's handling failed")
        return True, None


async def _finish(coro: Coroutine[Any, Any, Any], waited: Any) -> None:
    """Go on with ``coro`` after it yielded ``waited`` (a future, or None for a bare
    yield), as a task would."""
    done = False
    while not done:
        if waited is None:
            await asyncio.sleep(0)
        else:
            waited._asyncio_future_blocking = False
            await asyncio.wait((waited,))
        done, waited = _step(coro)


_installed = False


def install_lean_rtp_receive() -> bool:
    """Handle received SRTP in the socket's callback (see the module docs).

    Call it once per process before any peer connection starts (idempotent). Returns
    False, changing nothing, if this aiortc or aioice has another shape.
    """
    global _installed
    if _installed:
        return True
    import aioice.ice
    import pylibsrtp
    from aiortc import clock, rtcdtlstransport
    from aiortc.rtp import is_rtcp

    dtls_class = rtcdtlstransport.RTCDtlsTransport
    connection_class = aioice.ice.Connection
    protocol_class = aioice.ice.StunProtocol
    stock_register = dtls_class._register_rtp_receiver
    stock_data = connection_class.data_received
    stock_datagram = protocol_class.datagram_received
    if not (list(inspect.signature(dtls_class._handle_rtp_data).parameters)
            == ["self", "data", "arrival_time_ms"]
            and list(inspect.signature(stock_data).parameters)
            == ["self", "data", "component"]
            and list(inspect.signature(stock_register).parameters)
            == ["self", "receiver", "parameters"]):
        logger.warning("aiortc's receive path changed shape: RTP is received its own way")
        return False
    connected = rtcdtlstransport.State.CONNECTED

    def register_rtp_receiver(self: Any, receiver: Any, parameters: Any) -> None:
        stock_register(self, receiver, parameters)
        connection = getattr(self.transport, "_connection", None)
        if all(hasattr(self, name) for name in ("_rx_srtp", "_state",
                                                "_RTCDtlsTransport__rx_bytes",
                                                "_RTCDtlsTransport__rx_packets")
               ) and isinstance(getattr(connection, "_queue", None), asyncio.Queue):
            connection._lean_dtls = self
        else:
            logger.warning("aiortc's DTLS transport changed shape: RTP is received "
                           "its own way")

    def datagram_received(self: Any, data: Any, addr: Any) -> None:
        if data and 127 < data[0] < 192:  # RTP or RTCP: never STUN (RFC 7983)
            self.receiver.data_received(data, self.local_candidate.component)
        else:
            stock_datagram(self, data, addr)

    def data_received(self: Any, data: bytes, component: int) -> None:
        dtls = getattr(self, "_lean_dtls", None)
        if (dtls is None or not data or not 127 < data[0] < 192 or not self._queue.empty()
                or dtls._rx_srtp is None or dtls._state is not connected
                or is_rtcp(data)):
            stock_data(self, data, component)
            return
        dtls._RTCDtlsTransport__rx_bytes += len(data)
        dtls._RTCDtlsTransport__rx_packets += 1
        try:
            data = dtls._rx_srtp.unprotect(data)
        except pylibsrtp.Error:  # as stock: not ours, replayed or damaged
            return
        receiver = dtls._rtp_router.ssrc_table.get(int.from_bytes(data[8:12], "big"))
        voice = VoiceIn.of(receiver) if receiver is not None else None
        if voice is None or not voice.take(data):
            run_now(dtls._handle_rtp_data(data, clock.current_ms()))

    dtls_class._register_rtp_receiver = register_rtp_receiver  # type: ignore
    connection_class.data_received = data_received  # type: ignore[method-assign]
    protocol_class.datagram_received = datagram_received  # type: ignore
    _installed = True
    return True


def rtp_fields(data: bytes) -> tuple[int, int, int, int, bytes] | None:
    """A decrypted RTP packet's payload type, sequence number, timestamp, SSRC and
    payload (past any CSRCs and header extensions, without padding), as aiortc's
    ``RtpPacket.parse`` reads them; None where it would refuse the packet."""
    if len(data) < _HEADER.size:
        return None
    first, second, sequence_number, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        return None
    start = _HEADER.size + 4 * (first & 0x0F)
    if first & 0x10:  # header extensions: their profile, then their length in words
        if len(data) < start + 4:
            return None
        start += 4 + 4 * int.from_bytes(data[start + 2:start + 4], "big")
    end = len(data)
    if first & 0x20:
        end -= data[-1]
        if not data[-1] or end < start:
            return None
    if end < start:
        return None
    return second & 0x7F, sequence_number, timestamp, ssrc, data[start:end]


class _Packet:
    """What the receiver's statistics and jitter buffer read of an RTP packet."""

    __slots__ = ("sequence_number", "timestamp", "_data")

    def __init__(self, sequence_number: int, timestamp: int, data: bytes) -> None:
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self._data = data
        "The payload, depayloaded (for Opus, as it came)."


class VoiceIn:
    """An aiortc audio receiver's Opus packets, handled as its ``_handle_rtp_packet``
    handles them when it has no NACK, REMB or RTX to do:

    - a disabled receiver drops them;
    - the SSRC is noted as active (``getSynchronizationSources``);
    - the RTCP statistics (``StreamStatistics``: receiver reports, ``getStats``) take
      each one;
    - the jitter buffer (:class:`~.voice_codec.PromptJitterBuffer`) hands on each frame,
      its timestamp mapped as the receiver maps it, to the receiver's decoder queue.

    Not kept: clearing the decoder's error flag, which only video reads (for PLI).
    """

    def __init__(self, receiver: Any) -> None:
        from aiortc import clock
        from aiortc.rtcrtpreceiver import StreamStatistics

        def private(name: str) -> Any:
            return getattr(receiver, _RECEIVER + name)  # AttributeError if renamed

        if private("kind") != "audio" or private("nack_generator") is not None \
                or private("remote_bitrate_estimator") is not None:
            raise LookupError("not an audio receiver")
        self._jitter = private("jitter_buffer")
        if not isinstance(self._jitter, PromptJitterBuffer):
            raise LookupError("the audio jitter buffer is aiortc's")
        self._receiver = receiver
        self._opus = {pt: codec for pt, codec in private("codecs").items()
                      if codec.mimeType.lower() == "audio/opus"}
        self._active = private("active_ssrc")
        self._streams = private("remote_streams")
        self._mapper = private("timestamp_mapper")
        self._queue = private("decoder_queue")
        private("decoder_thread")
        self._now = clock.current_datetime
        self._statistics = StreamStatistics

    @classmethod
    def of(cls, receiver: Any) -> VoiceIn | None:
        """``receiver``'s, made at its first packet; None if it is not such a receiver."""
        voice = receiver.__dict__.get("_voice_in", False)
        if voice is False:
            try:
                voice = cls(receiver)
            except (LookupError, AttributeError) as e:
                logger.debug("%r takes aiortc's receive path: %s", receiver, e)
                voice = None
            receiver._voice_in = voice
        return voice

    def take(self, data: bytes) -> bool:
        """Handle one decrypted packet; False leaves it to aiortc (not Opus, not RTP
        version 2, or cut short: aiortc drops what it cannot parse)."""
        parsed = rtp_fields(data)
        if parsed is None:
            return False
        payload_type, sequence_number, timestamp, ssrc, payload = parsed
        codec = self._opus.get(payload_type)
        if codec is None:
            return False
        receiver = self._receiver
        if not receiver._enabled:
            return True
        self._active[ssrc] = self._now()
        packet = _Packet(sequence_number, timestamp, payload)
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = self._statistics(codec.clockRate)
        stream.add(packet)
        _, frame = self._jitter.add(packet)
        if frame is not None and getattr(receiver, _DECODER_THREAD):
            frame.timestamp = self._mapper.map(frame.timestamp)
            self._queue.put((codec, frame))
        return True
