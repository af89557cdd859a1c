"""Sessions created and ended in a loop, no client joining: what each service keeps.

Runs ``voxrelay up`` (loopback, one edge, the simulator) and, ``--concurrency`` at a
time, creates a session (the link opens its Realtime call, the mixer its mix), waits
``--hold`` seconds and ends it (DELETE), ``--sessions`` times; ``--anchor`` keeps one
more session open throughout, so connections shared by sessions stay up. Every
``--every`` sessions it reads each service's RSS from ``/proc``, and at the end it
prints the growth per session over the second half of the run (the first sessions load
codecs and caches).

Usage: ``.venv/bin/python -m benchmarks.session_churn --sessions 600 [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp

from services.client.voxrelay import create_session

from .hop_latency import start_stack, stop_stack

SERVICES = ("openai_link", "mixer", "media_edge", "recorder", "signaling", "bus")


def service_pids(kind: str) -> list[int]:
    """Pids of the processes running ``python -m services.<kind>``."""
    wanted = ["-m", f"services.{kind}"]
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if args[-3:-1] == wanted or args[-2:] == wanted:
            pids.append(int(proc.name))
    return pids


def rss_mb(kind: str) -> float:
    total = 0
    for pid in service_pids(kind):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


async def churn(base: str, sessions: int, concurrency: int, hold_s: float, anchor: bool,
                every: int) -> list[tuple[int, float, dict[str, float]]]:
    """(sessions ended, seconds, RSS MB by service) at the start and every ``every``."""
    samples = [(0, 0.0, {kind: rss_mb(kind) for kind in SERVICES})]
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        if anchor:
            await create_session(http, base)

        async def one() -> None:
            session = await create_session(http, base)
            await asyncio.sleep(hold_s)
            async with http.delete(f"{base}/v1/sessions/{session['session_id']}") as resp:
                if resp.status not in (200, 204):
                    raise RuntimeError(f"DELETE gave {resp.status}: {await resp.text()}")

        ended = 0
        while ended < sessions:
            batch = min(concurrency, sessions - ended)
            await asyncio.gather(*(one() for _ in range(batch)))
            ended += batch
            if ended % every == 0 or ended == sessions:
                samples.append((ended, time.monotonic() - started,
                                {kind: rss_mb(kind) for kind in SERVICES}))
    return samples


def per_session_kb(samples: list[tuple[int, float, dict[str, float]]]) -> dict[str, float]:
    """Growth per session (KB) from the sample nearest the middle to the last."""
    middle = min(samples, key=lambda s: abs(s[0] - samples[-1][0] / 2))
    last = samples[-1]
    count = max(1, last[0] - middle[0])
    return {kind: round((last[2][kind] - middle[2][kind]) * 1024 / count, 1)
            for kind in SERVICES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--hold", type=float, default=2.0, help="seconds each session lives")
    parser.add_argument("--anchor", action="store_true",
                        help="keep one more session open throughout")
    parser.add_argument("--every", type=int, default=50, help="sample RSS every N sessions")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="voxrelay-churn-")
    proc, base, _ = start_stack(data_dir, {"VOXRELAY_SESSION_RATE_PER_MIN": "100000"})
    try:
        samples = asyncio.run(churn(base, args.sessions, args.concurrency, args.hold,
                                    args.anchor, args.every))
    finally:
        stop_stack(proc)
    print(f"{'sessions':>8} {'s':>5} " + " ".join(f"{kind:>12}" for kind in SERVICES))
    for ended, seconds, rss in samples:
        print(f"{ended:8d} {seconds:5.0f} " + " ".join(f"{rss[k]:12.1f}" for k in SERVICES))
    growth = per_session_kb(samples)
    print("KB per session, second half: "
          + ", ".join(f"{kind} {kb:+.1f}" for kind, kb in growth.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": vars(args), "samples": samples, "kb_per_session": growth}, indent=1))


if __name__ == "__main__":
    main()
