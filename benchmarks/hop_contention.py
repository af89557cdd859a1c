"""One bus hop, alone and with the cores busy: what the scheduler adds to it.

``.venv/bin/python -m benchmarks.hop_contention [--competitors 0,1,2,3] [--frames 1500]``
paces frames at 50 a second over one ZeroMQ PUB→SUB hop on loopback TCP (as voxrelay's
audio sockets are), from this process to a subscriber in a session of its own (as each
voxrelay service is), while ``competitors`` CPU-bound processes, each in a session of its
own too, run for ``--duty`` of the time (in 6 ms bursts). It prints the hop's p50, p90,
p99 and maximum for each count. ``--slice-us 0,100`` repeats each count with the
publisher and the subscriber asking the kernel for that scheduler slice
(:func:`.procfs.request_slice`; 0 is the kernel's default).

Nothing of voxrelay runs here but its wire format; the figure is the machine's: how long
a woken process waits for a core when none is free.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from multiprocessing.connection import Connection

import numpy as np
import zmq

from proto import audio, ids, topics

from .procfs import request_slice

RATE = 50
"Frames a second, one every 20 ms as on the bus."
BURST_S = 0.006
WARMUP_FRAMES = 50


def compete(until: float, duty: float) -> None:
    """Spin in ``BURST_S`` bursts for ``duty`` of the time until ``until``."""
    os.setsid()
    request_slice(0)
    rest = BURST_S * (1 - duty) / duty
    while time.time() < until:
        start = time.perf_counter()
        while time.perf_counter() - start < BURST_S:
            pass
        time.sleep(rest)


def subscribe(endpoint: str, frames: int, slice_us: int, out: Connection) -> None:
    os.setsid()
    request_slice(slice_us)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    out.send("ready")
    hops = []
    while len(hops) < frames:
        if not sock.poll(5000):
            break
        parts = sock.recv_multipart()
        arrived = time.time_ns()
        hops.append((arrived - audio.unpack(parts)[1].sent_ns) / 1e6)
    out.send(hops)
    sock.close(0)
    ctx.term()


def one_run(frames: int, competitors: int, duty: float, slice_us: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    request_slice(slice_us)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    here, there = context.Pipe()
    subscriber = context.Process(target=subscribe,
                                 args=(f"tcp://127.0.0.1:{port}", frames, slice_us, there))
    subscriber.start()
    until = time.time() + 15 + frames / RATE
    rivals = [context.Process(target=compete, args=(until, duty)) for _ in range(competitors)]
    for rival in rivals:
        rival.start()
    try:
        if not here.poll(30):
            raise RuntimeError("the subscriber did not start")
        here.recv()
        time.sleep(1.0)  # subscription in place, competitors running
        topic = topics.aud_mix(ids.new_id())
        pcm = bytes(audio.FRAME_BYTES)
        next_at = time.monotonic()
        for seq in range(frames + WARMUP_FRAMES):
            if here.poll(0):
                break
            parts = audio.pack(topic, seq, time.time_ns(), pcm)
            pub.send_multipart(parts)
            next_at += 1 / RATE
            time.sleep(max(0.0, next_at - time.monotonic()))
        if not here.poll(30):
            raise RuntimeError("the subscriber did not report")
        hops = np.asarray(here.recv()[WARMUP_FRAMES:])
    finally:
        for rival in rivals:
            rival.terminate()
        for process in (*rivals, subscriber):
            process.join(10)
        pub.close(0)
        ctx.term()
        request_slice(0)
    return {"frames": len(hops), "p50": float(np.percentile(hops, 50)),
            "p90": float(np.percentile(hops, 90)), "p99": float(np.percentile(hops, 99)),
            "max": float(hops.max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hop_contention",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--competitors", default="0,1,2,3",
                        help="comma-separated counts of CPU-bound processes (default 0,1,2,3)")
    parser.add_argument("--frames", type=int, default=1500, help="frames a run (default 1500)")
    parser.add_argument("--duty", type=float, default=0.75,
                        help="share of the time each competitor spins (default 0.75)")
    parser.add_argument("--slice-us", default="0",
                        help="comma-separated scheduler slices to try (default 0: the kernel's)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.competitors.split(",")]
    slices = [int(n) for n in args.slice_us.split(",")]
    if min(counts) < 0 or not 0 < args.duty < 1 or not 100 <= args.frames <= 30_000:
        parser.error("--competitors ≥ 0, 0 < --duty < 1, 100 ≤ --frames ≤ 30000")
    print(f"{os.cpu_count()} cores; {args.frames} frames at {RATE}/s a run; "
          f"competitors spin {args.duty:.0%} of the time")
    print("| competitors | slice µs | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for count in counts:
        for slice_us in slices:
            r = one_run(args.frames, count, args.duty, slice_us)
            print(f"| {count} | {slice_us or 'kernel'} | {r['p50']:.2f} | {r['p90']:.2f} | "
                  f"{r['p99']:.2f} | {r['max']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
