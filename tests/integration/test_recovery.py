"""A conversation survives its mixer and its link being killed (kill -9) mid-session.

The whole stack runs under ``voxrelay up``; the supervisor restarts the killed process
and signaling resumes the session on it (``services/signaling/recovery.py``). The client
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

from tests.support.speech import silence, speak
from tests.support.up import Up, running_up
from tests.support.voxrelay_client import VoxrelayClient, create_session

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


async def test_the_conversation_resumes_after_its_mixer_and_link_are_killed(stack: Up):
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, stack.url, name="survivor")
        client = VoxrelayClient("kitchen")
        try:
            await client.join(http, stack.url, session)
            await client.wait_connected()
            await take_turn(client, PHRASES[0])
            heard = client.heard_ms()

            await kill_and_wait_for_restart(http, stack.url, "mixer-1")
            await take_turn(client, PHRASES[1])

            await kill_and_wait_for_restart(http, stack.url, "openai_link-1")
            await take_turn(client, PHRASES[2])
            assert client.heard_ms() > heard + 1000, "the replies after the crashes went unheard"
            assert client.pc.connectionState == "connected"  # the same peer, all along
        finally:
            await client.close()
        base = f"{stack.url}/v1/sessions/{session['session_id']}"
        async with http.get(base) as resp:
            detail = await resp.json()
        assert detail["state"] == "active"
        assert (detail["mixer"], detail["link"]) == ("mixer-1", "openai_link-1")
        async with http.get(f"{base}/transcript") as resp:
            entries = (await resp.json())["entries"]
    speakers = [e["speaker"] for e in entries]
    assert speakers.count("assistant") == len(PHRASES), speakers
    assert speakers.count("kitchen") == len(PHRASES), speakers
