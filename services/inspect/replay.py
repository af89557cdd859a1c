"""``voxrelay replay SID``: drive a recorded conversation through a running stack again.

The recording says who joined when (``client.joined`` / ``client.left``, times from the
``session.started`` event) and what each one's microphone heard (``client-<id>.wav``
from the session's audio recording, sample 0 at its ``started_at``). A replay creates
a new session with the same name, instructions and voice (recorded, so it can be
inspected in turn), joins the same clients by name at the same moments as real aiortc
peers, plays each microphone's recording from the moment it started, leaves as they
left, waits for the last reply and ends the session. ``speed`` scales the whole
timeline, the audio included (``--speed 2`` takes half the time, an octave up).

Against the simulator in the same reply mode, the replay's conversation — turns, who
spoke, what was said, replies completed or interrupted — is the original's:
:func:`conversation_steps` is that comparable sequence, and :func:`compare` prints the
differences and how each reply's latency moved.
"""

from __future__ import annotations

import asyncio
import difflib
import io
import itertools
import logging
import time
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from proto import events
from proto.audio import SAMPLE_RATE
from services.client.voxrelay import VoxrelayClient, create_session

from .api import Api, InspectError

logger = logging.getLogger(__name__)

SETTLE_S = 2.0
"After the last sound: how long the conversation must stay quiet to be over."
MAX_TAIL_S = 60.0
"...and the most a replay waits for that after the last recording has been played."
CONNECT_TIMEOUT_S = 20.0
MAX_REPLAY_S = 4 * 3600.0
"A recording longer than this is refused (a replay runs in real time)."


@dataclass
class RecordedClient:
    client_id: str
    name: str
    role: str
    joined_s: float
    "When it joined, seconds after the session started."
    left_s: float | None
    audio_s: float | None = None
    "When its microphone recording starts (seconds after the session started)."
    pcm: bytes = b""
    "PCM16 24 kHz mono: what its microphone sent."


@dataclass
class Plan:
    session_id: str
    name: str
    instructions: str
    voice: str
    clients: list[RecordedClient]

    @property
    def length_s(self) -> float:
        ends = [c.joined_s for c in self.clients]
        ends += [c.audio_s + len(c.pcm) / 2 / SAMPLE_RATE for c in self.clients
                 if c.audio_s is not None]
        return max(ends, default=0.0)


def plan(api: Api, session_id: str) -> Plan:
    """What to replay: the recorded clients and, from the audio recording, their mics."""
    log = api.event_log(session_id).events
    started = next((e for e in log if isinstance(e, events.SessionStarted)), None)
    if started is None:
        raise InspectError(f"session {session_id} has no session.started event: nothing to replay")
    t0 = started.ts
    clients: dict[str, RecordedClient] = {}
    for event in log:
        match event:
            case events.ClientJoined() if event.client_id not in clients:
                clients[event.client_id] = RecordedClient(
                    event.client_id, event.name or "guest", event.role, event.ts - t0, None)
            case events.ClientLeft() if event.client_id in clients:
                clients[event.client_id].left_s = event.ts - t0
            case _:
                pass
    index = api.recordings(session_id)
    if index is None:
        raise InspectError(f"session {session_id} recorded no audio: replay needs its "
                           "microphones (record the session, or use --events-only)")
    for stream in index.get("streams", []):
        client = clients.get(stream.get("client_id", ""))
        if stream.get("kind") != "client" or client is None:
            continue
        body, _ = api.get(f"/v1/sessions/{session_id}/recordings/{stream['file']}")
        client.pcm = read_wav(body)
        client.audio_s = float(stream["started_at"]) - t0
    speakers = [c for c in clients.values() if c.role != "listener"]
    if not any(c.pcm for c in speakers):
        raise InspectError(f"session {session_id}: no microphone was recorded")
    result = Plan(session_id, started.name, started.instructions, started.voice,
                  sorted(clients.values(), key=lambda c: c.joined_s))
    if result.length_s > MAX_REPLAY_S:
        raise InspectError(f"session {session_id} lasts {result.length_s:.0f} s: longer than "
                           f"a replay may run ({MAX_REPLAY_S:.0f} s)")
    return result


def read_wav(data: bytes) -> bytes:
    """PCM16 24 kHz mono frames of a WAV file as the recorder writes it."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            if (wav.getsampwidth(), wav.getnchannels(), wav.getframerate()) != (2, 1, SAMPLE_RATE):
                raise InspectError("a recording is not PCM16 mono 24 kHz")
            return wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as e:
        raise InspectError(f"a recording is not a readable WAV file: {e}") from e


def at_speed(pcm: bytes, speed: float) -> bytes:
    """The audio played ``speed`` times as fast (linear interpolation)."""
    if speed == 1.0 or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    positions = np.arange(0, len(samples) - 1, speed)
    out = np.interp(positions, np.arange(len(samples)), samples)
    return np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes()


@dataclass
class ReplayResult:
    session_id: str
    "The new session."
    seconds: float


async def replay(url: str, recorded: Plan, speed: float = 1.0,
                 say: Callable[[str], None] = lambda _: None,
                 headers: Mapping[str, str] | None = None) -> ReplayResult:
    """Run the recorded conversation again on the stack at ``url``; the new session id.
    ``headers`` carry the credential that creates sessions (``Api.headers``)."""
    if speed <= 0:
        raise InspectError(f"'--speed' must be > 0 (got {speed:g})")
    began = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        session = await create_session(http, url, headers=headers, name=f"{recorded.name} (replay)".strip(),
                                       instructions=recorded.instructions,
                                       voice=recorded.voice, record=True)
        sid = session["session_id"]
        say(f"replaying {recorded.session_id} as {sid} ({len(recorded.clients)} clients, "
            f"{recorded.length_s / speed:.0f} s)")
        devices: list[VoxrelayClient] = []
        try:
            async with asyncio.TaskGroup() as tg:
                for client in recorded.clients:
                    tg.create_task(_run_client(http, url, session, client, speed, began,
                                               devices, say))
            await _until_quiet(devices)
        finally:
            for device in devices:
                await device.close()
            async with http.delete(f"{url}/v1/sessions/{sid}",
                                   headers={"Authorization": f"Bearer {session['token']}"}):
                pass
    return ReplayResult(sid, time.monotonic() - began)


async def _run_client(http: aiohttp.ClientSession, url: str, session: dict[str, Any],
                      client: RecordedClient, speed: float, began: float,
                      devices: list[VoxrelayClient], say: Callable[[str], None]) -> None:
    await _sleep_until(began + client.joined_s / speed)
    device = VoxrelayClient(client.name)
    devices.append(device)
    await device.join(http, url, session)
    await device.wait_connected(CONNECT_TIMEOUT_S)
    say(f"{time.monotonic() - began:7.1f} s  {client.name} joined")
    if client.pcm and client.audio_s is not None and client.role != "listener":
        await _sleep_until(began + client.audio_s / speed)
        device.mic.play(at_speed(client.pcm, speed))
        await device.mic.drained.wait()
    if client.left_s is not None:
        await _sleep_until(began + client.left_s / speed)
        await device.close()
        say(f"{time.monotonic() - began:7.1f} s  {client.name} left")


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


async def _until_quiet(devices: list[VoxrelayClient]) -> None:
    """Until no device received a conversation event for SETTLE_S (bounded)."""
    deadline = time.monotonic() + MAX_TAIL_S
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = sum(len([e for e in d.events if e.get("type") in _STEP_TYPES]) for d in devices)
        if count != seen:
            seen, quiet_since = count, time.monotonic()
        elif time.monotonic() - quiet_since >= SETTLE_S:
            return
        await asyncio.sleep(0.1)


_STEP_TYPES = {"turn.start", "turn.end", "transcript.done", "ai.interrupted", "ai.state"}


def conversation_steps(log: list[events.AnyEvent]) -> list[str]:
    """The part of an event log a replay must reproduce, one line per step: turns and
    their speakers, what was said, replies completed or cut off, who joined and left.
    Timing, pings, voice activity and ids are left out (they differ by nature), and so is
    the order among joins and leaves with nothing said between them (clients leaving
    together leave in any order)."""
    names: dict[str, str] = {}
    steps = []
    for event in log:
        match event:
            case events.ClientJoined():
                names[event.client_id] = event.name
                steps.append(f"client.joined {event.name}")
            case events.ClientLeft():
                steps.append(f"client.left {names.get(event.client_id, '?')}")
            case events.TranscriptDone():
                steps.append(f"transcript.done {event.role} {event.speaker}: {event.text}")
            case events.TurnEnd():
                steps.append(f"turn.end {event.role} {event.status}")
            case events.AiInterrupted():
                steps.append("ai.interrupted")
            case events.ErrorEvent():
                steps.append(f"error {event.code}")
            case _:
                pass
    return _membership_runs_sorted(steps)


def _membership_runs_sorted(steps: list[str]) -> list[str]:
    out: list[str] = []
    for membership, run in itertools.groupby(
            steps, key=lambda step: step.startswith(("client.joined ", "client.left "))):
        out += sorted(run) if membership else run
    return out


def compare(original: list[events.AnyEvent], replayed: list[events.AnyEvent],
            original_id: str, replay_id: str) -> tuple[bool, str]:
    """Whether the replay's conversation matches, and a report: a unified diff of the
    steps (empty when they match) and each reply's latency, before and after."""
    a, b = conversation_steps(original), conversation_steps(replayed)
    diff = list(difflib.unified_diff(a, b, f"original {original_id}", f"replay {replay_id}",
                                     lineterm="", n=2))
    lines = [f"{len(a)} steps in the original, {len(b)} in the replay: "
             + ("the same" if not diff else "they differ"), *diff, "",
             f"{'reply':>5}  {'first audio (ms)':>22}  {'voice to voice (ms)':>24}"]
    before = _replies(original)
    after = _replies(replayed)
    for n, (x, y) in enumerate(zip(before, after, strict=False), start=1):
        lines.append(f"{n:>5}  {_delta(x.time_to_first_audio_s, y.time_to_first_audio_s):>22}  "
                     f"{_delta(_v2v(x), _v2v(y)):>24}")
    if len(before) != len(after):
        lines.append(f"({len(before)} replies measured in the original, {len(after)} in the "
                     "replay)")
    return not diff, "\n".join(lines) + "\n"


def _replies(log: list[events.AnyEvent]) -> list[events.TurnSummary]:
    return [e for e in log if isinstance(e, events.TurnSummary)]


def _v2v(summary: events.TurnSummary) -> float:
    values = list(summary.voice_to_voice_s.values())
    return float(np.median(values)) if values else 0.0


def _delta(before: float, after: float) -> str:
    if not before or not after:
        return "-"
    return f"{before * 1000:.0f} → {after * 1000:.0f} ({(after - before) * 1000:+.0f})"

