"""A conversation survives its mixer, link, edge and recorder being killed (kill -9),
and one started while its mixer restarts waits for it.

The whole stack runs under ``voxrelay up``; the supervisor restarts the killed process
and signaling resumes the session on it (``services/signaling/recovery.py``), giving a
new link the conversation as recorded. The client
does nothing but keep talking: each next turn must be answered, and the recorded
transcript must hold every turn.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from services.client.voxrelay import VoxrelayClient, create_session
from tests.support.speech import silence, speak
from tests.support.up import Up, running_up

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]

PHRASES = ("what is the weather like today", "please turn on the lights",
           "remind me to call the plumber")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Up]:
    with running_up(tmp_path, edges=1) as up:
        yield up


async def pids(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with http.get(f"{url}/healthz") as resp:
        services = (await resp.json())["services"]
    return {i["instance"]: i["pid"] for instances in services.values() for i in instances}


async def kill_and_wait_for_restart(http: aiohttp.ClientSession, url: str, name: str) -> None:
    before = (await pids(http, url))[name]
    os.kill(before, signal.SIGKILL)
    async with asyncio.timeout(30):
        while (await pids(http, url)).get(name) in (None, before):
            await asyncio.sleep(0.2)


async def take_turn(client: VoxrelayClient, phrase: str) -> None:
    """Speak; the AI's reply must complete (turn.end), within a bounded wait."""
    answered = len(replies(client))
    client.mic.play(silence(300) + speak(phrase) + silence(1500))
    async with asyncio.timeout(45):
        while len(replies(client)) <= answered:
            await asyncio.sleep(0.05)
    assert replies(client)[-1]["payload"]["status"] == "completed"


def replies(client: VoxrelayClient) -> list[dict]:
    return [e for e in client.events
            if e["type"] == "turn.end" and e["payload"]["role"] == "assistant"]


async def test_the_conversation_resumes_after_its_mixer_link_edge_and_recorder_are_killed(
        stack: Up):
    """kill -9, one after the other, the session's mixer, its link, the edge holding the
    client and the recorder; after each the next turn is answered, and the recorded
    transcript holds every turn. The client keeps its peer through the first two; when
    its edge dies it reconnects as itself with a fresh offer, as the web client does on
    noticing the loss."""
    turns = [*PHRASES, PHRASES[0], PHRASES[1]]
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, stack.url, name="survivor")
        client = VoxrelayClient("kitchen")
        clients = [client]
        try:
            await client.join(http, stack.url, session)
            await client.wait_connected()
            await take_turn(client, turns[0])
            heard = client.heard_ms()

            await kill_and_wait_for_restart(http, stack.url, "mixer-1")
            await take_turn(client, turns[1])

            await kill_and_wait_for_restart(http, stack.url, "openai_link-1")
            await take_turn(client, turns[2])
            # The new link's call was given the conversation as recorded before the crash.
            async with http.get(f"{stack.sim_url}/_sim/calls") as resp:
                calls = (await resp.json())["calls"]
            items = [(i["role"], i["text"]) for i in calls[-1]["items"] if i.get("role")]
            assert [role for role, _ in items[:4]] == ["user", "assistant"] * 2, items
            assert client.heard_ms() > heard + 1000, "the replies after the crashes went unheard"
            assert client.pc.connectionState == "connected"  # the same peer, all along

            await kill_and_wait_for_restart(http, stack.url, "media_edge-1")
            again = VoxrelayClient("kitchen")
            clients.append(again)
            await again.join(http, stack.url, session, client_id=client.client_id)
            await again.wait_connected()
            await take_turn(again, turns[3])

            await kill_and_wait_for_restart(http, stack.url, "recorder-1")
            await take_turn(again, turns[4])
        finally:
            for each in clients:
                await each.close()
        base = f"{stack.url}/v1/sessions/{session['session_id']}"
        async with http.get(base) as resp:
            detail = await resp.json()
        assert detail["state"] == "active"
        assert (detail["mixer"], detail["link"]) == ("mixer-1", "openai_link-1")
        assert [c["client_id"] for c in detail["clients"]] == [client.client_id]
        async with http.get(f"{base}/transcript") as resp:
            entries = (await resp.json())["entries"]
    speakers = [e["speaker"] for e in entries]
    assert speakers == ["kitchen", "assistant"] * len(turns), speakers


async def session_client(http: aiohttp.ClientSession, url: str, session: dict) -> dict:
    async with http.get(f"{url}/v1/sessions/{session['session_id']}") as resp:
        clients = (await resp.json())["clients"]
    assert len(clients) == 1, clients
    return clients[0]


async def test_a_device_that_drops_off_is_noticed_and_comes_back_as_itself(stack: Up):
    """Its network drops: the edge notices within seconds; it reconnects with a fresh
    offer under the same session and client id, and the conversation carries on."""
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, stack.url, name="wobbly wifi")
        first = VoxrelayClient("kitchen")
        second = VoxrelayClient("kitchen")
        try:
            await first.join(http, stack.url, session)
            await first.wait_connected()
            await take_turn(first, PHRASES[0])
            assert (await session_client(http, stack.url, session))["connected"]

            first.go_silent()
            dropped = loop_time()
            async with asyncio.timeout(10):
                while (await session_client(http, stack.url, session))["connected"]:
                    await asyncio.sleep(0.1)
            noticed = loop_time() - dropped
            print(f"loss noticed after {noticed:.2f} s")
            assert noticed < 4.0  # 2.5 s of silence, checked twice a second, then the bus

            back = loop_time()
            await second.join(http, stack.url, session, client_id=first.client_id)
            assert second.client_id == first.client_id
            await second.wait_connected()
            async with asyncio.timeout(10):
                while not (await session_client(http, stack.url, session))["connected"]:
                    await asyncio.sleep(0.05)
            print(f"back {loop_time() - back:.2f} s after the new offer")
            await take_turn(second, PHRASES[1])
        finally:
            await first.close()
            await second.close()
        detail = await session_client(http, stack.url, session)
        assert detail["client_id"] == first.client_id and detail["name"] == "kitchen"
        async with http.get(f"{stack.url}/v1/sessions/{session['session_id']}/transcript") as r:
            entries = (await r.json())["entries"]
        assert [e["speaker"] for e in entries if e["speaker"] != "assistant"] == ["kitchen"] * 2
        async with http.post(f"{stack.url}/v1/sessions/{session['session_id']}/clients",
                             json={"sdp": "v=0\r\n", "client_id": "f" * 32},
                             headers={"Authorization": f"Bearer {session['token']}"}) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "client_not_found"


def loop_time() -> float:
    return asyncio.get_running_loop().time()


async def test_a_session_created_while_its_mixer_restarts_waits_for_the_new_one(stack: Up):
    """The only mixer is killed a moment before a user starts a conversation: the request
    waits for the restarted mixer (not the dead one, which still looks alive for a few
    seconds) instead of failing, and the conversation works."""
    async with aiohttp.ClientSession() as http:
        before = await pids(http, stack.url)
        os.kill(before["mixer-1"], signal.SIGKILL)
        session = await create_session(http, stack.url, name="started during a restart")
        after = await pids(http, stack.url)
        assert after["mixer-1"] != before["mixer-1"]
        client = VoxrelayClient("hall")
        try:
            await client.join(http, stack.url, session)
            await client.wait_connected()
            await take_turn(client, PHRASES[0])
        finally:
            await client.close()


async def test_a_session_started_as_the_recorder_restarts_is_recorded_all_the_same(stack: Up):
    """kill -9 the recorder and at once start a conversation: it is created (without the
    restarting recorder's answer if that is slow), and the restarted recorder holds the
    session and its turns — from the events, which their producers kept for it."""
    async with aiohttp.ClientSession() as http:
        before = await pids(http, stack.url)
        os.kill(before["recorder-1"], signal.SIGKILL)
        session = await create_session(http, stack.url, name="recorded regardless")
        client = VoxrelayClient("hall")
        try:
            await client.join(http, stack.url, session)
            await client.wait_connected()
            await take_turn(client, PHRASES[0])
        finally:
            await client.close()
        url = f"{stack.url}/v1/sessions/{session['session_id']}/transcript"
        async with asyncio.timeout(30):
            while True:
                async with http.get(url) as resp:
                    entries = (await resp.json()).get("entries", []) if resp.status == 200 else []
                if [e["speaker"] for e in entries] == ["hall", "assistant"]:
                    break
                await asyncio.sleep(0.5)
