"""A recorded conversation's audio, end to end, with real parts only.

Every service is its own process on a real bus (recorder, mixer, link, two media edges,
signaling) against the simulator process; two real aiortc clients each say an espeak
phrase and the AI answers each. The recorder writes each microphone, the mix and the
model's voice as WAV files beside the event log; the test reads them back through
signaling's API and lines them up with the recorded events by their ``started_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from proto import events
from tests.integration.room import Device, Room, speech_turn
from tests.support.speech import best_correlation, rms_dbfs, speak
from tests.support.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PHRASES = {"alice": "what is the weather like today",
           "bob": "please turn on the lights in the hall"}
RATE = 24_000
FRAME = 480
SPEECH_DBFS = -45.0
"A 20 ms frame louder than this is someone speaking (the mixer's voice threshold)."
SILENT_DBFS = -60.0
ONSET_TOLERANCE_S = 0.2
WAIT_S = 30.0


@pytest.fixture
async def room(tmp_path: Path, start_sim) -> AsyncIterator[Room]:
    sim = start_sim("--response-latency-ms", "150")
    async with contextlib.AsyncExitStack() as exits:
        stack = await exits.enter_async_context(Stack(
            data_dir=tmp_path, env={"VOXRELAY_OPENAI_BASE_URL": sim.api_base}))
        http = await exits.enter_async_context(aiohttp.ClientSession())
        opened = await Room.open(stack, sim, http)
        exits.push_async_callback(opened.close)
        yield opened


async def take_turn(speaker: Device, everyone: list[Device], phrase: str) -> None:
    """``speaker`` says ``phrase``; every device sees the AI's reply end."""
    marks = {d.name: d.mark() for d in everyone}
    speaker.mic.play(speech_turn(speak(phrase)))
    for device in everyone:
        await device.next_event("turn.end", marks[device.name], role="assistant")


async def get(room: Room, path: str) -> tuple[int, str, bytes]:
    async with room.http.get(f"{room.url}{path}") as resp:
        return resp.status, resp.content_type, await resp.read()


async def final_index(room: Room, sid: str, folder: Path, streams: int) -> dict[str, Any]:
    """The index once the session's files are finished: it lists ``streams`` files and
    counts exactly what each holds."""
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                status, _, body = await get(room, f"/v1/sessions/{sid}/recordings")
                if status == 200:
                    index = json.loads(body)
                    if len(index["streams"]) == streams and all(
                            (folder / s["file"]).stat().st_size == 44 + 2 * s["frames"]
                            for s in index["streams"]):
                        return index
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"no finished recording of {sid} within {WAIT_S} s") from None


def read_wav(body: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(body)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


class Recording:
    """One downloaded stream, addressed by wall-clock time."""

    def __init__(self, entry: dict[str, Any], samples: np.ndarray) -> None:
        self.entry = entry
        self.samples = samples
        self.started_at = float(entry["started_at"])

    def between(self, start: float, end: float) -> bytes:
        first = max(0, round((start - self.started_at) * RATE))
        last = max(first, round((end - self.started_at) * RATE))
        return self.samples[first:last].tobytes()

    def onsets(self) -> list[float]:
        """Wall-clock times where speech starts (a loud frame after a quiet one)."""
        frames = self.samples[:len(self.samples) - len(self.samples) % FRAME].reshape(-1, FRAME)
        loud = [rms_dbfs(f.tobytes()) > SPEECH_DBFS for f in frames]
        return [self.started_at + i * FRAME / RATE for i, now in enumerate(loud)
                if now and (i == 0 or not loud[i - 1])]


def loudest_dbfs(pcm: bytes, window_ms: int = 200) -> float:
    size, step = window_ms * 48, 20 * 48
    if len(pcm) <= size:
        return rms_dbfs(pcm)
    return max(rms_dbfs(pcm[i:i + size]) for i in range(0, len(pcm) - size + 1, step))


async def test_a_recorded_conversation_keeps_each_voice_in_time_with_its_events(room: Room):
    unrecorded = await room.create_session(name="not kept")
    session = await room.create_session(name="kept", record=True)
    sid = session["session_id"]
    alice = await room.join(session, "alice")
    bob = await room.join(session, "bob")
    everyone = [alice, bob]
    for device in everyone:
        await take_turn(device, everyone, PHRASES[device.name])
    async with room.http.delete(f"{room.url}/v1/sessions/{sid}",
                                headers={"Authorization": f"Bearer {session['token']}"}) as r:
        assert r.status == 204

    folder = room.stack.data_dir / "recordings" / sid  # type: ignore[operator]
    index = await final_index(room, sid, folder, streams=4)
    assert index["session_id"] == sid
    by_file = {s["file"]: s for s in index["streams"]}
    clients = {d.name: f"client-{d.client_id}.wav" for d in everyone}
    assert set(by_file) == {"mix.wav", "model.wav", *clients.values()}
    for device in everyone:
        entry = by_file[clients[device.name]]
        assert (entry["kind"], entry["client_id"], entry["client_name"]) == (
            "client", device.client_id, device.name)
    for entry in index["streams"]:
        assert (entry["sample_rate"], entry["channels"]) == (24000, 1)
        assert entry["duration_s"] == pytest.approx(entry["frames"] / RATE, abs=0.001)

    # Every file downloads through signaling, as the recorder wrote it.
    recordings = {}
    for file, entry in by_file.items():
        status, content_type, body = await get(room, f"/v1/sessions/{sid}/recordings/{file}")
        assert (status, content_type) == (200, "audio/wav"), file
        assert body == (folder / file).read_bytes()
        recordings[file] = Recording(entry, read_wav(body))

    # Each microphone: its own phrase, starting when the mixer heard that client begin.
    activity = {d.name: [e for e in room.bus_events(events.VoiceActivity, session)
                         if e.client_id == d.client_id] for d in everyone}
    spoke = {}
    for device in everyone:
        mic = recordings[clients[device.name]]
        began = next(e.at for e in activity[device.name] if e.active)
        ended = max(e.at for e in activity[device.name] if not e.active)
        spoke[device.name] = (began, ended)
        onsets = mic.onsets()
        print(f"{device.name}: voice.activity at {began:.3f}, loud from {onsets[:3]}")
        assert abs(onsets[0] - began) <= ONSET_TOLERANCE_S, (device.name, onsets, began)
        assert best_correlation(speak(PHRASES[device.name]), mic.samples.tobytes()) > 0.7
    # ...and nobody else's: each one's file is quiet while the other speaks.
    for device, other in ((alice, bob), (bob, alice)):
        began, ended = spoke[other.name]
        quiet = recordings[clients[device.name]].between(began, ended)
        assert rms_dbfs(quiet) < SILENT_DBFS, (device.name, rms_dbfs(quiet))

    # The mix carries both phrases where they were said.
    mix = recordings["mix.wav"]
    for name, (began, ended) in spoke.items():
        assert loudest_dbfs(mix.between(began, ended)) > SPEECH_DBFS + 5, name

    # The model's voice: loud where the assistant's turns were, silent between them.
    model = recordings["model.wav"]
    starts = {e.turn_id: e for e in room.bus_events(events.TurnStart, session)
              if e.role == "assistant"}
    completed = [starts[e.turn_id] for e in room.bus_events(events.TurnEnd, session)
                 if e.role == "assistant" and e.status == "completed" and e.turn_id in starts]
    assert len(starts) == 2 and completed, "the AI did not answer"
    for start in completed:
        assert loudest_dbfs(model.between(start.ts - 0.5, start.ts + 3.0)) > SPEECH_DBFS + 5
    began, ended = spoke["bob"]  # after the first reply, before the second
    assert model.started_at < began
    assert rms_dbfs(model.between(began, ended)) < SILENT_DBFS

    # Only recorder file names are served, from the session's own folder, even where a
    # tampered index lists a file outside it.
    (folder.parent.parent / "secret.wav").write_bytes(b"secret")
    index["streams"].append({"file": "../../secret.wav", "kind": "mix"})
    (folder / "index.json").write_text(json.dumps(index))
    for bad in ("index.json", "recorder.sqlite3", "..%2F..%2Frecorder.sqlite3",
                "..%2F..%2Fsecret.wav", "%2E%2E", f"client-{'z' * 32}.wav"):
        status, _, body = await get(room, f"/v1/sessions/{sid}/recordings/{bad}")
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found", bad

    # A session created without "record" leaves no audio at all.
    for path in (f"/v1/sessions/{unrecorded['session_id']}/recordings",
                 "/v1/sessions/..%2F..%2Ftmp/recordings",
                 "/v1/sessions/not-a-session/recordings/mix.wav"):
        status, _, body = await get(room, path)
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found", path
    assert not (folder.parent / unrecorded["session_id"]).exists()
