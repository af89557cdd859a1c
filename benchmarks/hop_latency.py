"""Latency of voxrelay's audio hops, from the frames' own capture timestamps.

Runs ``voxrelay up`` (simulator, loopback), joins one aiortc client that speaks a few
turns, and taps the audio PUB sockets of the edge, mixer and link as an extra
subscriber. For every frame it takes ``now - capture_ns`` at arrival:

- ``aud/in``  edge → subscriber: the edge's publish plus one PUB/SUB hop;
- ``aud/mix`` edge → mixer → subscriber: adds the mixer's hop, its jitter buffer
  (2 frames by design) and its 20 ms clock;
- ``aud/model`` link → subscriber: the link's publish plus one hop.

Where a frame leaves voxrelay, the services' own ``voxrelay_frame_age_seconds`` (scraped
at the end) counts the frames in each bucket: ``at=model`` (edge capture → the link's
encoder toward the model), ``at=client`` (model audio at the link → a client's encoder).
It also measures the time from the join request to the client's connection. (Not to
the client's first ``aud/in`` frame: silence is kept off the bus by default, so that is
the first sound, whose time only the client's own clock knows.) Usage: ``.venv/bin/python -m benchmarks.hop_latency [--turns 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

import aiohttp
import numpy as np
import zmq

from proto import audio, topics
from services.client.voxrelay import VoxrelayClient, create_session
from services.runtime import configure_ice_hosts
from services.runtime.bus import BusEndpoints, EventSubscriber
from services.runtime.heartbeat import Registry
from services.runtime.sockets import Role, make_socket
from services.supervisor.status import Metrics, scrape_by_kind
from tests.support.ports import free_port, free_port_block, free_tcp_endpoint
from tests.support.speech import silence, speak

LEAD_MS = 200
"Silence the client plays before each phrase."
PHRASES = ("what is the weather like today", "tell me something interesting",
           "how far away is the moon", "thank you very much")


class Tap(threading.Thread):
    """Records every watched frame's age on arrival, on its own thread.

    The client's aiortc work shares the benchmark's event loop; timing arrivals there
    would add its scheduling delays to the hops being measured.
    """

    def __init__(self, ctx: zmq.Context[Any], endpoints: list[str]) -> None:
        super().__init__(name="tap", daemon=True)
        self.ctx = ctx
        self.endpoints = endpoints
        self.ages: dict[str, list[float]] = {"aud/in": [], "aud/mix": [], "aud/model": []}
        self.ready = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        sock = make_socket(self.ctx, Role.AUDIO_SUB)
        for prefix in (topics.AUD_IN, topics.AUD_MIX, topics.AUD_MODEL):
            sock.subscribe(prefix)
        for endpoint in self.endpoints:
            sock.connect(endpoint)
        self.ready.set()
        try:
            while not self.stopping.is_set():
                if sock.poll(100):
                    self._on_frame(sock.recv_multipart())
        finally:
            sock.close(linger=0)

    def _on_frame(self, parts: list[bytes]) -> None:
        now = time.time_ns()
        topic, header, pcm = audio.unpack(parts)
        channel = topics.parse(topic).channel
        if channel == "aud/mix" and not any(pcm):
            return  # pure silence: stamped by the mixer's clock, not a capture
        self.ages[channel].append((now - header.capture_ns) / 1e6)


def start_stack(data_dir: str, extra_env: dict[str, str] | None = None,
                metrics_port: int = 0, edges: int = 1, sim_port: int = 0,
                log: IO[str] | None = None,
                ) -> tuple[subprocess.Popen[str], str, BusEndpoints]:
    """``voxrelay up`` on loopback with ``edges`` edges; (process, URL, bus endpoints).

    Pass ``sim_port`` to know where the simulator listens (its ``/_sim/*`` endpoints),
    and ``log`` to send the stack's log lines there rather than to this terminal.
    """
    port = free_port()
    bus = BusEndpoints(free_tcp_endpoint(), free_tcp_endpoint())
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update({"VOXRELAY_BUS_PUBLISH": bus.publish, "VOXRELAY_BUS_SUBSCRIBE": bus.subscribe,
                "VOXRELAY_SIM_RESPONSE_LATENCY_MS": "300", "VOXRELAY_LOG_LEVEL": "WARNING",
                **(extra_env or {})})
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--port", str(port), "--sim-port",
         str(sim_port or free_port()), "--loopback", "--edges", str(edges), "--data-dir",
         data_dir, "--metrics-port", str(metrics_port or free_port_block(4 + edges))],
        env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.monotonic() + 90
    line = ""
    while "voxrelay up on" not in line:
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_stack(proc)  # what did start must not outlive the benchmark
            raise RuntimeError(f"voxrelay up did not start (exit code {proc.returncode})")
        if select.select([proc.stdout], [], [], 0.5)[0]:
            line = proc.stdout.readline()
    return proc, f"http://127.0.0.1:{port}", bus


def stop_stack(proc: subprocess.Popen[str], timeout_s: float = 60) -> None:
    """Stop a stack from :func:`start_stack` as Ctrl-C would; kill it if that hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {"n": int(arr.size), "p50_ms": round(float(np.percentile(arr, 50)), 2),
            "p99_ms": round(float(np.percentile(arr, 99)), 2),
            "max_ms": round(float(arr.max()), 2)}


async def measure(turns: int) -> dict[str, Any]:
    configure_ice_hosts(["127.0.0.1"])
    with tempfile.TemporaryDirectory() as data_dir:
        proc, url, bus = start_stack(data_dir)
        ctx: zmq.Context[Any] = zmq.Context()
        registry = Registry()
        beats = EventSubscriber(ctx, bus, "bench", on_heartbeat=registry.observe)
        beats.start()
        tap: Tap | None = None
        try:
            async with asyncio.timeout(20):
                while not all(registry.alive(s) for s in ("media_edge", "mixer", "openai_link")):
                    await asyncio.sleep(0.1)
            tap = Tap(ctx, [registry.alive(s)[0].audio
                            for s in ("media_edge", "mixer", "openai_link")])
            tap.start()
            tap.ready.wait(5)
            async with aiohttp.ClientSession() as http:
                session = await create_session(http, url, name="bench")
                client = VoxrelayClient("bench")
                joined = time.monotonic()
                await client.join(http, url, session)
                await client.wait_connected()
                connected = time.monotonic()
                for i in range(turns):
                    client.mic.play(silence(LEAD_MS) + speak(PHRASES[i % len(PHRASES)])
                                    + silence(800))
                    await client.wait_event("turn.end", role="assistant", timeout=30)
                    client.events.clear()
                ages = frame_ages(await scrape_by_kind(url))
                await client.close()
        finally:
            if tap is not None:
                tap.stopping.set()
                tap.join(5)
            beats.close()
            ctx.destroy(linger=0)
            stop_stack(proc)
    return {
        "join_to_connected_ms": round((connected - joined) * 1000, 1),
        "edge_to_subscriber": summary(tap.ages["aud/in"]),
        "edge_to_mixer_to_subscriber": summary(tap.ages["aud/mix"]),
        "link_to_subscriber": summary(tap.ages["aud/model"]),
        "frame_age_buckets": ages,
    }


def frame_ages(kinds: dict[str, Metrics]) -> dict[str, dict[str, int]]:
    """Frames per ``voxrelay_frame_age_seconds`` bucket ("<=20ms": 3, ...), per ``at``."""
    ages: dict[str, dict[str, int]] = {}
    for metrics in kinds.values():
        for (name, labels), histogram in metrics.histograms.items():
            if name != "voxrelay_frame_age_seconds":
                continue
            counts, below = {}, 0.0
            for bound, cumulative in histogram.buckets:
                if cumulative > below:
                    counts[f"<={bound * 1000:g}ms"] = int(cumulative - below)
                below = cumulative
            ages[dict(labels).get("at", "")] = counts
    return ages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(measure(args.turns))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
