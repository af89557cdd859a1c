"""Several devices in one conversation, end to end, with real parts only.

Every service is its own process on a real bus (recorder, mixer, link, two media edges,
signaling), the Realtime API is the simulator process, and each device is a real aiortc
client of the HTTP API (tests/integration/room.py). The AI speaks with another voice
than the devices (all espeak-ng), as a person and the assistant would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from proto import events
from tests.integration.room import Device, MixTap, Room, speech_turn
from tests.support.sim_process import SimProcess
from tests.support.speech import BYTES_PER_MS, rms_dbfs, speak
from tests.support.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PHRASES = {
    "kitchen": "what is the weather like today",
    "hall": "please turn on the lights in the hall",
    "office": "remind me to call the plumber tomorrow",
}
AUDIBLE_DBFS = -50.0
"""The AI's voice through Opus measures about -25 dBFS, an echo-mode reply (the users'
own speech, back through both Opus legs) -35 to -41; silence is below -70."""
SILENT_DBFS = -70.0

OpenRoom = Callable[..., Awaitable[Room]]


@pytest.fixture
async def open_room(tmp_path, start_sim) -> AsyncIterator[OpenRoom]:
    """Open a room: a simulator (``sim_flags``) and the whole stack against it."""
    async with contextlib.AsyncExitStack() as exits:

        async def open_(*sim_flags: str, env: dict[str, str] | None = None,
                        signaling_env: dict[str, str] | None = None) -> Room:
            sim: SimProcess = start_sim("--response-latency-ms", "150", *sim_flags)
            stack = await exits.enter_async_context(Stack(
                data_dir=tmp_path, env={"VOXRELAY_OPENAI_BASE_URL": sim.api_base, **(env or {})}))
            http = await exits.enter_async_context(aiohttp.ClientSession())
            room = await Room.open(stack, sim, http, signaling_env)
            exits.push_async_callback(room.close)
            return room

        yield open_


def loudest_second_dbfs(pcm: bytes) -> float:
    size, step = 1000 * BYTES_PER_MS, 20 * BYTES_PER_MS
    if len(pcm) <= size:
        return rms_dbfs(pcm)
    return max(rms_dbfs(pcm[i:i + size]) for i in range(0, len(pcm) - size + 1, step))


async def take_turn(speaker: Device, everyone: list[Device], phrase: str) -> None:
    """``speaker`` says ``phrase``; every device gets the AI's whole reply, and hears it."""
    marks = {d.name: (d.mark(), len(d.heard)) for d in everyone}
    speaker.mic.play(speech_turn(speak(phrase)))
    for device in everyone:
        mark, heard_from = marks[device.name]
        end = await device.next_event("turn.end", mark, role="assistant")
        assert end["payload"]["status"] == "completed", (device.name, end)
        reply = bytes(device.heard[heard_from:])
        assert loudest_second_dbfs(reply) > AUDIBLE_DBFS, f"{device.name} did not hear the AI"


async def test_three_devices_on_two_edges_share_one_conversation(open_room: OpenRoom):
    room = await open_room("--reply-mode", "echo",
                           signaling_env={"VOXRELAY_MAX_CLIENTS_PER_SESSION": "4"})
    session = await room.create_session(name="family", voice="marin")
    kitchen = await room.join(session, "kitchen")
    hall = await room.join(session, "hall")
    office = await room.join(session, "office")
    tv = await room.join(session, "tv", role="listener")
    speakers = [kitchen, hall, office]
    everyone = [*speakers, tv]

    # Placed by load on both edges; and a fifth device does not fit (the limit is 4 here).
    detail = await room.session_detail(session)
    edge_of = {c["name"]: c["edge"] for c in detail["clients"]}
    assert len(set(edge_of.values())) == 2, edge_of
    assert {c["name"]: c["role"] for c in detail["clients"]}["tv"] == "listener"
    extra = Device("porch")
    room.devices.append(extra)
    await extra.pc.setLocalDescription(await extra.pc.createOffer())
    async with room.http.post(f"{room.url}/v1/sessions/{session['session_id']}/clients",
                              json={"sdp": extra.pc.localDescription.sdp, "name": "porch"},
                              headers={"Authorization": f"Bearer {session['token']}"}) as r:
        assert r.status == 409 and (await r.json())["error"]["code"] == "session_full"

    # client.joined reaches every device of the session, whichever edge holds it.
    for device in everyone:
        later = everyone[everyone.index(device) + 1:]
        for other in later:
            joined = await device.next_event("client.joined", 0, client_id=other.client_id)
            assert joined["payload"]["name"] == other.name
    assert any(edge_of[d.name] != edge_of[o.name]
               for d in everyone for o in everyone[everyone.index(d) + 1:])

    # Each speaks in turn: every device hears every reply; each turn names its speaker.
    for device in speakers:
        await take_turn(device, everyone, PHRASES[device.name])
    users = [e for e in await room.transcript(session) if e["speaker"] != "assistant"]
    assert [e["speaker"] for e in users] == ["kitchen", "hall", "office"], users

    tap = room.tap_mix(session)  # the second check proves it heard all along
    await check_listeners_and_muted_devices_are_never_heard(room, session, tap, tv, hall,
                                                            everyone)
    await check_a_stalled_device_does_not_stall_the_others(room, session, tap, office, everyone)


async def check_listeners_and_muted_devices_are_never_heard(
        room: Room, session: dict, tap: MixTap, tv: Device, muted: Device,
        everyone: list[Device]) -> None:
    """What the listener, or a muted device, says never reaches the mix, the model, or
    the transcript; everyone is told who muted. (With nothing mixed, the mixer sends
    nothing: its silence stays off the bus.)"""
    marks = [d.mark() for d in everyone]
    muted.mute(True)
    for device, mark in zip(everyone, marks, strict=True):
        told = await device.next_event("client.muted", mark, client_id=muted.client_id)
        assert told["payload"]["muted"] is True
    speech = speech_turn(speak("this is the television talking loudly"))
    began = time.monotonic()
    tv.mic.play(speech)
    muted.mic.play(speech_turn(speak("can anyone hear me now")))
    async with asyncio.timeout(30):
        await tv.mic.drained.wait()
        await muted.mic.drained.wait()
    await asyncio.sleep(1.5)  # the simulator would have committed a turn by now
    heard = tap.between(began, time.monotonic())
    assert all(f.dbfs < SILENT_DBFS for f in heard), "the listener or the muted device was mixed"
    for device, mark in zip(everyone, marks, strict=True):
        assert not [e for e in device.events[mark:] if e["type"] == "turn.start"]
    assert not [e for e in room.bus_events(events.VoiceActivity, session)
                if e.client_id in (tv.client_id, muted.client_id) and e.ts > began_wall(began)]
    muted.mute(False)
    await everyone[0].next_event("client.muted", marks[0], client_id=muted.client_id,
                                 muted=False)


def began_wall(monotonic_at: float) -> float:
    """The wall time at a time.monotonic() reading."""
    return time.time() - (time.monotonic() - monotonic_at)


async def check_a_stalled_device_does_not_stall_the_others(
        room: Room, session: dict, tap: MixTap, stalled: Device, everyone: list[Device]) -> None:
    """A device that stops sending: the mix goes on at 50 frames/s (its seq counts every
    tick; ticks with nothing to mix stay off the bus) and the others are answered."""
    stalled.room_mic.stall()
    began = time.monotonic()
    kitchen = everyone[0]
    await take_turn(kitchen, [d for d in everyone if d is not stalled], PHRASES["kitchen"])
    window = tap.between(began, time.monotonic())
    loud = [n for n, f in enumerate(window) if f.dbfs > SILENT_DBFS]
    assert len(loud) >= 25, f"the tap heard {len(loud)} loud frames of the kitchen's turn"
    spoken = window[loud[0]:loud[-1] + 1]
    seconds = spoken[-1].at - spoken[0].at
    rate = (spoken[-1].seq - spoken[0].seq) / seconds
    print(f"aud/mix with {stalled.name} stalled: {len(spoken)} frames, seq advanced "
          f"{rate:.1f}/s over {seconds:.2f} s")
    assert 45 <= rate <= 55
    said = [f.seq - f.silent_before for f in window[1:]]
    assert said == [f.seq + 1 for f in window[:-1]], "the mixer skipped ticks"
    stalled.room_mic.resume()
    users = [e for e in await room.transcript(session) if e["speaker"] != "assistant"]
    assert users[-1]["speaker"] == "kitchen"


async def phone_on_the_table(room: Room) -> tuple[dict, Device, Device]:
    """A session with a laptop and a phone whose microphone hears its own loudspeaker."""
    session = await room.create_session(name="living room", voice="marin")
    laptop = await room.join(session, "laptop")
    phone = await room.join(session, "phone")
    phone.room_mic.pick_up(delay_ms=ECHO_DELAY_MS, gain_db=ECHO_GAIN_DB)
    return session, laptop, phone


ECHO_DELAY_MS = 60
ECHO_GAIN_DB = -6.0
"The phone's loudspeaker as its microphone hears it: loud enough to be taken for speech."


async def test_a_phone_playing_the_ai_back_does_not_interrupt_it_but_its_speech_does(
        open_room: OpenRoom):
    room = await open_room()
    _, laptop, phone = await phone_on_the_table(room)
    ducked = await room.mixer_metric("voxrelay_mixer_frames_ducked_total")

    # The AI's reply comes back through the phone's microphone: it is not interrupted.
    mark = phone.mark()
    await take_turn(laptop, [laptop, phone], "what is the weather like today")
    assert not [e for e in phone.events[mark:] if e["type"] == "ai.interrupted"]
    echo_frames = await room.mixer_metric("voxrelay_mixer_frames_ducked_total") - ducked
    print(f"{echo_frames:.0f} frames of the phone ducked as echo")
    assert echo_frames >= 50  # a second of the reply, at least

    # The phone's owner speaks over the next reply: that interrupts it.
    mark = phone.mark()
    laptop.mic.play(speech_turn(speak("tell me something interesting")))
    await phone.next_event("turn.start", mark, role="assistant")
    await phone.until_hearing_voice(since=len(phone.heard), ms=300)
    phone.mic.play(speech_turn(speak("stop please I want to ask something else")))
    await phone.next_event("ai.interrupted", mark)
    cancelled = await phone.next_event("turn.end", mark, role="assistant")
    assert cancelled["payload"]["status"] == "cancelled"
    said = await phone.next_event("transcript.done", mark, role="user", speaker="phone")
    print("the interruption:", said["payload"])


async def test_without_echo_gating_the_phone_interrupts_the_ai(open_room: OpenRoom):
    """The control: the same room with echo gating off, the AI interrupts itself."""
    room = await open_room(env={"VOXRELAY_MIXER_ECHO_GATE": "0"})
    _, laptop, phone = await phone_on_the_table(room)
    mark = phone.mark()
    laptop.mic.play(speech_turn(speak("what is the weather like today")))
    end = await phone.next_event("turn.end", mark, role="assistant")
    assert end["payload"]["status"] == "cancelled"
    assert await room.mixer_metric("voxrelay_mixer_frames_ducked_total") == 0
