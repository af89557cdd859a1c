"""What echo gating costs the mixer while a speakerphone plays the AI back into its mic.

``.venv/bin/python -m benchmarks.echo_cost [--seconds 20] [--rounds 3]`` drives one
:class:`~services.mixer.session.MixerSession` with one client, in one process, without
the bus: each 20 ms the model's next frame (a voice-like signal) comes in as it would on
``aud/model``, and the client's microphone hears it back 120 ms later, 12 dB down, over
quiet room noise — the case echo gating exists for, where every frame is judged. It
prints the CPU time per client frame (the model's frame included) with echo gating on
and off, alternating rounds; the difference is the gating's own cost. ``voxrelay bench``
does not show it: its clients play nothing back.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

import numpy as np

from benchmarks.decode_cost import voice_like
from proto import ids
from proto.audio import FRAME_BYTES
from services.mixer.echo import EchoSettings
from services.mixer.session import MixerSession, SessionSettings

ECHO_DELAY_FRAMES = 6
ECHO_GAIN = 0.25
NOISE_RMS = 30.0


def echoed(model: list[bytes]) -> list[bytes]:
    """The microphone: ``model`` played back ``ECHO_DELAY_FRAMES`` later, quieter, over
    room noise."""
    voice = np.frombuffer(b"".join(model), dtype="<i2").astype(np.float64)
    heard = np.concatenate([np.zeros(ECHO_DELAY_FRAMES * FRAME_BYTES // 2), voice])
    heard = heard[:voice.size] * ECHO_GAIN
    heard += np.random.default_rng(2).normal(0, NOISE_RMS, heard.size)
    pcm = np.clip(heard, -32768, 32767).astype("<i2").tobytes()
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def feeding(echo: bool, model: list[bytes], mic: list[bytes]
            ) -> Callable[[], tuple[float, int]]:
    """A session of one client; each call feeds it every frame once and returns (CPU
    seconds, frames ducked as echo)."""
    now = [0.0]
    session = MixerSession(ids.new_id(), SessionSettings(echo=EchoSettings(enabled=echo)),
                           monotonic=lambda: now[0])
    session.start(lambda frame: None)
    client = ids.new_id()
    session.add_client(client)
    seq = [0]

    def run() -> tuple[float, int]:
        ducked, began = session.ducked, time.process_time()
        for model_pcm, mic_pcm in zip(model, mic, strict=True):
            now[0] += 0.02
            session.receive_model(model_pcm)
            session.receive(client, seq[0], seq[0] * 20_000_000, mic_pcm)
            seq[0] += 1
        return time.process_time() - began, session.ducked - ducked

    return run


async def measure(seconds: float, rounds: int) -> dict[str, list[tuple[float, int]]]:
    model = voice_like(seconds)
    mic = echoed(model)
    ways = {"echo gating on": feeding(True, model, mic),
            "echo gating off": feeding(False, model, mic)}
    for run in ways.values():
        run()  # warm up: the reference fills, the echo gain is learned
    found: dict[str, list[tuple[float, int]]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, run in ways.items():
            spent, ducked = run()
            found[name].append((spent * 1e6 / len(model), ducked))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="echo_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="signal length")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    found = asyncio.run(measure(args.seconds, args.rounds))
    frames = len(voice_like(args.seconds))
    print(f"{frames} frames a round; µs of CPU per client frame, by round (frames ducked)")
    print("| way | µs / frame |")
    print("|---|---|")
    for name, rounds in found.items():
        print(f"| {name} | {' '.join(f'{us:.0f} ({ducked})' for us, ducked in rounds)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
