"""A soak: conversations come and go for minutes while services are killed under them.

Runs ``voxrelay up`` (loopback, two edges, the simulator answering after a short
latency) and keeps up to ``--concurrency`` conversations going at once. Each one: one
or two aiortc clients join, speak two to four espeak phrases (alternating speakers),
wait a bounded time for each reply, leave, and the session is ended (DELETE).

On a schedule (every ``--fault-every`` seconds after warm-up, rotating) it injects:

- ``kill mixer-1`` / ``kill openai_link-1`` / ``kill recorder-1`` / ``kill media_edge``
  (SIGKILL; the edge is the one hosting the most clients, whose conversations then
  rejoin as the same clients, as the web client does when its watchdog fires);
- ``client silent``: a client stops sending (``go_silent()``), the edge notices, and it
  rejoins as the same client with a fresh offer;
- ``sim drop``: the simulator ends every Realtime call abruptly (``POST /_sim/drop``).

Recovery time, per fault: for kills and the simulator drop, from the fault to the
next reply to speech that ended after it in an affected conversation (and, for kills,
to a new pid for the instance in ``/healthz``; a phrase left unanswered for 12 s, as
one lost to a kill, is said again); for the silent client, from
``go_silent()`` to the edge noticing and to the rejoined client being connected.

Memory: every service's ``process_resident_memory_bytes`` (the simulator serves no
metrics) after warm-up and again once the last conversation has ended. A killed
service restarts fresh, which resets its RSS, so growth is given for all services and
for those never killed.

Usage: ``.venv/bin/python -m benchmarks.soak --minutes 10 [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from services.client.voxrelay import VoxrelayClient, create_session
from services.runtime import configure_ice_hosts
from services.supervisor.status import RSS, StatusError, scrape_by_kind
from tests.support.ports import free_port, free_port_block
from tests.support.speech import duration_ms, silence, speak

from .hop_latency import PHRASES, start_stack, stop_stack

FAULTS = ("kill mixer-1", "kill openai_link-1", "kill media_edge", "kill recorder-1",
          "client silent", "sim drop")
"The rotation, in order; a 10-minute soak at the defaults injects each once."
EDGES = 2
RESPONSE_LATENCY_MS = 150
LEAD_MS, TAIL_MS = 300, 1500
"Silence before and after each phrase (the tail lets the simulator's VAD end the turn)."
TURN_TIMEOUT_S = 45.0
REPEAT_AFTER_S = 12.0
"No reply this long after speaking: say it again, as a user would (a lost turn)."
JOIN_TIMEOUT_S = 20.0
JOIN_ATTEMPTS = 5
NOTICE_TIMEOUT_S = 10.0
RESTART_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 150.0
"After the duration: how long the last conversations may take to finish."
SCRAPE_ATTEMPTS = 5
START_GAP_S = 2.0
"Pause between starting two conversations, so joins do not all land at once."
NO_KILL_KINDS = ("bus", "signaling")


def fault_schedule(duration_s: float, first_at_s: float, every_s: float, tail_s: float,
                   faults: Sequence[str] = FAULTS) -> list[tuple[float, str]]:
    """(seconds from start, fault) every ``every_s`` from ``first_at_s``, rotating through
    :data:`FAULTS` (or ``faults``), none later than ``tail_s`` before the end (its recovery is measured)."""
    if every_s <= 0:
        raise ValueError(f"'every_s' must be > 0 (got {every_s})")
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ValueError(f"faults must be some of {', '.join(FAULTS)} (got {unknown})")
    if not faults:
        return []
    schedule: list[tuple[float, str]] = []
    at = first_at_s
    while at <= duration_s - tail_s:
        schedule.append((round(at, 3), faults[len(schedule) % len(faults)]))
        at += every_s
    return schedule


@dataclass
class Fault:
    kind: str
    at_s: float
    "Seconds since the soak started."
    t0: float = field(default=0.0, repr=False)
    target: str = ""
    affected: set[int] | None = field(default=None, repr=False)
    "Conversations whose next reply counts as recovery (None: any conversation)."
    recovery_s: float | None = None
    restart_s: float | None = None
    noticed_s: float | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        del row["t0"], row["affected"]
        return row


@dataclass
class Tally:
    sessions_started: int = 0
    sessions_completed: int = 0
    "Ended, every turn answered."
    sessions_degraded: int = 0
    "Ended, some turn unanswered."
    sessions_failed: int = 0
    "An error (join, connect, end) or cut off at the drain deadline."
    turns_answered: int = 0
    turns_unanswered: int = 0
    rejoins: int = 0
    repeats: int = 0
    "Phrases said again because no reply came within REPEAT_AFTER_S."


def replies(client: VoxrelayClient) -> int:
    return sum(1 for e in client.events if e["type"] == "turn.end"
               and e["payload"].get("role") == "assistant"
               and e["payload"].get("status") == "completed")


class Soak:
    """The churn, the faults and what they did, against one running stack."""

    def __init__(self, http: aiohttp.ClientSession, url: str, sim_url: str,
                 rng: random.Random) -> None:
        self.http, self.url, self.sim_url, self.rng = http, url, sim_url, rng
        self.tally = Tally()
        self.faults: list[Fault] = []
        self.active: dict[int, Conversation] = {}
        self.silent_request: Fault | None = None
        self.started = time.monotonic()
        self.errors: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def answered(self, conversation: int, speech_end: float) -> None:
        """A reply came: it ends the recovery of every fault before that speech ended."""
        now = time.monotonic()
        for fault in self.faults:
            if (fault.recovery_s is None and fault.t0 and fault.kind != "client silent"
                    and speech_end >= fault.t0
                    and (fault.affected is None or conversation in fault.affected)):
                fault.recovery_s = round(now - fault.t0, 2)

    async def pids(self) -> dict[str, int]:
        async with self.http.get(f"{self.url}/healthz") as resp:
            services = (await resp.json())["services"]
        return {i["instance"]: i["pid"] for instances in services.values() for i in instances}

    async def inject(self, fault: Fault, tg: asyncio.TaskGroup) -> None:
        self.faults.append(fault)
        if fault.kind == "client silent":
            self.silent_request = fault  # a conversation takes it before its next turn
            return
        if fault.kind == "sim drop":
            fault.affected = set(self.active) or None
            fault.t0 = time.monotonic()
            async with self.http.post(f"{self.sim_url}/_sim/drop", json={}) as resp:
                fault.note = f"dropped {len((await resp.json())['dropped'])} call(s)"
            return
        name = fault.kind.removeprefix("kill ")
        pids = await self.pids()
        if name == "media_edge":
            name, clients = await self._busiest_edge()
            fault.affected = {c for c, _ in clients} or None
        else:
            fault.affected = set(self.active) or None
        fault.target = name
        if name not in pids:
            fault.note = f"{name} not alive in /healthz"
            return
        fault.t0 = time.monotonic()
        os.kill(pids[name], signal.SIGKILL)
        if fault.kind == "kill media_edge":
            for number, client_id in clients:
                if (conversation := self.active.get(number)) is not None:
                    conversation.rebuild.add(client_id)
        tg.create_task(self._watch_restart(fault, name, pids[name]))

    async def _busiest_edge(self) -> tuple[str, list[tuple[int, str]]]:
        """The edge hosting the most clients, and those (conversation, client id)."""
        hosted: dict[str, list[tuple[int, str]]] = {f"media_edge-{i + 1}": []
                                                    for i in range(EDGES)}
        for number, conversation in list(self.active.items()):
            if conversation.session is None:
                continue
            sid = conversation.session["session_id"]
            async with self.http.get(f"{self.url}/v1/sessions/{sid}") as resp:
                if resp.status != 200:
                    continue
                for client in (await resp.json())["clients"]:
                    hosted.setdefault(client["edge"], []).append((number, client["client_id"]))
        name = max(hosted, key=lambda edge: len(hosted[edge]))
        return name, hosted[name]

    async def _watch_restart(self, fault: Fault, name: str, old_pid: int) -> None:
        deadline = fault.t0 + RESTART_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if (await self.pids()).get(name) not in (None, old_pid):
                    fault.restart_s = round(time.monotonic() - fault.t0, 2)
                    return
            except (aiohttp.ClientError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.2)
        fault.note = f"no new {name} in /healthz within {RESTART_TIMEOUT_S:g} s"


class Conversation:
    """One session: clients join, take turns, leave; the session is ended."""

    def __init__(self, soak: Soak, number: int) -> None:
        self.soak, self.number = soak, number
        self.n_clients = soak.rng.randint(1, 2)
        self.n_turns = soak.rng.randint(2, 4)
        self.session: dict[str, Any] | None = None
        self.clients: list[VoxrelayClient] = []
        self.rebuild: set[str] = set()
        "Client ids whose edge died: they rejoin before (or instead of finishing) a turn."

    async def run(self) -> None:
        soak, tally = self.soak, self.soak.tally
        tally.sessions_started += 1
        unanswered = 0
        try:
            self.session = await create_session(soak.http, soak.url, name=f"soak-{self.number}")
            for i in range(self.n_clients):
                self.clients.append(await self._join(f"soak{self.number}-{i}"))
            for turn in range(self.n_turns):
                await self._go_silent_if_asked()
                if not await self._turn(turn):
                    unanswered += 1
            await self._end()
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            tally.sessions_failed += 1
            soak.errors.append(f"{soak.elapsed():7.1f}s conversation {self.number}: "
                               f"{type(e).__name__}: {e}")
            await self._close_clients()
            return
        if unanswered:
            tally.sessions_degraded += 1
        else:
            tally.sessions_completed += 1

    async def _join(self, name: str, client_id: str | None = None) -> VoxrelayClient:
        """A new client (as ``client_id`` when given), connected; a few bounded tries,
        since signaling may still place it on an edge that just died."""
        assert self.session is not None
        for attempt in range(JOIN_ATTEMPTS):
            client = VoxrelayClient(name)
            try:
                async with asyncio.timeout(JOIN_TIMEOUT_S):
                    await client.join(self.soak.http, self.soak.url, self.session, client_id)
                    await client.wait_connected(JOIN_TIMEOUT_S)
                return client
            except (AssertionError, TimeoutError, aiohttp.ClientError):
                await client.close()
                if attempt == JOIN_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(2.0)
        raise AssertionError("unreachable")

    async def _turn(self, turn: int) -> bool:
        """Speak one phrase and wait (bounded) for the reply, saying it again if it went
        unheard; if the speaker's edge dies meanwhile, rejoin and speak it once more."""
        phrase = PHRASES[(self.number + turn) % len(PHRASES)]
        pcm = silence(LEAD_MS) + speak(phrase)
        for _ in range(2):
            await self._rebuild()
            speaker = self.clients[turn % len(self.clients)]
            before = replies(speaker)
            start = time.monotonic()
            speech_end = start + duration_ms(pcm) / 1000
            speaker.mic.play(pcm + silence(TAIL_MS))
            spoken = start
            while time.monotonic() < start + TURN_TIMEOUT_S and not self.rebuild:
                if time.monotonic() > spoken + REPEAT_AFTER_S:  # unheard: say it again
                    spoken = time.monotonic()
                    speech_end = spoken + duration_ms(pcm) / 1000
                    speaker.mic.play(pcm + silence(TAIL_MS))
                    self.soak.tally.repeats += 1
                if replies(speaker) > before:
                    self.soak.tally.turns_answered += 1
                    self.soak.answered(self.number, speech_end)
                    return True
                await asyncio.sleep(0.05)
            if not self.rebuild:
                break
        self.rebuild.clear()
        self.soak.tally.turns_unanswered += 1
        return False

    async def _rebuild(self) -> None:
        for i, client in enumerate(self.clients):
            if client.client_id in self.rebuild:
                self.rebuild.discard(client.client_id)
                await client.close()
                self.clients[i] = await self._join(client.name, client.client_id)
                self.soak.tally.rejoins += 1

    async def _go_silent_if_asked(self) -> None:
        fault = self.soak.silent_request
        if fault is None:
            return
        self.soak.silent_request = None
        client = self.clients[0]
        fault.target = f"conversation {self.number}"
        fault.affected = {self.number}
        fault.t0 = time.monotonic()
        client.go_silent()
        async with asyncio.timeout(NOTICE_TIMEOUT_S):
            while (await self._detail(client.client_id))["connected"]:
                await asyncio.sleep(0.1)
        fault.noticed_s = round(time.monotonic() - fault.t0, 2)
        await client.close()
        self.clients[0] = await self._join(client.name, client.client_id)
        async with asyncio.timeout(JOIN_TIMEOUT_S):
            while not (await self._detail(client.client_id))["connected"]:
                await asyncio.sleep(0.05)
        fault.recovery_s = round(time.monotonic() - fault.t0, 2)
        self.soak.tally.rejoins += 1

    async def _detail(self, client_id: str | None) -> dict[str, Any]:
        assert self.session is not None
        async with self.soak.http.get(
                f"{self.soak.url}/v1/sessions/{self.session['session_id']}") as resp:
            clients = (await resp.json())["clients"]
        return next(c for c in clients if c["client_id"] == client_id)

    async def _end(self) -> None:
        await self._close_clients()
        assert self.session is not None
        async with self.soak.http.delete(
                f"{self.soak.url}/v1/sessions/{self.session['session_id']}",
                headers={"Authorization": f"Bearer {self.session['token']}"}) as resp:
            if resp.status != 204:
                raise AssertionError(f"DELETE answered {resp.status}: {await resp.text()}")

    async def _close_clients(self) -> None:
        for client in self.clients:
            await client.close()


async def rss_by_kind(url: str, bus_metrics: str) -> dict[str, float]:
    """RSS in MB per service kind (instances of a kind summed); a few tries, since an
    instance may be restarting."""
    for attempt in range(SCRAPE_ATTEMPTS):
        try:
            kinds = await scrape_by_kind(url, extra={"bus": bus_metrics})
            return {kind: round((m.value(RSS) or 0.0) / 1e6, 1)
                    for kind, m in sorted(kinds.items())}
        except StatusError:
            if attempt == SCRAPE_ATTEMPTS - 1:
                raise
            await asyncio.sleep(2.0)
    raise AssertionError("unreachable")


async def churn(soak: Soak, duration_s: float, concurrency: int, warmup_s: float,
                schedule: Sequence[tuple[float, str]], memory: dict[str, Any],
                bus_metrics: str) -> None:
    """Keep ``concurrency`` conversations going for ``duration_s``, inject the faults,
    then let the last conversations finish (bounded)."""
    end = soak.started + duration_s
    tasks: set[asyncio.Task[None]] = set()
    async with asyncio.TaskGroup() as tg:

        async def faults() -> None:
            for at_s, kind in schedule:
                await asyncio.sleep(max(0.0, soak.started + at_s - time.monotonic()))
                try:
                    async with asyncio.timeout(30):
                        await soak.inject(Fault(kind, round(soak.elapsed(), 1)), tg)
                except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as e:
                    soak.errors.append(f"{soak.elapsed():7.1f}s {kind}: {type(e).__name__}: {e}")

        async def sample_memory() -> None:
            await asyncio.sleep(warmup_s)
            memory["after_warmup"] = await rss_by_kind(soak.url, bus_metrics)
            memory["after_warmup_active_sessions"] = len(soak.active)
            await asyncio.sleep(max(0.0, soak.started + duration_s / 2 - time.monotonic()))
            memory["halfway"] = await rss_by_kind(soak.url, bus_metrics)

        tg.create_task(faults())
        tg.create_task(sample_memory())
        number = 0
        while time.monotonic() < end:
            if len(soak.active) < concurrency:
                number += 1
                conversation = Conversation(soak, number)
                soak.active[number] = conversation
                task = tg.create_task(conversation.run())
                task.add_done_callback(lambda _, n=number: soak.active.pop(n, None))
                tasks.add(task)
                await asyncio.sleep(START_GAP_S)
            else:
                await asyncio.sleep(0.5)
        pending = [t for t in tasks if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=DRAIN_TIMEOUT_S)
            for task in late:
                task.cancel()
            soak.tally.sessions_failed += len(late)


async def measure(minutes: float, concurrency: int, fault_every_s: float, warmup_s: float,
                  seed: int, log_path: str | None,
                  faults: Sequence[str] = FAULTS) -> dict[str, Any]:
    configure_ice_hosts(["127.0.0.1"])
    for phrase in PHRASES:
        speak(phrase)  # espeak once, before the clock starts
    duration_s = minutes * 60
    schedule = fault_schedule(duration_s, warmup_s + 10, fault_every_s, tail_s=40,
                              faults=faults)
    metrics_port, sim_port = free_port_block(4 + EDGES), free_port()
    bus_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    memory: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        log_file = Path(log_path or Path(data_dir) / "up.log")
        with log_file.open("w") as log:  # noqa: ASYNC230 - once, before the stack starts
            proc, url, _ = start_stack(
                data_dir, {"VOXRELAY_SIM_RESPONSE_LATENCY_MS": str(RESPONSE_LATENCY_MS)},
                metrics_port, edges=EDGES, sim_port=sim_port, log=log)
            try:
                async with aiohttp.ClientSession(
                        timeout=aiohttp.ClientTimeout(total=30)) as http:
                    soak = Soak(http, url, f"http://127.0.0.1:{sim_port}", random.Random(seed))
                    await churn(soak, duration_s, concurrency, warmup_s, schedule, memory,
                                bus_metrics)
                    wall_s = soak.elapsed()
                    await asyncio.sleep(3.0)  # the ended sessions' teardown settles
                    memory["at_end"] = await rss_by_kind(url, bus_metrics)
                    async with http.get(f"{url}/v1/sessions") as resp:
                        listed = await resp.json()
            finally:
                stop_stack(proc)
        log_text = log_file.read_text(errors="replace")
    killed = {f.target.rsplit("-", 1)[0] for f in soak.faults
              if f.kind.startswith("kill") and f.t0}
    return {
        "minutes": minutes, "wall_s": round(wall_s, 1), "concurrency": concurrency,
        "edges": EDGES, "simulator_response_latency_ms": RESPONSE_LATENCY_MS,
        "tally": asdict(soak.tally),
        "faults": [f.to_json() for f in soak.faults],
        "memory_mb": memory_rows(memory, killed),
        "sessions_still_active_at_end": _active(listed),
        "stack_log_tracebacks": log_text.count("Traceback"),
        "errors": soak.errors,
    }


def _active(listed: Any) -> int | None:
    sessions = listed.get("sessions") if isinstance(listed, dict) else listed
    if not isinstance(sessions, list):
        return None
    return sum(1 for s in sessions if isinstance(s, dict) and s.get("state") == "active")


def memory_rows(memory: dict[str, Any], killed: set[str]) -> dict[str, Any]:
    """Per-kind RSS after warm-up, halfway and at the end, and the growth from warm-up to
    the end in total and over the kinds never killed. Growth over the second half alone
    tells a leak (still growing) from allocator arenas filling up (flat by then)."""
    before, after = memory.get("after_warmup", {}), memory.get("at_end", {})
    halfway = memory.get("halfway", {})
    rows = {kind: {"after_warmup": before.get(kind), "halfway": halfway.get(kind),
                   "at_end": after.get(kind), "killed": kind in killed}
            for kind in sorted(set(before) | set(after))}

    def growth(kinds: Sequence[str]) -> dict[str, float | None]:
        b = sum(before.get(k) or 0.0 for k in kinds)
        a = sum(after.get(k) or 0.0 for k in kinds)
        return {"after_warmup": round(b, 1), "at_end": round(a, 1),
                "growth_pct": round((a - b) / b * 100, 1) if b else None}

    never_killed = [k for k in rows if k not in killed]
    return {"services": rows, "total": growth(list(rows)),
            "never_killed": {"kinds": never_killed, **growth(never_killed)},
            "active_sessions_at_warmup": memory.get("after_warmup_active_sessions")}


def render(result: dict[str, Any]) -> str:
    t = result["tally"]
    lines = [(f"soak: {result['minutes']:g} min ({result['wall_s']} s wall), up to "
              f"{result['concurrency']} conversations, {result['edges']} edges, simulator "
              f"answering after {result['simulator_response_latency_ms']} ms"),
             (f"sessions: {t['sessions_started']} started, {t['sessions_completed']} completed, "
              f"{t['sessions_degraded']} ended with a turn unanswered, "
              f"{t['sessions_failed']} failed; still active at end: "
              f"{result['sessions_still_active_at_end']}"),
             (f"turns: {t['turns_answered']} answered, {t['turns_unanswered']} unanswered; "
              f"repeated: {t['repeats']}; rejoins: {t['rejoins']}; "
              f"stack log tracebacks: {result['stack_log_tracebacks']}"),
             "", (f"{'at s':>7} {'fault':20} {'target':16} {'recovered s':>11} "
                  f"{'restart s':>9} {'noticed s':>9}  note")]
    for f in result["faults"]:
        lines.append(f"{f['at_s']:>7} {f['kind']:20} {f['target']:16} "
                     f"{_fmt(f['recovery_s']):>11} {_fmt(f['restart_s']):>9} "
                     f"{_fmt(f['noticed_s']):>9}  {f['note']}")
    mem = result["memory_mb"]
    lines += ["", (f"{'service (RSS MB)':20} {'after warm-up':>13} {'halfway':>8} {'at end':>8} "
                   f"{'growth':>8} {'2nd half':>8}")]
    for kind, row in mem["services"].items():
        b, h, a = row["after_warmup"], row.get("halfway"), row["at_end"]
        lines.append(f"{kind + (' (killed)' if row['killed'] else ''):20} {_fmt(b):>13} "
                     f"{_fmt(h):>8} {_fmt(a):>8} {_pct(b, a):>8} {_pct(h, a):>8}")
    for label, row in (("all services", mem["total"]),
                       ("never killed", mem["never_killed"])):
        pct = "-" if row["growth_pct"] is None else f"{row['growth_pct']:+.1f}%"
        lines.append(f"{label:20} {row['after_warmup']:>13} {'':>8} {row['at_end']:>8} "
                     f"{pct:>8}")
    lines.append(f"(warm-up and halfway figures taken with conversations active "
                 f"({mem['active_sessions_at_warmup']} at warm-up); end figures with none)")
    if result["errors"]:
        lines += ["", "errors:", *result["errors"]]
    return "\n".join(lines)


def _pct(before: float | None, after: float | None) -> str:
    return f"{(after - before) / before * 100:+.1f}%" if after is not None and before else "-"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--fault-every", type=float, default=90.0, help="seconds between faults")
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds before the first memory figure (faults start 10 s later)")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"comma-separated, rotated in this order; '' for none "
                             f"(default: {','.join(FAULTS)})")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", help="keep the stack's log in this file")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.minutes <= 0 or args.concurrency < 1:
        parser.error("'--minutes' must be > 0 and '--concurrency' >= 1")
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    try:
        fault_schedule(1, 0, 1, 0, faults)
    except ValueError as e:
        parser.error(str(e))
    result = asyncio.run(measure(args.minutes, args.concurrency, args.fault_every, args.warmup,
                                 args.seed, args.log, faults))
    print(render(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
