"""Where a turn's time goes: every hop's latency, read from voxrelay's own metrics.

Runs ``voxrelay up`` (loopback, one edge) against the built-in simulator in echo mode
(it speaks back what it heard, after ``--response-latency-ms``), joins one aiortc
client that speaks ``--turns`` phrases and waits for each reply, then scrapes every
service's /metrics (the URLs in /healthz, the bus at its port) and reads the
conversation's recorded ``turn.summary`` events.

Histogram figures (bus hops, frame ages, tick lateness, round trip) are interpolated
within their buckets, as Prometheus does; the per-turn figures (voice to voice, the
Realtime API's time to first audio) are exact, from the summaries.

Usage: ``.venv/bin/python -m benchmarks.turn_latency [--turns 8] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from typing import Any

import aiohttp
import numpy as np

from services.client.voxrelay import VoxrelayClient, create_session
from services.runtime import configure_ice_hosts
from services.supervisor.status import histogram_quantile, scrape_by_kind
from tests.support.ports import free_port_block
from tests.support.speech import silence, speak

from .hop_latency import PHRASES, start_stack, stop_stack

HISTOGRAMS = (
    ("edge → mixer (bus hop)", "mixer", "voxrelay_bus_hop_seconds", (("stage", "edge_to_mixer"),)),
    ("mixer → link (bus hop)", "openai_link", "voxrelay_bus_hop_seconds",
     (("stage", "mixer_to_link"),)),
    ("link → edge (bus hop)", "media_edge", "voxrelay_bus_hop_seconds",
     (("stage", "link_to_edge"),)),
    ("link → mixer (bus hop, echo reference)", "mixer", "voxrelay_bus_hop_seconds",
     (("stage", "link_to_mixer"),)),
    ("mic capture → Realtime uplink (frame age)", "openai_link", "voxrelay_frame_age_seconds",
     (("at", "model"),)),
    ("model audio at link → client encoder (frame age)", "media_edge",
     "voxrelay_frame_age_seconds", (("at", "client"),)),
    ("mixer tick lateness", "mixer", "voxrelay_mixer_tick_lateness_seconds", ()),
    ("edge ↔ client round trip", "media_edge", "voxrelay_edge_round_trip_seconds", ()),
    ("ICE connect", "media_edge", "voxrelay_edge_ice_connect_seconds", ()),
)


async def converse(url: str, turns: int) -> str:
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, url, name="turn-latency")
        client = VoxrelayClient("bench")
        try:
            await client.join(http, url, session)
            await client.wait_connected()
            for i in range(turns):
                client.mic.play(silence(300) + speak(PHRASES[i % len(PHRASES)]) + silence(1200))
                await client.wait_event("turn.end", role="assistant", timeout=40)
                client.events.clear()
        finally:
            await client.close()
    return session["session_id"]


async def measure(turns: int, response_latency_ms: int) -> dict[str, Any]:
    configure_ice_hosts(["127.0.0.1"])
    metrics_port = free_port_block(5)
    with tempfile.TemporaryDirectory() as data_dir:
        proc, url, _ = start_stack(data_dir, {
            "VOXRELAY_SIM_REPLY_MODE": "echo",
            "VOXRELAY_SIM_RESPONSE_LATENCY_MS": str(response_latency_ms)}, metrics_port)
        try:
            session_id = await converse(url, turns)
            await asyncio.sleep(1.0)  # the last turn.summary reaches the recorder
            kinds = await scrape_by_kind(
                url, extra={"bus": f"http://127.0.0.1:{metrics_port}/metrics"})
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/v1/sessions/{session_id}/events") as resp:
                    recorded = [json.loads(line) for line in (await resp.text()).splitlines()
                                if line]
        finally:
            stop_stack(proc)
    rows: dict[str, dict[str, float | int | None]] = {}
    for label, kind, name, labels in HISTOGRAMS:
        h = kinds[kind].histograms.get((name, labels))
        rows[label] = {"n": int(h.count) if h else 0,
                       "p50_ms": _ms(histogram_quantile(0.5, h)),
                       "p99_ms": _ms(histogram_quantile(0.99, h))}
    summaries = [e for e in recorded if e["type"] == "turn.summary"]
    v2v = [s for e in summaries for s in e["voice_to_voice_s"].values()]
    ttfa = [e["time_to_first_audio_s"] for e in summaries if e["time_to_first_audio_s"]]
    rows["voice to voice (speech end → first reply audio to the client)"] = _exact(v2v)
    rows["Realtime time to first audio (speech_stopped → first audio at the link)"] = \
        _exact(ttfa)
    rows["voice to voice − Realtime (turn detection wait, uplink, downlink)"] = _exact(
        [s - e["time_to_first_audio_s"] for e in summaries
         for s in e["voice_to_voice_s"].values() if e["time_to_first_audio_s"]])
    return {"turns": turns, "simulator_response_latency_ms": response_latency_ms,
            "summaries": len(summaries), "latencies": rows}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _exact(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    arr = np.asarray(values) * 1000
    return {"n": int(arr.size), "p50_ms": round(float(np.percentile(arr, 50)), 1),
            "p99_ms": round(float(np.percentile(arr, 99)), 1)}


def render(result: dict[str, Any]) -> str:
    lines = [f"{result['turns']} turns, simulator in echo mode answering after "
             f"{result['simulator_response_latency_ms']} ms; {result['summaries']} turn summaries",
             f"{'what':72} {'n':>6} {'p50 ms':>8} {'p99 ms':>8}"]
    for label, row in result["latencies"].items():
        p50 = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.2f}"
        p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.2f}"
        lines.append(f"{label:72} {row['n']:>6} {p50:>8} {p99:>8}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--response-latency-ms", type=int, default=300)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    result = asyncio.run(measure(args.turns, args.response_latency_ms))
    print(render(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
