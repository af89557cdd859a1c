"""What encoding one 20 ms frame of voice to Opus costs, through PyAV or libopus directly.

``.venv/bin/python -m benchmarks.encode_cost [--seconds 4] [--rounds 3]`` encodes a
voice-like signal (:func:`benchmarks.decode_cost.voice_like`) with voxrelay's settings
(mono 24 kHz, 32 kbit/s, complexity 3) two ways, alternating, ``rounds`` times:

- ``pyav``: PyAV's ``CodecContext`` (FFmpeg's libopus wrapper), an ``AudioFrame`` a frame;
- ``libopus``: ``opus_encode`` through ctypes, what :class:`VoiceEncoder` uses on Linux.

Each way runs warm (frame after frame) and cold: before each frame a 16 MB buffer is
written, so the encode finds the CPU's caches holding something else, as a service
does when it wakes for its next frame. It prints the CPU time per frame
(``time.process_time``, the encode alone) and the ratio of the two.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from services.runtime.voice_codec import (
    DEFAULT_BITRATE,
    DEFAULT_COMPLEXITY,
    _LibopusEncoder,
    _PyAVEncoder,
)
from services.runtime.voice_decoder import load_libopus

from .decode_cost import voice_like

EVICT_BYTES = 16_000_000
"More than this machine's caches hold."


def timed(encode: Callable[[bytes], bytes], frames: list[bytes], evict: np.ndarray | None
          ) -> float:
    """CPU seconds spent in ``encode`` over ``frames``; with ``evict``, the caches are
    filled with it before each frame."""
    spent = 0.0
    for frame in frames:
        if evict is not None:
            np.add(evict, 1.0, out=evict)
        began = time.process_time()
        if not encode(frame):
            raise AssertionError("the encoder returned no packet")
        spent += time.process_time() - began
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="encode_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="signal length")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    lib = load_libopus()
    if lib is None:
        parser.error("libopus does not load here")
    frames = voice_like(args.seconds)
    makers = {"pyav": lambda: _PyAVEncoder(DEFAULT_BITRATE, DEFAULT_COMPLEXITY),
              "libopus": lambda: _LibopusEncoder(lib, DEFAULT_BITRATE, DEFAULT_COMPLEXITY)}
    evict = np.zeros(EVICT_BYTES // 8)
    spent = {(name, cold): 0.0 for name in makers for cold in (False, True)}
    for _ in range(args.rounds):
        for cold in (False, True):
            for name, make in makers.items():
                spent[name, cold] += timed(make(), frames, evict if cold else None)
    count = args.rounds * len(frames)
    for cold in (False, True):
        label = "cold" if cold else "warm"
        for name in makers:
            print(f"{label} {name:>7}: {spent[name, cold] / count * 1e6:6.1f} µs a frame "
                  f"({count} frames)")
        print(f"{label} libopus / pyav: {spent['libopus', cold] / spent['pyav', cold]:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
