"""What voxrelay adds to a turn's latency: the same turns through it and direct.

The simulator in echo mode says back what it heard. One client talks to it through
voxrelay (client → edge → mixer → link → simulator → link → edge → client); another
talks to the same simulator directly, over WebRTC with the session voxrelay's link would
ask for (``calls_api.session_config``). Turns alternate between the two, the same
phrases, so both see the same simulator, machine load and turn detection. For each turn:
from the end of the client's speech to the first loud frame of the reply it hears. The
difference of the two is what voxrelay adds.

``--background N`` keeps N more conversations talking through voxrelay meanwhile (the
load generator, :mod:`.load`), so the probe is the (N+1)-th: what voxrelay adds under load.
It also prints ``voxrelay_frame_age_seconds`` per bucket, scraped from the stack at the
end: where, of the time added, the frames waited inside voxrelay.

``--harness-nice N`` runs the background load generator and the simulator at nice N, as
``voxrelay bench`` does (see :func:`benchmarks.bench.run`): browsers and the Realtime
API have machines of their own, so on this one they take only the CPU voxrelay leaves.
The probe's own clients, which time the turns, keep this process's priority.

Usage: ``.venv/bin/python -m benchmarks.latency_probe [--turns 12] [--background 9]
[--harness-nice 10] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from services.client.voxrelay import create_session
from services.openai_link.calls_api import CallSettings, create_call, session_config
from services.openai_link.config import from_env as link_config
from services.runtime import configure_ice_hosts
from tests.support.ports import free_port, free_port_block
from tests.support.rtc_client import RealtimeRtcClient
from tests.support.speech import speak

from services.supervisor.status import StatusError, scrape_by_kind

from .bench import simulator_pids
from .hop_latency import frame_ages, start_stack, stop_stack
from .load import LOUD_RMS, PHRASES, ListeningClient, loudness, run_load, spoken_turn
from .procfs import lower_priority


class DirectClient(RealtimeRtcClient):
    """A client of the Realtime API itself that notes when it last heard something loud."""

    def __init__(self) -> None:
        super().__init__()
        self.loud_at = 0.0

    def _hear(self, pcm: bytes) -> None:
        super()._hear(pcm)
        if loudness(pcm) > LOUD_RMS:
            self.loud_at = time.monotonic()


async def open_direct(http: aiohttp.ClientSession, sim_url: str) -> DirectClient:
    config = link_config({"VOXRELAY_OPENAI_BASE_URL": f"{sim_url}/v1"})
    client = DirectClient()
    answer = await create_call(http, config, await client.offer(), CallSettings())
    await client.accept(answer.sdp)
    await asyncio.wait_for(client.opened.wait(), 10)
    client.send({"type": "session.update", "session": session_config(CallSettings())})
    await client.wait_for("session.updated", timeout=10)
    return client


async def probe(url: str, sim_url: str, turns: int) -> dict[str, Any]:
    speeches = [speak(p) for p in PHRASES]
    through: list[float] = []
    direct: list[float] = []
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, url, name="latency probe")
        relayed = ListeningClient("probe")
        straight = await open_direct(http, sim_url)
        try:
            await relayed.join(http, url, session)
            await relayed.wait_connected(timeout=20)
            await asyncio.sleep(1.0)
            for i in range(turns):
                for client, found in ((relayed, through), (straight, direct)):
                    reply = await spoken_turn(client, speeches[i % len(speeches)])
                    if reply is not None:
                        found.append(reply * 1000)
                    await asyncio.sleep(0.5)
        finally:
            await relayed.close()
            await straight.close()
            async with http.delete(f"{url}/v1/sessions/{session['session_id']}",
                                   headers={"Authorization": f"Bearer {session['token']}"}):
                pass
    return {"turns": turns, "through_voxrelay": _summary(through), "direct": _summary(direct),
            "added_p50_ms": _diff(through, direct, 50), "added_p99_ms": _diff(through, direct, 99)}


def _summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    return {"n": len(values), "p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1)}


def _diff(a: list[float], b: list[float], q: float) -> float | None:
    if not a or not b:
        return None
    return round(float(np.percentile(a, q) - np.percentile(b, q)), 1)


BACKGROUND_JOIN_S = 10.0
"How long the background conversations get to join before the probe starts."
TURN_PAIR_S = 9.0
"Generous time for one probe turn through voxrelay and one direct (speech, reply, pause)."


def measure(turns: int, background: int = 0, harness_nice: int = 0) -> dict[str, Any]:
    configure_ice_hosts(["127.0.0.1"])
    sim_port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        proc, url, _ = start_stack(data_dir, {"VOXRELAY_SIM_REPLY_MODE": "echo",
                                              "VOXRELAY_SIM_RESPONSE_LATENCY_MS": "150"},
                                   metrics_port=free_port_block(5), sim_port=sim_port)
        try:
            if harness_nice:
                lower_priority(simulator_pids(proc.pid), harness_nice)
            loader = None
            if background:
                seconds = BACKGROUND_JOIN_S + turns * TURN_PAIR_S + 20
                loader = threading.Thread(
                    target=run_load, args=(url, background, seconds),
                    kwargs={"ice_hosts": ["127.0.0.1"], "niceness": harness_nice},
                    daemon=True)
                loader.start()
                time.sleep(BACKGROUND_JOIN_S)
            result = asyncio.run(probe(url, f"http://127.0.0.1:{sim_port}", turns))
            result["background_conversations"] = background
            result["harness_nice"] = harness_nice
            try:
                result["frame_age_buckets"] = frame_ages(asyncio.run(scrape_by_kind(url)))
            except StatusError as e:  # the latencies are measured already: keep them
                print(f"frame ages not scraped: {e}", file=sys.stderr)
            if loader is not None:
                loader.join(BACKGROUND_JOIN_S + turns * TURN_PAIR_S + 200)
            return result
        finally:
            stop_stack(proc)


def render(result: dict[str, Any]) -> str:
    t, d = result["through_voxrelay"], result["direct"]
    return "\n".join([
        f"conversations through voxrelay meanwhile: {result['background_conversations']}"
        + (f"; they and the simulator at nice {result['harness_nice']}"
           if result.get("harness_nice") else ""),
        "",
        "| path | turns | voice→voice p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| through voxrelay | {t['n']} | {t['p50_ms']} | {t['p99_ms']} |",
        f"| direct to the simulator | {d['n']} | {d['p50_ms']} | {d['p99_ms']} |",
        f"| added by voxrelay | | {result['added_p50_ms']} | {result['added_p99_ms']} |",
        "",
        "frames by age (capture at the edge → the link's encoder, the link's receipt → an",
        "edge's encoder; every conversation):",
        *(f"  at {at}: " + ", ".join(f"{bucket} {n}" for bucket, n in buckets.items())
          for at, buckets in sorted(result.get("frame_age_buckets", {}).items())),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--background", type=int, default=0,
                        help="more conversations through voxrelay meanwhile (default 0)")
    parser.add_argument("--harness-nice", type=int, default=0, metavar="N",
                        help="run the background load generator and the simulator at nice "
                             "N (1-19), as voxrelay bench does (default 0)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    result = measure(max(1, args.turns), max(0, args.background),
                     min(19, max(0, args.harness_nice)))
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
