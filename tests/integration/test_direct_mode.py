"""Direct mode: the browser talks to the Realtime API (the simulator) itself.

Signaling gives it an ephemeral key for its session, minted by the link (which alone
holds the standard key); that key opens a call configured as the session is. Posted to
signaling's ``/v1/realtime/calls``, the offer is placed through the link, which follows
the call's sideband: the conversation is translated and recorded, and the tools run in
the link, as in relay mode. A real aiortc client plays the browser.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from services.client.voxrelay import create_session
from services.openai_link.config import SIMULATOR_KEY
from tests.support.rtc_client import RealtimeRtcClient
from tests.support.speech import silence, speak
from tests.support.up import Up, running_up

from .test_tools import SCRIPT

pytestmark = pytest.mark.timeout(180)



@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    folder = tmp_path_factory.mktemp("direct")
    script = folder / "script.toml"
    script.write_text(SCRIPT)
    with running_up(folder, edges=1, env_extra={"VOXRELAY_SIM_REPLY_MODE": "script",
                                                "VOXRELAY_SIM_SCRIPT": str(script)}) as up:
        yield up


async def mint(http: aiohttp.ClientSession, up: Up, token: str, **body: Any) -> dict[str, Any]:
    async with http.post(f"{up.url}/v1/realtime/client_secrets", json=body,
                         headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def place_call(http: aiohttp.ClientSession, up: Up, key: str, sdp: str
                     ) -> tuple[int, str, Any]:
    """Post an offer to signaling as a browser in direct mode does: (status, body, headers)."""
    async with http.post(f"{up.url}/v1/realtime/calls", data=sdp, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/sdp"}) as r:
        return r.status, await r.text(), r.headers


async def recorded(http: aiohttp.ClientSession, up: Up, sid: str) -> list[dict[str, Any]]:
    async with http.get(f"{up.url}/v1/sessions/{sid}/events") as r:
        assert r.status == 200
        return [json.loads(line) for line in (await r.text()).splitlines() if line]


async def sim_calls(http: aiohttp.ClientSession, up: Up) -> list[dict[str, Any]]:
    async with http.get(f"{up.sim_url}/_sim/calls") as r:
        return [c for c in (await r.json())["calls"] if c["transport"] == "webrtc"]


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


async def test_a_direct_call_is_placed_through_voxrelay_and_followed_by_its_sideband(stack: Up):
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, stack.url, name="direct call")
        sid, token = session["session_id"], session["token"]
        secret = await mint(http, stack, token, name="Kiosk")
        client = RealtimeRtcClient()
        try:
            offer = await client.offer()
            status, answer, headers = await place_call(http, stack, secret["value"], offer)
            assert status == 201, answer
            call_id = headers["Location"].rsplit("/", 1)[-1]
            client_id = headers["Voxrelay-Client-Id"]
            await client.accept(answer)
            await asyncio.wait_for(client.opened.wait(), 10)

            # a key opens one call; a made-up one none
            for key in (secret["value"], "ek_made_up"):
                status, body, _ = await place_call(http, stack, key, offer)
                assert status == 401, body
                assert json.loads(body)["error"]["code"] == "invalid_client_secret"

            # the browser holds the call: the simulator has exactly this one
            assert [c["call_id"] for c in await sim_calls(http, stack)] == [call_id]
            async with http.get(f"{stack.url}/v1/sessions/{sid}") as r:
                clients = (await r.json())["clients"]
            assert [(c["client_id"], c["name"], c["transport"]) for c in clients] == [
                (client_id, "Kiosk", "direct")]

            # a relay client cannot join a direct call's session
            relay = RealtimeRtcClient()
            try:
                async with http.post(f"{stack.url}/v1/sessions/{sid}/clients",
                                     json={"sdp": await relay.offer(), "name": "late"},
                                     headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 409, await r.text()
            finally:
                await relay.close()

            client.mic.play(silence(300) + speak("what time is it in Paris") + silence(1500))
            done = await client.wait_for("response.done", timeout=40)
            while not done["response"]["output"] or \
                    done["response"]["output"][0]["type"] == "function_call":
                done = await client.wait_for("response.done", timeout=40)
            reply = done["response"]["output"][0]["content"][0]["transcript"]
            async with asyncio.timeout(10):  # the model's voice reached the browser
                while client.heard_ms() < 500:
                    await asyncio.sleep(0.1)

            async with http.delete(f"{stack.url}/v1/sessions/{sid}/clients/{client_id}",
                                   headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 204
            async with asyncio.timeout(10):  # leaving hung the browser's call up
                while await sim_calls(http, stack):
                    await asyncio.sleep(0.1)
        finally:
            await client.close()
        async with asyncio.timeout(10):  # the recorder has written the turn
            while not any(e["type"] == "client.left" for e in await recorded(http, stack, sid)):
                await asyncio.sleep(0.2)
        record = await recorded(http, stack, sid)
        async with http.get(f"{stack.url}/v1/sessions/{sid}/transcript") as r:
            transcript = (await r.json())["entries"]

    # the tool ran in the link, its output went to the model over the sideband
    result = next(e for e in record if e["type"] == "tool.result")
    assert result["status"] == "ok" and json.loads(result["output"])["timezone"] == "Europe/Paris"
    assert json.loads(result["output"])["iso"] in reply
    # the conversation was recorded through the sideband, the browser named in it
    assert [(e["speaker"], e["text"].lower()) for e in transcript] == [
        ("Kiosk", "what time is it in paris"), ("assistant", reply.lower())]
    kinds = [e["type"] for e in record]
    assert kinds.index("client.joined") < kinds.index("tool.call") < kinds.index("client.left")
    joined = next(e for e in record if e["type"] == "client.joined")
    assert (joined["client_id"], joined["transport"]) == (client_id, "direct")
    assert SIMULATOR_KEY not in json.dumps(record) and secret["value"] not in json.dumps(record)


async def test_a_direct_call_that_ends_on_its_own_leaves_the_conversation(stack: Up):
    """The browser's call ends without a goodbye (the API dropped it): the link's sideband
    closes, attaching again finds no call, and the client is recorded as gone."""
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, stack.url, name="dropped direct call")
        sid, token = session["session_id"], session["token"]
        secret = await mint(http, stack, token, name="Tablet")
        client = RealtimeRtcClient()
        try:
            status, answer, headers = await place_call(http, stack, secret["value"],
                                                       await client.offer())
            assert status == 201, answer
            call_id = headers["Location"].rsplit("/", 1)[-1]
            await client.accept(answer)
            await asyncio.wait_for(client.opened.wait(), 10)
            async with http.post(f"{stack.sim_url}/_sim/drop", json={"call_id": call_id}) as r:
                assert r.status == 200
            async with asyncio.timeout(15):
                while True:
                    async with http.get(f"{stack.url}/v1/sessions/{sid}") as r:
                        [tablet] = (await r.json())["clients"]
                    if not tablet["connected"]:
                        break
                    await asyncio.sleep(0.2)
        finally:
            await client.close()
        async with asyncio.timeout(10):
            while not any(e["type"] == "client.left" for e in await recorded(http, stack, sid)):
                await asyncio.sleep(0.2)
        left = next(e for e in await recorded(http, stack, sid) if e["type"] == "client.left")
        assert left["reason"] == "call_ended"
        # the session is free for a new direct call
        again = await mint(http, stack, token, name="Tablet")
        client = RealtimeRtcClient()
        try:
            status, answer, _ = await place_call(http, stack, again["value"],
                                                 await client.offer())
            assert status == 201, answer
        finally:
            await client.close()
