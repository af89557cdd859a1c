"""``GET /v1/history``: the recorded sessions, newest first, through the whole stack.

``voxrelay up`` runs every service, its recorder storing in SQLite or, handed
``VOXRELAY_DATABASE_URL`` by the supervisor, in PostgreSQL (``store_factory``). Two short
conversations with real aiortc clients and the built-in simulator; the first is ended,
the second still going. The listing must show them newest first, with their turns and
speakers as the transcript has them, and page with ``before``; ``voxrelay sessions``
prints it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.client.voxrelay import VoxrelayClient, create_session
from tests.support.ports import free_port
from tests.support.speech import silence, speak
from tests.support.stack import Stack
from tests.support.stores import StoreFactory
from tests.support.up import Up, running_up

pytestmark = pytest.mark.timeout(240)

PHRASE = "what is the weather like today"
WAIT_S = 30.0


@pytest.fixture
def stack(tmp_path: Path, store_factory: StoreFactory) -> Iterator[Up]:
    with running_up(tmp_path, edges=1, env_extra=store_factory.env) as up:
        yield up


async def converse(http: aiohttp.ClientSession, url: str, name: str,
                   client_name: str) -> dict[str, Any]:
    """A session in which ``client_name`` says one thing and the AI answers it."""
    session = await create_session(http, url, name=name, voice="cedar")
    client = VoxrelayClient(client_name)
    try:
        await client.join(http, url, session)
        await client.wait_connected()
        client.mic.play(silence(300) + speak(PHRASE) + silence(1500))
        await client.wait_event("turn.end", role="assistant", timeout=WAIT_S)
    finally:
        await client.close()
    return session


async def history(http: aiohttp.ClientSession, url: str, **query: Any) -> list[dict[str, Any]]:
    async with http.get(f"{url}/v1/history", params=query) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["sessions"]


async def transcript_turns(http: aiohttp.ClientSession, url: str, sid: str) -> tuple[int, int]:
    async with http.get(f"{url}/v1/sessions/{sid}/transcript") as resp:
        entries = (await resp.json())["entries"]
    assistant = sum(1 for e in entries if e["speaker"] == "assistant")
    return len(entries) - assistant, assistant


async def test_history_lists_sessions_newest_first_with_their_turns_and_pages_back(
        stack: Up) -> None:
    async with aiohttp.ClientSession() as http:
        first = await converse(http, stack.url, "morning", "laptop")
        async with http.delete(f"{stack.url}/v1/sessions/{first['session_id']}",
                               headers={"Authorization": f"Bearer {first['token']}"}) as resp:
            assert resp.status == 204
        second = await converse(http, stack.url, "evening", "phone")
        async with asyncio.timeout(WAIT_S):  # until both user turns' transcripts are in
            while not all(s["user_turns"] and s["assistant_turns"]
                          for s in await history(http, stack.url)):
                await asyncio.sleep(0.2)
        listed = await history(http, stack.url)

        assert [s["session_id"] for s in listed] == [second["session_id"], first["session_id"]]
        newest, oldest = listed
        assert (newest["name"], newest["voice"], newest["record"]) == ("evening", "cedar", False)
        assert (newest["state"], newest["ended_at"], newest["end_reason"]) == ("active", None,
                                                                               None)
        assert (oldest["name"], oldest["state"], oldest["end_reason"]) == (
            "morning", "ended", "ended by request")
        assert oldest["created_at"] < oldest["ended_at"] <= newest["created_at"]
        for summary, speaker in ((newest, "phone"), (oldest, "laptop")):
            turns = await transcript_turns(http, stack.url, summary["session_id"])
            assert (summary["user_turns"], summary["assistant_turns"]) == turns
            assert summary["speakers"] == [speaker]
            assert summary["events"] > 10

        assert [s["session_id"] for s in await history(http, stack.url, limit=1)] \
            == [second["session_id"]]
        page = await history(http, stack.url, limit=1, before=repr(newest["created_at"]))
        assert [s["session_id"] for s in page] == [first["session_id"]]
        assert await history(http, stack.url, before=repr(oldest["created_at"])) == []

    listing = await asyncio.to_thread(  # `voxrelay sessions` reads the same listing
        subprocess.run, [sys.executable, "-m", "services.cli", "sessions", "--url", stack.url],
        capture_output=True, text=True, timeout=60, check=False)
    assert listing.returncode == 0, listing.stderr
    rows = listing.stdout.splitlines()[1:]
    assert [row.split()[2] for row in rows] == [second["session_id"], first["session_id"]]
    assert rows[0].endswith("phone  evening") and rows[1].endswith("laptop  morning")


async def test_history_rejects_bad_limits_and_cursors(tmp_path: Path) -> None:
    """Signaling and a recorder alone: a bad query is refused before it reaches the recorder."""
    port = free_port()
    async with Stack(data_dir=tmp_path) as services, aiohttp.ClientSession() as http:
        await services.start("recorder")
        await services.start("signaling", env={"VOXRELAY_HTTP_PORT": str(port)})
        url = f"http://127.0.0.1:{port}"
        for query in ({"limit": "0"}, {"limit": "501"}, {"limit": "ten"}, {"before": "nan"},
                      {"before": "yesterday"}, {"before": "inf"}):
            async with http.get(f"{url}/v1/history", params=query) as resp:
                assert resp.status == 400, query
                error = (await resp.json())["error"]
            assert error["code"] == "invalid_query" and error["message"], query
        async with asyncio.timeout(WAIT_S):  # signaling has heard the recorder's heartbeat
            while True:
                async with http.get(f"{url}/v1/history", params={"limit": "500"}) as resp:
                    status, body = resp.status, await resp.json()
                if status != 503:
                    break
                await asyncio.sleep(0.1)
        assert (status, body) == (200, {"sessions": []})
