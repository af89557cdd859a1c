"""What decoding one received 20 ms Opus frame to the bus format costs, two ways.

``.venv/bin/python -m benchmarks.decode_cost [--seconds 4] [--rounds 3]`` encodes a
voice-like signal (a gliding tone with harmonics, under noise) with voxrelay's
:class:`~services.runtime.voice_codec.VoiceEncoder`, then decodes the packets to PCM16
24 kHz mono, alternating, ``rounds`` times:

- ``aiortc``: aiortc's ``OpusDecoder`` (FFmpeg's libopus wrapper, 48 kHz stereo), then
  :class:`~services.runtime.media.MonoResampler` — what every receiver did before;
- ``voice``: :class:`~services.runtime.voice_decoder.VoiceDecoder` (libopus at 24 kHz
  mono), then the same ``MonoResampler``, which passes its frames through.

It prints the CPU time per frame of each (``time.process_time``) and their ratio.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame

from proto.audio import FRAME_BYTES, SAMPLE_RATE
from services.runtime.media import MonoResampler
from services.runtime.voice_codec import VoiceEncoder
from services.runtime.voice_decoder import VoiceDecoder


def voice_like(seconds: float) -> list[bytes]:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 2 * np.pi * np.cumsum(140 + 40 * np.sin(2 * np.pi * 0.7 * t)) / SAMPLE_RATE
    signal = sum(np.sin(k * pitch) / k for k in range(1, 8)) * 6000
    signal += np.random.default_rng(1).normal(0, 300, t.size)
    pcm = signal.astype("<i2").tobytes()
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def decoding(make: Callable[[], object]) -> Callable[[list[bytes]], int]:
    def run(packets: list[bytes]) -> int:
        decoder, resample = make(), MonoResampler()
        return sum(len(resample(frame)) for n, data in enumerate(packets)
                   for frame in decoder.decode(JitterFrame(data=data, timestamp=n * 960)))
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="decode_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="signal length")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    encoder = VoiceEncoder()
    packets = [encoder.encode(frame) for frame in voice_like(args.seconds)]
    ways = {"aiortc": decoding(OpusDecoder), "voice": decoding(VoiceDecoder)}
    spent = {name: 0.0 for name in ways}
    for _ in range(args.rounds):
        for name, run in ways.items():
            began = time.process_time()
            pcm_bytes = run(packets)
            spent[name] += time.process_time() - began
            assert pcm_bytes == len(packets) * FRAME_BYTES, (name, pcm_bytes)
    frames = args.rounds * len(packets)
    for name, seconds in spent.items():
        print(f"{name:>6}: {seconds / frames * 1e6:6.1f} µs a frame ({frames} frames)")
    print(f"voice / aiortc: {spent['voice'] / spent['aiortc']:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
