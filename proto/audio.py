"""Audio frames on the bus: multipart ``[topic, header, pcm]``.

``header`` is msgpack of :class:`AudioHeader` (an array, so a few bytes);
``pcm`` is raw s16le, 24 kHz mono, 20 ms (480 samples, 960 bytes). The capture time
is ``time.time_ns()`` at the edge and travels unchanged end to end, so every hop's
latency can be measured from it; ``sent_ns`` is stamped by each publisher, so each
hop's own latency can be too.
"""

from __future__ import annotations

import time

import msgspec

VERSION = 1
SAMPLE_RATE = 24_000
CHANNELS = 1
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2 * CHANNELS


class AudioHeader(msgspec.Struct, array_like=True, frozen=True):
    version: int
    seq: int
    "Per-publisher, per-stream sequence number; gaps mean lost frames."
    capture_ns: int
    "Wall clock (time.time_ns) when the audio was captured at the edge."
    sample_rate: int = SAMPLE_RATE
    channels: int = CHANNELS
    samples: int = FRAME_SAMPLES
    sent_ns: int = 0
    "Wall clock (time.time_ns) when the publisher sent this frame (0: unknown)."
    silent_before: int = 0
    """Frames of silence just before this one that were not sent (their seqs are skipped):
    a receiver plays them as silence and does not count them lost."""


class FrameError(ValueError):
    """A bus audio frame that cannot be used (dropped and counted by the receiver)."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AudioHeader)


def pack(topic: bytes, seq: int, capture_ns: int, pcm: bytes,
         silent_before: int = 0) -> list[bytes]:
    """The multipart message for one 20 ms frame, stamped as sent now; ``silent_before``
    silent frames just before it were kept off the bus."""
    header = AudioHeader(VERSION, seq, capture_ns, SAMPLE_RATE, CHANNELS, len(pcm) // 2,
                         time.time_ns(), silent_before)
    return [topic, _encoder.encode(header), pcm]


def unpack(parts: list[bytes]) -> tuple[bytes, AudioHeader, bytes]:
    """Check and split a received frame; raises FrameError on anything malformed."""
    if len(parts) != 3:
        raise FrameError(f"expected 3 parts, got {len(parts)}")
    topic, raw_header, pcm = parts
    try:
        header = _decoder.decode(raw_header)
    except msgspec.DecodeError as e:
        raise FrameError(f"bad header: {e}") from e
    if header.version != VERSION:
        raise FrameError(f"unsupported version {header.version}")
    if header.sample_rate != SAMPLE_RATE or header.channels != CHANNELS:
        raise FrameError(f"format must be {SAMPLE_RATE} Hz mono (got {header.sample_rate} Hz, "
                         f"{header.channels} ch)")
    if len(pcm) != header.samples * 2 * header.channels:
        raise FrameError(f"{len(pcm)} bytes of PCM for {header.samples} samples")
    return topic, header, pcm
