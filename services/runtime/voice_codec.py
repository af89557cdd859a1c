"""Opus for voice, encoded once in the event loop and handed to aiortc as packets.

Stock aiortc encodes every outbound audio frame itself: it measures the frame's audio
level in pure Python, hops to a thread pool, resamples to 48 kHz stereo and encodes
at 96 kbit/s stereo, then hops back. A track whose ``recv()`` returns an
``av.Packet`` skips all of that: aiortc only packetizes it (``Encoder.pack``).

:class:`VoiceEncoder` makes those packets from the bus format (PCM16 24 kHz mono,
20 ms): mono, 24 kHz internal rate, ``voip`` tuning, 32 kbit/s and a low complexity by
default — speech needs no more, and the encode costs about half of stock's. A frame
below :data:`~services.runtime.media.AUDIBLE_PEAK` that follows
:data:`SILENCE_TAIL_FRAMES` quiet frames is not encoded at all: it becomes
:data:`SILENCE_PACKET`, a constant 20 ms Opus frame that every decoder plays as
silence. The tail lets the encoder fade out rather than stop mid-waveform.

:func:`voice_packet` stamps a packet for aiortc: ``pts`` in 1/24000 s, which aiortc
converts to the 48 kHz RTP clock that Opus always uses.

:func:`install_inline_decoding` moves aiortc's decoding of received audio from a
thread per receiver onto the event loop (see its docs): the decode itself (~35 µs a
frame, straight to 24 kHz mono with :class:`~.voice_decoder.VoiceDecoder`) costs less
than the two thread hops it replaces.

:func:`install_prompt_jitter` hands each received audio packet on as it arrives
instead of after aiortc's four-frame prefetch (80 ms per receiving hop; see its docs).
"""

from __future__ import annotations

import asyncio
import ctypes
import fractions
import inspect
import logging
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

import av
from av import CodecContext, Packet
from prometheus_client import Counter

from proto.audio import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE

from .media import audible, pcm_frame
from .voice_decoder import OpusError, VoiceDecoder, load_libopus

logger = logging.getLogger(__name__)

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
SILENCE_PACKET = b"\xf8\xff\xfe"
"One 20 ms Opus frame of silence (CELT, full band, mono): decodes to zeros everywhere."
DTX_PACKET = b"\xf8"
"""An Opus packet of one TOC byte and no frame (RFC 6716 §3.2.1): what a DTX sender
sends in a pause. Receivers read a packet of two bytes or less as DTX (WebRTC's NetEq
plays comfort noise until the next one; libopus decodes it as 20 ms of concealment)."""
SILENCE_TAIL_FRAMES = 5
"Quiet frames still encoded after sound, so the encoder's output decays naturally."
DEFAULT_BITRATE = 32_000
DEFAULT_COMPLEXITY = 3
"libopus complexity 0–10: 3 costs ~60% of stock's encode and is indistinguishable in speech."


OPUS_APPLICATION_VOIP = 2048
OPUS_SET_BITRATE = 4002
OPUS_SET_COMPLEXITY = 4010
OPUS_SET_VBR_CONSTRAINT = 4020
MAX_PACKET_BYTES = 1500
"Room for any one 20 ms Opus packet (libopus's own limit is 1275 bytes a frame)."


class VoiceEncoder:
    """PCM16 24 kHz mono 20 ms frames → Opus packets, in the calling thread.

    One encoder serves one outbound stream (its state carries from frame to frame), or
    one session's model audio fanned out to all of its clients.

    On Linux it calls libopus directly (:class:`_LibopusEncoder`); elsewhere, or if
    libopus does not load, it goes through PyAV (:class:`_PyAVEncoder`). Both run the
    same libopus with the same settings, so the packets are the same.
    """

    def __init__(self, bitrate: int = DEFAULT_BITRATE,
                 complexity: int = DEFAULT_COMPLEXITY) -> None:
        if not 0 <= complexity <= 10:
            raise ValueError(f"'complexity' must be 0–10 (got {complexity})")
        # opus_encoder_ctl is variadic: ctypes passes its arguments as the platform's C
        # convention wants only where that is the fixed-argument one (not Apple arm64)
        lib = load_libopus() if sys.platform == "linux" else None
        self._encode: Callable[[bytes], bytes] = (
            _LibopusEncoder(lib, bitrate, complexity) if lib is not None
            else _PyAVEncoder(bitrate, complexity))
        self._quiet = SILENCE_TAIL_FRAMES
        self.encoded = 0
        "Frames that went through libopus (the rest were silence)."

    def encode(self, pcm: bytes) -> bytes:
        """One 20 ms frame (960 bytes) as one Opus packet."""
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"a frame must be {FRAME_BYTES} bytes (got {len(pcm)})")
        if audible(pcm):
            self._quiet = 0
        else:
            self._quiet += 1
            if self._quiet > SILENCE_TAIL_FRAMES:
                return SILENCE_PACKET
        self.encoded += 1
        return self._encode(bytes(pcm)) or SILENCE_PACKET


class _LibopusEncoder:
    """One libopus encoder state called through :mod:`ctypes`: PCM16 in, a packet out.

    PyAV's way to the same encoder builds an ``AudioFrame`` per frame and runs it
    through FFmpeg's frame queue: a voice frame costs about 100 µs this way against 130
    that way with the CPU's caches cold, as they are when a service wakes for its next
    frame, and 90 against 105 with them warm (``python -m benchmarks.encode_cost``).
    """

    def __init__(self, lib: Any, bitrate: int, complexity: int) -> None:
        error = ctypes.c_int()
        state = lib.opus_encoder_create(SAMPLE_RATE, 1, OPUS_APPLICATION_VOIP,
                                        ctypes.byref(error))
        if not state or error.value:
            raise RuntimeError(f"opus_encoder_create failed ({error.value})")
        self._lib = lib
        self._state = state
        # as FFmpeg's wrapper sets them: VBR (libopus's default) without its constraint
        for request, value in ((OPUS_SET_BITRATE, bitrate), (OPUS_SET_COMPLEXITY, complexity),
                               (OPUS_SET_VBR_CONSTRAINT, 0)):
            if lib.opus_encoder_ctl(ctypes.c_void_p(state), ctypes.c_int(request),
                                    ctypes.c_int32(value)):
                raise RuntimeError(f"opus_encoder_ctl({request}, {value}) failed")
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.opus_encoder_destroy(state)

    def __call__(self, pcm: bytes) -> bytes:
        size = self._lib.opus_encode(self._state, pcm, FRAME_SAMPLES, self._out,
                                     MAX_PACKET_BYTES)
        if size < 0:
            raise OpusError(f"libopus could not encode a frame ({size})")
        return ctypes.string_at(self._out, size)


class _PyAVEncoder:
    """The same encoder through PyAV's ``CodecContext`` (FFmpeg's libopus wrapper)."""

    def __init__(self, bitrate: int, complexity: int) -> None:
        codec: Any = CodecContext.create("libopus", "w")
        codec.sample_rate = SAMPLE_RATE
        codec.layout = "mono"
        codec.format = "s16"
        codec.bit_rate = bitrate
        codec.time_base = TIME_BASE
        codec.options = {"application": "voip", "compression_level": str(complexity),
                         "frame_duration": "20"}
        codec.open()
        self._codec = codec
        self._pts = 0

    def __call__(self, pcm: bytes) -> bytes:
        packets = self._codec.encode(pcm_frame(pcm, self._pts))
        self._pts += FRAME_SAMPLES
        # libopus at 20 ms frames returns exactly one packet per frame
        return b"".join(bytes(p) for p in packets)


def voice_packet(data: bytes, pts: int) -> Packet:
    """An Opus packet for an aiortc track's ``recv()``: ``pts`` in samples at 24 kHz."""
    packet = Packet(data)
    packet.pts = pts
    packet.time_base = TIME_BASE
    return packet


def _takes(function: Any, *names: str) -> bool:
    """Whether an aiortc internal still has the parameters a patch of it relies on."""
    return list(inspect.signature(function).parameters) == list(names)


# -- inline decoding ----------------------------------------------------------------

_installed = False


def install_inline_decoding() -> bool:
    """Decode received audio on the event loop instead of a thread per receiver.

    aiortc's ``RTCRtpReceiver`` hands every complete frame to ``decoder_worker`` in a
    thread through a ``queue.Queue``; the thread decodes it and schedules
    ``queue.put`` back on the loop — two thread hops and a task per 20 ms frame. This
    replaces ``aiortc.rtcrtpreceiver.decoder_worker`` with a function that, instead
    of looping in its thread, rebinds that queue's ``put`` to decode at once on the
    loop (the receiver calls ``put`` from the loop) and returns; the thread ends
    immediately. Opus is decoded by :class:`~.voice_decoder.VoiceDecoder`, to the bus
    format, so the track's frames need no resampling. Video still gets a real decoder
    thread.

    Call it once per process before any peer connection starts (idempotent). Returns
    False, changing nothing, if this aiortc's ``decoder_worker`` has another shape.
    """
    global _installed
    if _installed:
        return True
    from aiortc import rtcrtpreceiver
    stock = rtcrtpreceiver.decoder_worker
    if not _takes(stock, "loop", "input_q", "output_q", "decode_error"):
        logger.warning("aiortc's decoder_worker changed shape: audio is decoded in threads")
        return False

    def decoder_worker(loop: asyncio.AbstractEventLoop, input_q: queue.Queue[Any],
                       output_q: asyncio.Queue[Any], decode_error: threading.Event) -> None:
        if threading.current_thread().name != "audio-decoder":
            stock(loop, input_q, output_q, decode_error)
            return
        input_q.put = _InlineDecoder(input_q, output_q, decode_error).put  # type: ignore

    rtcrtpreceiver.decoder_worker = decoder_worker  # type: ignore[assignment]
    _installed = True
    return True


class _InlineDecoder:
    """What a receiver's queue ``put`` becomes: decode now, hand frames to the track."""

    def __init__(self, input_q: queue.Queue[Any], output_q: asyncio.Queue[Any],
                 decode_error: threading.Event) -> None:
        self._backlog = input_q.queue
        "What the receiver queued before ``put`` was rebound (decoded first, in order)."
        self._output_q = output_q
        self._decode_error = decode_error
        self._codec: Any = None
        self._codec_name: str | None = None
        self._decoder: Any = None

    def put(self, task: Any, block: bool = True, timeout: float | None = None) -> None:
        while self._backlog:
            self._take(self._backlog.popleft())
        self._take(task)

    def _take(self, task: Any) -> None:
        if task is None:  # the receiver stopped: end the track
            self._output_q.put_nowait(None)
            return
        codec, encoded_frame = task
        if codec is not self._codec:  # the same parameters each packet, mostly
            self._codec = codec
            if codec.name != self._codec_name:
                self._decoder = _decoder_for(codec)
                self._codec_name = codec.name
        try:
            frames = self._decoder.decode(encoded_frame)
        except (av.FFmpegError, OpusError) as e:
            logger.warning("inline decoder: dropped a %s frame: %s", codec.name, e)
            self._decode_error.set()
            return
        for frame in frames:
            self._output_q.put_nowait(frame)


def _decoder_for(codec: Any) -> Any:
    """Opus straight to 24 kHz mono (:class:`VoiceDecoder`) where libopus loads; aiortc's
    decoder otherwise, and for every other codec."""
    if codec.name.lower() == "opus" and load_libopus() is not None:
        return VoiceDecoder()
    from aiortc.codecs import get_decoder
    return get_decoder(codec)


# -- prompt jitter ------------------------------------------------------------------

LATE_PACKETS = Counter(
    "voxrelay_rtp_late_packets_total",
    "Received audio RTP packets dropped because a newer one had already been decoded "
    "(reordered or duplicated on the path)")
MAX_MISORDER = 100
"A packet this far behind the newest is a restarted stream, not a late packet (as aiortc)."

_prompt_installed = False


def install_prompt_jitter() -> bool:
    """Hand every received audio packet to the decoder as it arrives.

    aiortc's ``RTCRtpReceiver`` puts audio through ``JitterBuffer(capacity=16,
    prefetch=4)``, which releases a frame only once the four after it have arrived:
    80 ms on every receiving hop. A browser and the Realtime API each run their own
    adaptive jitter buffer, so a relay that receives twice (the edge from the browser,
    the link from the model) would add 160 ms to every reply for nothing: the mixer
    aligns the uplink by capture time behind its own small buffer, and the edge's
    playout queue absorbs late model audio. This replaces the audio buffer with
    :class:`PromptJitterBuffer` (video keeps aiortc's).

    Call it once per process before any peer connection starts (idempotent). Returns
    False, changing nothing, if this aiortc's ``JitterBuffer`` has another shape.
    """
    global _prompt_installed
    if _prompt_installed:
        return True
    from aiortc import jitterbuffer, rtcrtpreceiver
    stock = rtcrtpreceiver.JitterBuffer
    if stock is not jitterbuffer.JitterBuffer or not _takes(stock, "capacity", "prefetch",
                                                            "is_video"):
        logger.warning("aiortc's JitterBuffer changed shape: audio keeps its prefetch")
        return False

    def jitter_buffer(capacity: int, prefetch: int = 0, is_video: bool = False) -> Any:
        if is_video:
            return stock(capacity, prefetch=prefetch, is_video=True)
        return PromptJitterBuffer()

    rtcrtpreceiver.JitterBuffer = jitter_buffer  # type: ignore[assignment,misc]
    _prompt_installed = True
    return True


class PromptJitterBuffer:
    """The audio side of aiortc's jitter buffer, holding nothing back.

    An Opus RTP packet is one whole frame, so each packet newer than the last one
    handed on goes straight to the decoder; a gap is left to the decoder and whoever
    consumes its frames. A packet older than that (reordered, duplicated) is dropped and
    counted: its moment has passed. One far behind (:data:`MAX_MISORDER`) means the
    sender restarted its sequence, and it starts the stream afresh.
    """

    def __init__(self) -> None:
        self._newest: int | None = None

    def add(self, packet: Any) -> tuple[bool, Any]:
        from aiortc.jitterbuffer import JitterFrame
        seq = packet.sequence_number
        if self._newest is not None:
            behind = (self._newest - seq) & 0xFFFF
            if behind < MAX_MISORDER:  # 0: a duplicate
                LATE_PACKETS.inc()
                return False, None
        self._newest = seq
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)
