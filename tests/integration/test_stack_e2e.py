"""One conversation end to end through ``voxrelay up``: every service its own process.

A real supervisor starts the bus, simulator, recorder, mixer, link, two media edges and
signaling; real aiortc clients join through the HTTP API, speak espeak-ng speech, and
must hear the AI, get events on their DataChannel, and find the transcript stored.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from services.client.voxrelay import VoxrelayClient, create_session
from tests.support.speech import rms_dbfs, silence, speak
from tests.support.up import Up, running_up

PHRASE = "what is the weather like today"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Up]:
    with running_up(tmp_path) as up:
        yield up


async def service_pids(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with http.get(f"{url}/healthz") as resp:
        assert resp.status == 200
        services = (await resp.json())["services"]
    return {i["instance"]: i["pid"] for instances in services.values() for i in instances}


async def test_two_clients_hear_the_ai_and_the_transcript_is_stored(stack):
    async with aiohttp.ClientSession() as http:
        pids = await service_pids(http, stack.url)
        assert len(set(pids.values())) == len(pids) >= 5  # every service its own process
        session = await create_session(http, stack.url, name="e2e")
        laptop, phone = VoxrelayClient("laptop"), VoxrelayClient("phone")
        try:
            for client in (laptop, phone):
                await client.join(http, stack.url, session)
            for client in (laptop, phone):
                await client.wait_connected()
            laptop.mic.play(silence(300) + speak(PHRASE) + silence(1500))
            for client in (laptop, phone):
                await client.wait_event("turn.start", role="user")
                done = await client.wait_event("transcript.done", role="assistant", timeout=30)
                assert done["payload"]["text"]
                await client.wait_event("turn.end", role="assistant", timeout=30)
            for client in (laptop, phone):
                assert client.heard_ms() > 1000
                assert rms_dbfs(bytes(client.heard)) > -45, f"{client.name} heard no AI voice"
            async with http.get(f"{stack.url}/v1/sessions/{session['session_id']}/transcript") as r:
                entries = (await r.json())["entries"]
            speakers = [e["speaker"] for e in entries]
            assert "assistant" in speakers and any(s != "assistant" for s in speakers)
            base = f"{stack.url}/v1/sessions/{session['session_id']}"
            auth = {"Authorization": f"Bearer {session['token']}"}
            async with http.get(base) as r:
                detail = await r.json()
            assert {c["name"] for c in detail["clients"]} == {"laptop", "phone"}
            async with http.delete(f"{base}/clients/{phone.client_id}", headers=auth) as r:
                assert r.status == 204
            async with http.delete(f"{base}/clients/{phone.client_id}",
                                   headers={"Authorization": "Bearer not-a-token"}) as r:
                assert r.status == 401
            async with http.get(base) as r:
                assert [c["name"] for c in (await r.json())["clients"]] == ["laptop"]
            async with http.delete(base, headers=auth) as r:
                assert r.status == 204
            async with http.get(base) as r:
                assert (await r.json())["state"] == "ended"
        finally:
            await laptop.close()
            await phone.close()


async def test_ctrl_c_leaves_no_process_and_loses_no_recorded_event(stack):
    async with aiohttp.ClientSession() as http:
        pids = await service_pids(http, stack.url)
        session = await create_session(http, stack.url, name="durable")
        client = VoxrelayClient("kiosk")
        try:
            await client.join(http, stack.url, session)
            await client.wait_connected()
            client.mic.play(silence(300) + speak(PHRASE) + silence(1500))
            await client.wait_event("transcript.done", role="assistant", timeout=30)
        finally:
            await client.close()
        async with http.get(f"{stack.url}/v1/sessions/{session['session_id']}/events") as r:
            served = [line for line in (await r.text()).splitlines() if line]
    os.killpg(stack.proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
    assert stack.proc.wait(60) == 0
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    log = stack.log_text()
    stops = [line for line in log.splitlines() if "supervisor: stopped " in line]
    assert len(stops) == len(pids) + 3  # + signaling, the bus and the simulator
    assert all(line.endswith("(exit 0)") for line in stops), stops  # in stages, cleanly
    with sqlite3.connect(stack.data_dir / "recorder.sqlite3") as db:
        stored = db.execute("SELECT COUNT(*) FROM events WHERE session_id = ?",
                            (session["session_id"],)).fetchone()[0]
    assert stored >= len(served) > 10


async def test_a_crashed_service_is_restarted(stack):
    async with aiohttp.ClientSession() as http:
        before = await service_pids(http, stack.url)
        os.kill(before["mixer-1"], signal.SIGKILL)
        async with asyncio.timeout(20):
            while True:
                try:
                    after = await service_pids(http, stack.url)
                except AssertionError:  # 503 while the mixer is gone
                    after = {}
                if after.get("mixer-1") not in (None, before["mixer-1"]):
                    break
                await asyncio.sleep(0.2)
        session = await create_session(http, stack.url, name="after the crash")
    assert session["session_id"]
    assert "mixer-1 exited with -9; restarting" in stack.log_text()
