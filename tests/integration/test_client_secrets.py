"""Direct mode's first step: signaling gives a browser an ephemeral Realtime key for its
session, minted by the link (which alone holds the standard key), and that key opens a
call to the Realtime API (the simulator) configured as the session is: its instructions,
voice and tools."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from services.client.voxrelay import create_session
from services.openai_link.config import SIMULATOR_KEY
from tests.support.rtc_client import RealtimeRtcClient
from tests.support.up import Up, running_up

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Up]:
    with running_up(tmp_path, edges=1) as up:
        yield up


async def test_a_session_token_gets_an_ephemeral_key_that_opens_a_call_as_configured(stack: Up):
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, stack.url, name="direct", voice="marin",
                                       instructions="Answer in one sentence.")
        bearer = {"Authorization": f"Bearer {session['token']}"}
        async with http.post(f"{stack.url}/v1/realtime/client_secrets", json={"ttl_s": 120},
                             headers=bearer) as r:
            text = await r.text()
            assert r.status == 201, text
            assert r.headers["Cache-Control"] == "no-store"
            secret = await r.json()
        assert secret["value"].startswith("ek_") and SIMULATOR_KEY not in text
        assert secret["expires_at"] > 0 and secret["model"]

        # another session's token does not open this one
        other = await create_session(http, stack.url, name="other")
        async with http.post(f"{stack.url}/v1/realtime/client_secrets",
                             json={"session_id": session["session_id"]},
                             headers={"Authorization": f"Bearer {other['token']}"}) as r:
            assert r.status in (401, 403, 404), await r.text()
        async with http.post(f"{stack.url}/v1/realtime/client_secrets", json={"ttl_s": 5},
                             headers=bearer) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_field"

        # the ephemeral key opens a call whose session is the voxrelay session's
        client = RealtimeRtcClient()
        try:
            async with http.post(f"{stack.sim_url}/v1/realtime/calls",
                                 data=await client.offer(),
                                 headers={"Authorization": f"Bearer {secret['value']}",
                                          "Content-Type": "application/sdp"}) as r:
                assert r.status == 201, await r.text()
                await client.accept(await r.text())
            await asyncio.wait_for(client.opened.wait(), 10)
            created = await client.wait_for("session.created", timeout=10)
        finally:
            await client.close()
    configured = created["session"]
    assert configured["instructions"] == "Answer in one sentence."
    assert configured["audio"]["output"]["voice"] == "marin"
    assert [t["name"] for t in configured["tools"]] == ["get_time"]
