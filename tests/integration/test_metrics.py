"""Latency you can see: after a conversation, every service's /metrics tells where it went.

The whole stack runs under ``voxrelay up`` (every service its own process, the built-in
simulator in echo mode); a real aiortc client speaks espeak-ng speech twice and hears
the replies. Then every process is scraped — the bus at its port, the others at the
URLs their heartbeats announce in /healthz, signaling at its own — and each latency
histogram must have observations with plausible values, counters must have moved, and
the recorded conversation must carry a ``turn.summary`` per reply.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from services.client.voxrelay import VoxrelayClient, create_session
from services.supervisor.status import (
    Histogram,
    Metrics,
    histogram_quantile,
    scrape_by_kind,
)
from tests.support.speech import silence, speak
from tests.support.up import Up, running_up

pytestmark = pytest.mark.timeout(180)

PHRASES = ("what is the weather like today", "please turn on the lights")

LATENCIES = {
    # (service, metric, labels): what a user of the numbers needs them to be
    ("mixer", "voxrelay_bus_hop_seconds", (("stage", "edge_to_mixer"),)): "hop",
    ("mixer", "voxrelay_bus_hop_seconds", (("stage", "link_to_mixer"),)): "hop",
    ("openai_link", "voxrelay_bus_hop_seconds", (("stage", "mixer_to_link"),)): "hop",
    ("media_edge", "voxrelay_bus_hop_seconds", (("stage", "link_to_edge"),)): "hop",
    ("openai_link", "voxrelay_frame_age_seconds", (("at", "model"),)): "age",
    ("media_edge", "voxrelay_frame_age_seconds", (("at", "client"),)): "age",
    ("mixer", "voxrelay_mixer_tick_lateness_seconds", ()): "tick",
    ("media_edge", "voxrelay_edge_ice_connect_seconds", ()): "connect",
    ("media_edge", "voxrelay_edge_round_trip_seconds", ()): "rtt",
    ("openai_link", "voxrelay_realtime_time_to_first_audio_seconds", ()): "turn",
    ("media_edge", "voxrelay_voice_to_voice_seconds", ()): "turn",
}
PLAUSIBLE_P95_S = {"hop": 0.02, "age": 0.2, "tick": 0.02, "connect": 3.0, "rtt": 0.1,
                   "turn": 5.0}
"Loopback on a shared 2-core machine: a bus hop well under 20 ms, and so on."


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Up]:
    with running_up(tmp_path, edges=1) as up:
        yield up


async def converse(http: aiohttp.ClientSession, up: Up) -> dict:
    session = await create_session(http, up.url, name="metrics")
    client = VoxrelayClient("kitchen")
    try:
        await client.join(http, up.url, session)
        await client.wait_connected()
        for phrase in PHRASES:
            replies = len([e for e in client.events if e["type"] == "turn.end"
                           and e["payload"]["role"] == "assistant"])
            client.mic.play(silence(300) + speak(phrase) + silence(1500))
            async with asyncio.timeout(40):
                while len([e for e in client.events if e["type"] == "turn.end"
                           and e["payload"]["role"] == "assistant"]) <= replies:
                    await asyncio.sleep(0.05)
        await client.wait_event("latency.ping", timeout=5)  # the edge measured a round trip
        await asyncio.sleep(2.5)  # one more ping, answered
    finally:
        await client.close()
    return session


async def scrape_all(up: Up) -> dict[str, Metrics]:
    """Every process's metrics by service kind (instances merged)."""
    return await scrape_by_kind(up.url, extra={
        "bus": f"http://127.0.0.1:{up.metrics_port}/metrics"})


def histogram(metrics: Metrics, name: str, labels: tuple[tuple[str, str], ...]) -> Histogram:
    found = metrics.histograms.get((name, labels))
    assert found is not None, f"{name}{dict(labels)} is not served"
    return found


async def test_every_hop_of_a_conversation_is_measured_and_plausible(stack: Up):
    async with aiohttp.ClientSession() as http:
        session = await converse(http, stack)
        kinds = await scrape_all(stack)
        async with http.get(f"{stack.url}/v1/sessions/{session['session_id']}/events") as r:
            recorded = [json.loads(line) for line in (await r.text()).splitlines() if line]

    assert set(kinds) == {"bus", "signaling", "media_edge", "mixer", "openai_link", "recorder"}
    figures = []
    for (kind, name, labels), what in LATENCIES.items():
        h = histogram(kinds[kind], name, labels)
        p50, p95 = histogram_quantile(0.5, h), histogram_quantile(0.95, h)
        figures.append(f"{kind:11} {name}{dict(labels)} n={h.count:.0f} p50={p50} p95={p95}")
        assert h.count > 0, f"{kind}: no {name}{dict(labels)} observed"
        assert p95 is not None and p95 <= PLAUSIBLE_P95_S[what], figures[-1]
    print("\n".join(figures))

    # Bus hops on loopback: most well under a millisecond or two.
    for kind, stage in (("mixer", "edge_to_mixer"), ("openai_link", "mixer_to_link"),
                        ("media_edge", "link_to_edge")):
        p50 = histogram_quantile(0.5, histogram(kinds[kind], "voxrelay_bus_hop_seconds",
                                                (("stage", stage),)))
        assert p50 is not None and p50 < 0.005, (stage, p50)
    # Voice to voice is more than the model's own time to first audio (it includes it).
    v2v = histogram_quantile(0.5, histogram(kinds["media_edge"],
                                            "voxrelay_voice_to_voice_seconds", ()))
    ttfa = histogram_quantile(0.5, histogram(kinds["openai_link"],
                                             "voxrelay_realtime_time_to_first_audio_seconds", ()))
    assert v2v is not None and ttfa is not None and v2v > ttfa

    # Every process: its event loop's lag, its RSS, its wake-ups, and who it is.
    for kind, metrics in kinds.items():
        assert (metrics.value("process_resident_memory_bytes") or 0) > 10e6, kind
        assert (metrics.value("voxrelay_process_wakeups_total") or 0) > 0, kind
        assert metrics.value("voxrelay_process_run_queue_wait_seconds_total") is not None, kind
        if kind != "bus":  # the bus forwards in a thread; it has no event loop
            assert histogram(metrics, "voxrelay_event_loop_lag_seconds", ()).count > 0, kind
        assert any(n == "voxrelay_service_info" for n, _ in metrics.values), kind

    # Counters moved.
    moved = {
        "media_edge": ("voxrelay_edge_frames_total",),
        "mixer": ("voxrelay_mixer_frames_total",),
        "openai_link": ("voxrelay_link_frames_total",
                        "voxrelay_link_realtime_connects_total"),
        "recorder": ("voxrelay_recorder_events_total",),
        "signaling": ("voxrelay_http_requests_total",),
    }
    for kind, names in moved.items():
        for name in names:
            assert (kinds[kind].value(name) or 0) > 0, f"{kind}: {name} did not move"
    assert kinds["signaling"].value("voxrelay_sessions") == 1

    # The recorded conversation says where each reply's time went.
    summaries = [e for e in recorded if e["type"] == "turn.summary"]
    assert len(summaries) == len(PHRASES), [e["type"] for e in recorded]
    for summary in summaries:
        assert summary["speaker"] == "kitchen"
        assert 0 < summary["time_to_first_audio_s"] < 5
        assert 0 < summary["uplink_age_s"] < 0.5
        assert set(summary["voice_to_voice_s"]) == {"kitchen"}
        assert summary["voice_to_voice_s"]["kitchen"] > summary["time_to_first_audio_s"]
        assert summary["speech_ended_at"] > 0
    heard = [e for e in recorded if e["type"] == "turn.heard"]
    assert len(heard) == len(PHRASES)
