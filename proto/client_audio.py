"""The ``datachannel`` transport's downlink messages: the wire format a client parses.

A client that joins with ``"transport": "datachannel"`` receives the model's voice on its
``audio`` DataChannel, one binary message per 20 ms frame: an 8-byte header, then the
frame (PCM16 24 kHz mono, little-endian, 480 samples)::

    offset 0  uint32 LE  seq  the frame's number in this client's stream; a step over 1
                              is frames the edge dropped (stale, back-pressure, barge-in)
    offset 4  uint32 LE  ms   when the edge sent it, in ms since the stream began
                              (wrapping): 20 apart within a reply, more across a pause
    offset 8  960 bytes  pcm

The uplink has no header: binary messages of raw PCM16 24 kHz mono, any whole multiple
of 10 ms up to 200 ms (``services/runtime/pcm_messages.py``).
"""

from __future__ import annotations

import struct

from .audio import FRAME_BYTES

LABEL = "audio"
"The DataChannel's label."
HEADER = struct.Struct("<II")
MESSAGE_BYTES = HEADER.size + FRAME_BYTES


def pack(seq: int, ms: int, pcm: bytes) -> bytes:
    """One downlink message: the header, then the 20 ms frame."""
    return HEADER.pack(seq & 0xFFFFFFFF, ms & 0xFFFFFFFF) + pcm


def unpack(message: bytes) -> tuple[int, int, bytes]:
    """``(seq, ms, pcm)`` of a downlink message; raises ValueError for another size."""
    if len(message) != MESSAGE_BYTES:
        raise ValueError(f"a downlink message is {MESSAGE_BYTES} bytes (got {len(message)})")
    seq, ms = HEADER.unpack_from(message)
    return seq, ms, bytes(message[HEADER.size:])
