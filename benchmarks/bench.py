"""``voxrelay bench``: what voxrelay costs per conversation, against the baseline bridge.

For each conversation count in ``--conversations`` it runs the load generator
(:mod:`.load`) against voxrelay and, with ``--baseline``, against the baseline bridge
(:mod:`benchmarks.baseline`: one asyncio process holding both aiortc legs), one after the
other at each step, both against the same simulator in echo mode. While the load runs it
reads, over a window in its middle (after every client joined, before any leaves):

- CPU seconds per conversation-second: utime + stime from ``/proc/<pid>/stat`` summed
  over the server's processes (voxrelay: the stack's supervisor and its children but the
  simulator, or with ``--url`` every ``services.*`` process but a simulator; the
  baseline: its one process), divided by conversations × window; and per service, with
  its wake-ups per second (voluntary context switches over every thread) and the time
  it was ready to run but waited for a core (run-queue wait, ``schedstat``);
- RSS per conversation: the server's resident memory under load less before it, over the
  conversations; and its growth over the window (``--seconds 600`` for a 10-minute run);
- from the clients: frames delivered (of one every 20 ms), the longest gap between two
  frames as their packets reached the client's socket (and, in brackets, as the client's
  event loop got to them, its own stalls included: see :mod:`benchmarks.load`), voice to
  voice (the packet with the speech's last sample leaving the client → the packet with
  the reply's first loud frame reaching its socket; in brackets, as the client's loop
  timed it), turns answered; in the JSON, each
  client's longest gap and when it began (``gaps_ms_at_s``, worst first) and the longest
  a packet waited at a client's socket to be read (``read_behind_ms``);
- voxrelay's bus hops p50/p99 over the window (its histograms, scraped before and after).

Ratios (voxrelay / baseline) are printed per step; the machine is shared and noisy, so
only ratios measured in one run are compared. ``--url`` measures a stack that is already
running (voxrelay only; no baseline).

Usage: ``voxrelay bench [--conversations 1,4,8] [--seconds 40] [--baseline] [--json FILE]``
(or ``.venv/bin/python -m benchmarks.bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.runtime.procstat import ThreadTotals
from services.supervisor.status import Histogram, histogram_quantile, scrape_by_kind
from tests.support.ports import free_port, free_port_block

from .hop_latency import start_stack, stop_stack
from .load import ClientResult, run_load
from .procfs import lower_priority

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
WARMUP_S = 8.0
"Load runs this long before the measured window (every client joined by then)."
TAIL_S = 4.0
HOPS = ("edge_to_mixer", "mixer_to_link", "link_to_edge")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def by_service(pids: list[int], measure: Callable[[list[int]], float]) -> dict[str, float]:
    """``measure`` so far per service name (``media_edge``, ``mixer``, …): ``cpu_seconds``,
    ``wakeups``, ``run_queue_wait``."""
    found: dict[str, float] = {}
    for pid in pids:
        name = service_name(pid)
        found[name] = found.get(name, 0.0) + measure([pid])
    return found


_TOTALS: dict[int, ThreadTotals] = {}


def _totals(pid: int) -> tuple[float, int]:
    return _TOTALS.setdefault(pid, ThreadTotals(pid)).read()


def wakeups(pids: list[int]) -> int:
    """Voluntary context switches so far over every thread of ``pids``: how often they
    went to sleep and were woken (by a socket, a timer, another thread)."""
    return sum(_totals(pid)[1] for pid in pids)


def run_queue_wait(pids: list[int]) -> float:
    """Seconds so far that the threads of ``pids`` were ready to run but waited for a
    core: the part of a bus hop, or of any wake-up, that the scheduler adds rather than
    the process's own work."""
    return sum(_totals(pid)[0] for pid in pids)


def service_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    modules = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == b"-m"]
    module = modules[0].decode() if modules else "?"
    return {"services.cli": "supervisor"}.get(module, module.rsplit(".", 1)[-1])


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total


def voxrelay_pids() -> list[int]:
    """Every voxrelay process on this machine but the simulator (and this one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if _is_voxrelay(argv):
            found.append(int(entry.name))
    return sorted(found)


def stack_pids(supervisor: int) -> list[int]:
    """The voxrelay processes of the stack ``supervisor`` (``voxrelay up``) runs: itself
    and its children, the simulator left out; another stack on this machine is not
    counted."""
    return [pid for pid in voxrelay_pids() if pid == supervisor or _parent(pid) == supervisor]


def simulator_pids(supervisor: int) -> list[int]:
    """The simulator (and anything else) the stack's supervisor started besides voxrelay."""
    ours = stack_pids(supervisor)
    return [pid for pid in _children(supervisor) if pid not in ours]


def _children(parent: int) -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and _parent(int(e.name)) == parent]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _is_voxrelay(argv: list[bytes]) -> bool:
    """``python -m services.<service>``, or the supervisor (``services.cli up``)."""
    modules = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == b"-m"]
    for module in modules:
        if module == b"services.cli":
            return b"up" in argv
        if module.startswith(b"services.") and module != b"services.openai_sim":
            return True
    return False


@dataclass
class Server:
    name: str
    url: str
    pids: list[int]
    headers: dict[str, str]


def delta(after: Histogram | None, before: Histogram | None) -> Histogram | None:
    if after is None:
        return None
    if before is None:
        return after
    counts = dict(before.buckets)
    return Histogram(tuple((bound, count - counts.get(bound, 0.0))
                           for bound, count in after.buckets))


async def hop_histograms(url: str) -> dict[str, Histogram | None]:
    kinds = await scrape_by_kind(url)
    found: dict[str, Histogram | None] = {}
    for stage, kind in (("edge_to_mixer", "mixer"), ("mixer_to_link", "openai_link"),
                        ("link_to_edge", "media_edge")):
        metrics = kinds.get(kind)
        found[stage] = metrics.histograms.get(
            ("voxrelay_bus_hop_seconds", (("stage", stage),))) if metrics else None
    return found


def measure(server: Server, conversations: int, seconds: float, processes: int,
            ice_hosts: list[str] | None, profile_dir: Path | None = None,
            harness_nice: int = 0) -> dict[str, Any]:
    """Run the load on ``server`` and read its costs over the middle of it.

    ``harness_nice``: the load generator's nice value (see :func:`run`).

    With ``profile_dir``, py-spy samples every server process over the window and writes
    one file of collapsed stacks per process there (``<server>-<n>-<service>-<pid>.txt``,
    for ``flamegraph.pl``, speedscope or :mod:`benchmarks.hotspots`).
    """
    rss_idle = rss_bytes(server.pids)
    hops_before = asyncio.run(hop_histograms(server.url)) if server.name == "voxrelay" else {}
    window: dict[str, float] = {}
    spent: dict[str, float] = {}
    woken: dict[str, float] = {}
    waited: dict[str, float] = {}

    def sample() -> None:
        time.sleep(WARMUP_S)
        span = max(1.0, seconds - WARMUP_S - TAIL_S)
        spies = _profile(server, conversations, span, profile_dir) if profile_dir else []
        per_service0 = by_service(server.pids, cpu_seconds)
        woken0 = by_service(server.pids, wakeups)
        waited0 = by_service(server.pids, run_queue_wait)
        window["rss0"] = rss_bytes(server.pids)
        window["cpu0"], window["t0"] = cpu_seconds(server.pids), time.monotonic()
        time.sleep(span)
        window["cpu1"], window["t1"] = cpu_seconds(server.pids), time.monotonic()
        window["rss"] = rss_bytes(server.pids)
        for name, cpu in by_service(server.pids, cpu_seconds).items():
            spent[name] = cpu - per_service0.get(name, 0.0)
        for name, count in by_service(server.pids, wakeups).items():
            woken[name] = count - woken0.get(name, 0)
        for name, wait in by_service(server.pids, run_queue_wait).items():
            waited[name] = wait - waited0.get(name, 0.0)
        for spy in spies:
            spy.wait(30)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results = run_load(server.url, conversations, seconds, processes=processes,
                       headers=server.headers, ice_hosts=ice_hosts, niceness=harness_nice)
    sampler.join()
    hops: dict[str, dict[str, float | None]] = {}
    if server.name == "voxrelay":
        after = asyncio.run(hop_histograms(server.url))
        for stage in HOPS:
            h = delta(after.get(stage), hops_before.get(stage))
            hops[stage] = {q: _ms(histogram_quantile(v, h)) for q, v in (("p50_ms", 0.5),
                                                                         ("p99_ms", 0.99))}
    span = window["t1"] - window["t0"]
    return {
        "server": server.name,
        "conversations": conversations,
        "cpu_s_per_conversation_s": round((window["cpu1"] - window["cpu0"])
                                          / (span * conversations), 4),
        "rss_mb_per_conversation": round((window["rss"] - rss_idle) / conversations / 2**20, 2),
        "rss_mb_total": round(window["rss"] / 2**20, 1),
        "rss_growth_pct": round(100 * (window["rss"] - window["rss0"]) / window["rss0"], 2),
        "cpu_s_per_s_by_service": {name: round(cpu / span, 4)
                                   for name, cpu in sorted(spent.items())},
        "wakeups_per_s_by_service": {name: round(count / span)
                                     for name, count in sorted(woken.items())},
        "run_queue_ms_per_s_by_service": {name: round(1000 * wait / span, 2)
                                          for name, wait in sorted(waited.items())},
        "clients": _clients(results),
        "bus_hops": hops,
    }


def _profile(server: Server, conversations: int, seconds: float,
             profile_dir: Path) -> list[subprocess.Popen[bytes]]:
    """One ``py-spy record`` per server process for ``seconds``; ``VOXRELAY_PY_SPY_FLAGS``
    adds flags (``--native`` shows time spent in C: uvloop, libopus, libsrtp)."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    flags = os.environ.get("VOXRELAY_PY_SPY_FLAGS", "").split()
    if "--native" not in flags:  # py-spy reads native stacks only from a paused process
        flags.append("--nonblocking")
    spies = []
    for pid in server.pids:
        out = profile_dir / f"{server.name}-{conversations}-{service_name(pid)}-{pid}.txt"
        spies.append(subprocess.Popen(
            [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
             "--duration", str(int(seconds)), "--rate", "200", "--format", "raw",
             "--output", str(out), *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def _clients(results: list[ClientResult]) -> dict[str, Any]:
    ok = [r for r in results if not r.error and r.window_s]
    replies = [ms for r in ok for ms in r.reply_ms]
    heard = [ms for r in ok for ms in r.reply_heard_ms]
    return {
        "errors": [r.error for r in results if r.error],
        "delivery_min": round(min((r.delivery for r in ok), default=0.0), 4),
        "delivery_mean": round(float(np.mean([r.delivery for r in ok])) if ok else 0.0, 4),
        "longest_gap_ms": max((r.longest_gap_ms for r in ok), default=None),
        "longest_gap_at_s": max(ok, key=lambda r: r.longest_gap_ms).longest_gap_at_s
        if ok else None,
        "gaps_ms_at_s": sorted(([r.longest_gap_ms, r.longest_gap_at_s] for r in ok),
                               reverse=True),
        "longest_gap_heard_ms": max((r.longest_gap_heard_ms for r in ok), default=None),
        "read_behind_ms": max((r.read_behind_ms for r in ok), default=None),
        "turns": sum(r.turns for r in results),
        "answered": sum(r.answered for r in results),
        "voice_to_voice_p50_ms": _pct(replies, 50),
        "voice_to_voice_p99_ms": _pct(replies, 99),
        "voice_to_voice_heard_p50_ms": _pct(heard, 50),
        "voice_to_voice_heard_p99_ms": _pct(heard, 99),
    }


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


@contextmanager
def baseline_bridge(sim_url: str) -> Iterator[Server]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.baseline", "--host", "127.0.0.1", "--port",
         str(port), "--openai-base-url", f"{sim_url}/v1"],
        env={**os.environ, "VOXRELAY_ICE_HOSTS": "127.0.0.1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield Server("baseline", url, [proc.pid], {})
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the baseline bridge exited ({proc.returncode})")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the baseline bridge did not start")


def run(counts: list[int], seconds: float, with_baseline: bool, processes: int,
        url: str | None, profile_dir: Path | None = None,
        link_transport: str = "", harness_nice: int = 0) -> dict[str, Any]:
    """``link_transport``: the started stack's ``VOXRELAY_OPENAI_TRANSPORT`` (empty: as
    this environment has it).

    ``harness_nice`` > 0 runs the load generator and the simulator at that nice value, so
    that on a machine they share with the server they take only the CPU it leaves, as
    browsers and the Realtime API on machines of their own would (both servers alike).
    """
    steps: list[dict[str, Any]] = []
    if url:
        server = Server("voxrelay", url, voxrelay_pids(),
                        _bearer(os.environ.get("VOXRELAY_ADMIN_KEY", "")))
        for n in counts:
            steps.append({"conversations": n,
                          "voxrelay": measure(server, n, seconds, processes, None,
                                              profile_dir)})
        return {"seconds": seconds, "steps": steps}
    link_transport = link_transport or os.environ.get("VOXRELAY_OPENAI_TRANSPORT", "auto")
    sim_port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        proc, stack_url, _ = start_stack(data_dir, {
            "VOXRELAY_SIM_REPLY_MODE": "echo", "VOXRELAY_SIM_RESPONSE_LATENCY_MS": "150",
            "VOXRELAY_MAX_SESSIONS_PER_TENANT": "1000",
            "VOXRELAY_SESSION_RATE_PER_MIN": "100000",
            "VOXRELAY_OPENAI_TRANSPORT": link_transport},
            metrics_port=free_port_block(5), sim_port=sim_port)
        try:
            time.sleep(1.0)
            server = Server("voxrelay", stack_url, stack_pids(proc.pid), {})
            sim_url = f"http://127.0.0.1:{sim_port}"
            simulator = simulator_pids(proc.pid)
            for n in counts:
                step: dict[str, Any] = {"conversations": n}
                if harness_nice:
                    lower_priority(simulator, harness_nice)
                step["voxrelay"] = measure(server, n, seconds, processes, ["127.0.0.1"],
                                           profile_dir, harness_nice)
                if with_baseline:
                    with baseline_bridge(sim_url) as baseline:
                        step["baseline"] = measure(baseline, n, seconds, processes,
                                                   ["127.0.0.1"], profile_dir, harness_nice)
                    step["ratios"] = ratios(step["voxrelay"], step["baseline"])
                steps.append(step)
        finally:
            stop_stack(proc)
    return {"seconds": seconds, "link_transport": link_transport,
            "harness_nice": harness_nice, "steps": steps}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    return {
        "cpu": ratio(ours["cpu_s_per_conversation_s"], theirs["cpu_s_per_conversation_s"]),
        "rss_per_conversation": ratio(ours["rss_mb_per_conversation"],
                                      theirs["rss_mb_per_conversation"]),
        "voice_to_voice_p50": ratio(ours["clients"]["voice_to_voice_p50_ms"],
                                    theirs["clients"]["voice_to_voice_p50_ms"]),
    }


LATE_READ_MS = 100.0
"A load generator that read a packet this late was short of CPU itself."


def render(result: dict[str, Any]) -> str:
    header = ("| server | conv. | CPU-s / conv-s | RSS MB / conv. | RSS growth % | "
              "delivered (min) | longest gap ms (as heard) | answered | "
              "voice→voice p50 / p99 ms (as heard) | "
              "bus hops p99 ms |")
    lines = [header, "|" + "---|" * 10]
    if "link_transport" in result:
        nice = (f"; load generator and simulator at nice {result['harness_nice']}"
                if result.get("harness_nice") else "")
        lines.insert(0, f"voxrelay's link to the Realtime API: {result['link_transport']}"
                        f"{nice}\n")
    for step in result["steps"]:
        for name in ("voxrelay", "baseline"):
            row = step.get(name)
            if row is None:
                continue
            c = row["clients"]
            hops = " / ".join(f"{v['p99_ms']}" for v in row["bus_hops"].values()) or "—"
            lines.append(
                f"| {name} | {row['conversations']} | {row['cpu_s_per_conversation_s']} | "
                f"{row['rss_mb_per_conversation']} | {row['rss_growth_pct']} | "
                f"{c['delivery_min']:.3f} | "
                f"{c['longest_gap_ms']} ({c.get('longest_gap_heard_ms')}) | "
                f"{c['answered']}/{c['turns']} | "
                f"{c['voice_to_voice_p50_ms']} / {c['voice_to_voice_p99_ms']} "
                f"({c.get('voice_to_voice_heard_p50_ms')} / "
                f"{c.get('voice_to_voice_heard_p99_ms')}) | {hops} |")
            if c["errors"]:
                lines.append(f"|  | errors: {'; '.join(c['errors'][:3])} |" + " |" * 8)
        if "ratios" in step:
            r = step["ratios"]
            lines.append(f"| voxrelay / baseline | {step['conversations']} | {r['cpu']} | "
                         f"{r['rss_per_conversation']} | | | | | {r['voice_to_voice_p50']} | |")
    lines.append("")
    for step in result["steps"]:
        for name in ("voxrelay", "baseline"):
            row = step.get(name)
            if row is not None and row.get("wakeups_per_s_by_service"):
                cpu, woken = row["cpu_s_per_s_by_service"], row["wakeups_per_s_by_service"]
                waited = row.get("run_queue_ms_per_s_by_service", {})
                lines.append(f"{name} at {row['conversations']}, CPU-s/s (wakeups/s, ms/s "
                             "waiting for a core) by service: " + ", ".join(
                                 f"{service} {cpu.get(service, 0)} ({woken[service]}, "
                                 f"{waited.get(service, 0)})" for service in sorted(woken)))
    behind = [(name, step["conversations"], step[name]["clients"].get("read_behind_ms"))
              for step in result["steps"] for name in ("voxrelay", "baseline") if name in step]
    late = [f"{name} at {n}: {ms} ms" for name, n, ms in behind if ms and ms > LATE_READ_MS]
    if late:
        lines.append("the load generator read packets late (its own lag, in the bracketed "
                     "figures, not in those timed at the socket): " + ", ".join(late))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="voxrelay bench",
        description="What voxrelay costs per conversation, against the baseline bridge.")
    parser.add_argument("--conversations", default="1,4",
                        help="comma-separated conversation counts (default 1,4)")
    parser.add_argument("--seconds", type=float, default=40.0,
                        help="how long each step's conversations talk (default 40)")
    parser.add_argument("--baseline", action="store_true",
                        help="also run the baseline bridge at each step, and print ratios")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--url", help="measure this running stack instead of starting one")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--link-transport", choices=("auto", "webrtc", "websocket"),
                        help="the started stack's link to the Realtime API "
                             "(default: VOXRELAY_OPENAI_TRANSPORT, else auto = WebRTC)")
    parser.add_argument("--harness-nice", type=int, default=0, metavar="N",
                        help="run the load generator and the simulator at nice N (1-19), "
                             "so they take only the CPU the server leaves (default 0)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy every server process over each window; stacks to DIR")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.conversations.split(",") if n.strip()]
    if not counts or min(counts) < 1 or args.seconds < WARMUP_S + TAIL_S + 2:
        parser.error(f"--conversations must be ≥ 1 and --seconds ≥ {WARMUP_S + TAIL_S + 2:g}")
    if not 0 <= args.harness_nice <= 19:
        parser.error("--harness-nice must be 0 to 19")
    if args.harness_nice and args.url:
        parser.error("--harness-nice needs the stack the bench starts (not --url)")
    result = run(counts, args.seconds, args.baseline, max(1, args.processes), args.url,
                 args.profile, args.link_transport or "", args.harness_nice)
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
