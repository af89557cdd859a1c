"""The ``datachannel`` transport: a client's audio as PCM16 on an ``audio`` DataChannel.

The whole stack runs (``voxrelay up``, one media edge). Real aiortc clients join with
``"transport": "datachannel"``: their speech, sent as 20 ms PCM16 messages, is answered
by the simulator, and they hear the reply as PCM16 messages, 50 a second, without gaps;
a track client in the same conversation hears the same reply. Junk on the audio channel
is dropped and counted, and the edge stays up.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import aiohttp
import pytest

from proto.audio import FRAME_BYTES
from services.client.voxrelay import VoxrelayClient, create_session
from services.runtime.media import audible
from tests.support.speech import silence, speak
from tests.support.up import Up, running_up

from .test_hostile_clients import dropped, health

pytestmark = pytest.mark.timeout(180)

PHRASE = "what is the weather like today"
REPLY_WAIT_S = 40.0
EDGE_AUDIO_DROPPED = "voxrelay_edge_datachannel_audio_dropped_total"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("datachannel"), edges=1) as up:
        yield up


PAUSE_S = 0.1
"A longer time between two messages is a pause in the model's voice, which is not sent."


def audible_ms(heard: bytes | bytearray) -> int:
    return sum(20 for i in range(0, len(heard) - FRAME_BYTES + 1, FRAME_BYTES)
               if audible(heard[i:i + FRAME_BYTES]))


async def reply_heard(client: VoxrelayClient) -> None:
    await client.wait_event("turn.end", timeout=REPLY_WAIT_S, role="assistant")
    async with asyncio.timeout(5):  # the reply's last frames reach the client
        while audible_ms(client.heard) < 500:
            await asyncio.sleep(0.1)


async def test_a_datachannel_client_converses_and_hears_the_reply_at_50_messages_a_second(
        stack: Up):
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, stack.url, name="pcm client")
        client = VoxrelayClient("kiosk", transport="datachannel")
        try:
            await client.join(http, stack.url, session)
            await client.wait_connected()
            client.mic.play(silence(300) + speak(PHRASE) + silence(1500))
            user = await client.wait_event("transcript.done", timeout=REPLY_WAIT_S, role="user")
            await reply_heard(client)
            async with http.get(f"{stack.url}/v1/sessions/{session['session_id']}") as r:
                [listed] = (await r.json())["clients"]
        finally:
            await client.close()
    assert user["payload"]["text"]  # the simulator heard speech (its transcript says how long)
    assert user["payload"]["speaker"] == "kiosk"
    assert listed["transport"] == "datachannel"

    # the reply arrives paced at real time, one message per 20 ms; the model's pauses
    # are not sent at all (silence stays off the bus and off the channel), and nothing
    # is dropped on the way: seq counts messages sent
    times = [t for t, _ in client.arrivals]
    seqs = [seq for _, seq in client.arrivals]
    runs: list[list[float]] = [[times[0]]]
    for before, after in zip(times, times[1:]):
        if after - before > PAUSE_S:
            runs.append([])
        runs[-1].append(after)
    longest = max(runs, key=len)
    span = longest[-1] - longest[0]
    rate = (len(longest) - 1) / span
    jitter = max(b - a for a, b in zip(longest, longest[1:]))
    print(f"\n{len(times)} messages in {len(runs)} runs; the longest {len(longest)} over "
          f"{span:.1f} s: {rate:.1f}/s, longest gap in it {jitter * 1000:.0f} ms")
    assert span > 1 and 48 <= rate <= 52
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # nothing dropped on the way


async def test_datachannel_and_track_clients_in_one_conversation_both_hear_the_reply(
        stack: Up):
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, stack.url, name="mixed transports")
        pcm, opus = VoxrelayClient("kiosk", "datachannel"), VoxrelayClient("laptop")
        try:
            for client in (pcm, opus):
                await client.join(http, stack.url, session)
                await client.wait_connected()
            opus.mic.play(silence(300) + speak(PHRASE) + silence(1500))
            for client in (pcm, opus):
                await reply_heard(client)
            speaker = await pcm.wait_event("transcript.done", role="user")
        finally:
            for client in (pcm, opus):
                await client.close()
    assert speaker["payload"]["speaker"] == "laptop"  # the track client spoke, both heard


async def test_junk_on_the_audio_channel_is_dropped_and_counted_and_the_edge_stays_up(
        stack: Up):
    async with aiohttp.ClientSession() as http:
        edge = (await health(http, stack.url))["media_edge-1"]
        before = await dropped(http, edge["metrics"], EDGE_AUDIO_DROPPED)
        session = await create_session(http, stack.url, name="audio junk")
        client = VoxrelayClient("junk", transport="datachannel")
        try:
            await client.join(http, stack.url, session)
            await client.wait_connected()
            client.silent = True  # only the junk goes on the channel
            assert client.audio is not None
            junk = [b"", b"\x01", os.urandom(959), os.urandom(961), os.urandom(64 * 1024),
                    os.urandom(200 * 48 + 480)]
            for message in junk:
                client.audio.send(message)
            client.audio.send("not audio")
            async with asyncio.timeout(10):
                while True:
                    now = await dropped(http, edge["metrics"], EDGE_AUDIO_DROPPED)
                    counted = {k: now.get(k, 0) - before.get(k, 0) for k in now}
                    if counted.get("size", 0) >= len(junk) and counted.get("text", 0) >= 1:
                        break
                    await asyncio.sleep(0.2)
            # the edge is the same process, and still talks to this client
            client.silent = False
            client.mic.play(silence(300) + speak(PHRASE) + silence(1500))
            await reply_heard(client)
            assert (await health(http, stack.url))["media_edge-1"]["pid"] == edge["pid"]
        finally:
            await client.close()
