"""Rounds of conversations started and ended: what each service keeps after each round.

Runs ``voxrelay up`` (loopback, the simulator in echo mode) and, ``--rounds`` times, the
bench's load (:func:`benchmarks.bench.measure`: ``--conversations`` aiortc clients
speaking in turns for ``--seconds``, then leaving). After each round, and a few seconds
for the services to let go, it prints each service's RSS from ``/proc`` (and the
simulator's) and, at the end,
how long the edge's and the link's collections after closed peers held their loops
(``voxrelay_reclaim_seconds``). The first round loads codecs and caches; what the
rounds after it add is what a service keeps per conversation.

Usage: ``.venv/bin/python -m benchmarks.conversation_rounds [--conversations 4]
[--seconds 15] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from services.supervisor.status import histogram_quantile, scrape_by_kind
from tests.support.ports import free_port, free_port_block

from .bench import Server, measure, stack_pids
from .hop_latency import start_stack, stop_stack
from .session_churn import SERVICES, rss_mb

SETTLE_S = 3.0
"Time after a round for peers to close and be collected (the services wait 1 s)."


COLUMNS = (*SERVICES, "openai_sim")
"voxrelay's services, and the simulator the stack runs without a key."


def rss_row(label: str) -> str:
    return f"{label:>8} " + " ".join(f"{rss_mb(kind):12.1f}" for kind in COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        proc, url, _ = start_stack(data_dir, {
            "VOXRELAY_SIM_REPLY_MODE": "echo", "VOXRELAY_SIM_RESPONSE_LATENCY_MS": "150",
            "VOXRELAY_MAX_SESSIONS_PER_TENANT": "1000",
            "VOXRELAY_SESSION_RATE_PER_MIN": "100000"},
            metrics_port=free_port_block(5), sim_port=free_port())
        try:
            time.sleep(1.0)
            server = Server("voxrelay", url, stack_pids(proc.pid), {})
            print(f"{'RSS MB':>8} " + " ".join(f"{kind:>12}" for kind in COLUMNS))
            print(rss_row("start"), flush=True)
            for n in range(1, args.rounds + 1):
                measure(server, args.conversations, args.seconds, args.processes,
                        ["127.0.0.1"])
                time.sleep(SETTLE_S)
                print(rss_row(f"round {n}"), flush=True)
            kinds = asyncio.run(scrape_by_kind(url))
        finally:
            stop_stack(proc)
    for kind in ("media_edge", "openai_link"):
        metrics = kinds.get(kind)
        reclaim = metrics.histograms.get(("voxrelay_reclaim_seconds", ())) if metrics else None
        if reclaim is None or not reclaim.count:
            print(f"{kind}: no collection after closed peers")
        else:
            p50, p99 = (histogram_quantile(q, reclaim) or 0.0 for q in (0.5, 0.99))
            print(f"{kind}: {reclaim.count:.0f} collections after closed peers, "
                  f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")


if __name__ == "__main__":
    main()
