"""Received Opus decoded straight to the bus format: PCM16 24 kHz mono.

aiortc's ``OpusDecoder`` goes through FFmpeg's libopus wrapper, which always decodes
at 48 kHz (stereo, as aiortc asks); every receiver in voxrelay then resamples that to
24 kHz mono. libopus itself decodes at any of its rates and channel counts, so
:class:`VoiceDecoder` calls it directly (``opus_decode``, through :mod:`ctypes`) at
24 kHz mono: a 20 ms speech frame costs about 35 µs here against about 150 µs for
aiortc's decode plus the resample (``python -m benchmarks.decode_cost``).

The library is the one PyAV bundles (``av.libs``, the same libopus aiortc's decoder
uses), else the system's ``libopus.so.0``. :func:`load_libopus` returns None when
neither loads, and receivers keep aiortc's decoder.

Frames come out as ``av.AudioFrame`` (s16, mono, 24 kHz), stamped as aiortc stamps its
own: ``pts`` is the RTP timestamp and ``time_base`` the 48 kHz RTP clock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fractions
import functools
import logging
from pathlib import Path
from typing import Any

import av
from av import AudioFrame

from proto.audio import FRAME_SAMPLES, SAMPLE_RATE

logger = logging.getLogger(__name__)

RTP_TIME_BASE = fractions.Fraction(1, 48_000)
"Opus's RTP clock, whatever rate the decoder runs at (RFC 7587)."
MAX_PACKET_SAMPLES = SAMPLE_RATE * 120 // 1000
"The longest an Opus packet can last: 120 ms."


class OpusError(ValueError):
    """libopus refused a packet (``opus_decode`` returned an error code)."""


@functools.cache
def load_libopus() -> Any | None:
    """libopus with its decoder's and encoder's functions typed (``opus_decoder_*``,
    ``opus_decode``, ``opus_encoder_*``, ``opus_encode``), or None if no library loads."""
    candidates = sorted((Path(av.__file__).parent.parent / "av.libs").glob("libopus*.so*"))
    system = ctypes.util.find_library("opus")
    for path in [*map(str, candidates), *([system] if system else [])]:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_int)]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                    ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.opus_decoder_destroy.restype = None
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_encoder_create.restype = ctypes.c_void_p
        lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_int)]
        lib.opus_encode.restype = ctypes.c_int32
        lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                    ctypes.c_void_p, ctypes.c_int32]
        lib.opus_encoder_ctl.restype = ctypes.c_int  # variadic: arguments typed per call
        lib.opus_encoder_destroy.restype = None
        lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
        return lib
    logger.warning("libopus not found (neither PyAV's nor the system's): received audio "
                   "is decoded by aiortc at 48 kHz and resampled")
    return None


class VoiceDecoder:
    """One received Opus stream → PCM16 24 kHz mono frames (an aiortc ``Decoder``).

    ``decode`` takes aiortc's ``JitterFrame`` (``data``, ``timestamp``) and returns one
    frame, or raises :class:`OpusError`. Raises RuntimeError if libopus is missing.
    """

    def __init__(self) -> None:
        lib = load_libopus()
        if lib is None:
            raise RuntimeError("libopus is not available")
        error = ctypes.c_int()
        state = lib.opus_decoder_create(SAMPLE_RATE, 1, ctypes.byref(error))
        if not state or error.value:
            raise RuntimeError(f"opus_decoder_create failed ({error.value})")
        self._lib = lib
        self._state = state
        self._out = ctypes.create_string_buffer(MAX_PACKET_SAMPLES * 2)

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.opus_decoder_destroy(state)

    def decode(self, encoded_frame: Any) -> list[AudioFrame]:
        data: bytes = encoded_frame.data
        # an empty payload is a lost packet to libopus: conceal one frame, not 120 ms
        limit = MAX_PACKET_SAMPLES if data else FRAME_SAMPLES
        samples = self._lib.opus_decode(self._state, data, len(data), self._out, limit, 0)
        if samples < 0:
            raise OpusError(f"libopus could not decode a {len(data)}-byte packet ({samples})")
        frame = AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(memoryview(self._out)[:samples * 2])
        frame.sample_rate = SAMPLE_RATE
        frame.pts = encoded_frame.timestamp
        frame.time_base = RTP_TIME_BASE
        return [frame]
