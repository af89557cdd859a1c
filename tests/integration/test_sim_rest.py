"""openai_sim's REST surface, driven by the official openai package and plain HTTP."""

from __future__ import annotations

import time

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from tests.support.ws_client import EventReader


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def test_client_secret_mints_an_ephemeral_key_with_the_session(sim):
    client = AsyncOpenAI(api_key="sk-test", base_url=sim.api_base)
    secret = await client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 120},
        session={"type": "realtime", "model": "gpt-realtime", "instructions": "Speak like a pirate.",
                 "audio": {"output": {"voice": "marin"}}},
    )
    assert secret.value.startswith("ek_") and len(secret.value) == 35
    assert abs(secret.expires_at - (time.time() + 120)) < 5
    assert secret.session.type == "realtime"
    assert secret.session.instructions == "Speak like a pirate."
    assert secret.session.audio.output.voice == "marin"
    assert secret.session.id.startswith("sess_") and secret.session.expires_at == 0


async def test_ephemeral_key_opens_a_session_with_its_bound_config(sim):
    admin = AsyncOpenAI(api_key="sk-test", base_url=sim.api_base)
    secret = await admin.realtime.client_secrets.create(
        session={"type": "realtime", "instructions": "Bound to the key."})
    client = AsyncOpenAI(api_key=secret.value, base_url=sim.api_base)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        created = await EventReader(conn).until("session.created")
    assert created["session"]["instructions"] == "Bound to the key."


async def test_default_secret_lasts_ten_minutes(sim):
    client = AsyncOpenAI(api_key="sk-test", base_url=sim.api_base)
    secret = await client.realtime.client_secrets.create()
    assert abs(secret.expires_at - (time.time() + 600)) < 5
    assert secret.session.audio.input.turn_detection.silence_duration_ms == 200


@pytest.mark.parametrize(
    "body, code, param",
    [
        ({"expires_after": {"anchor": "created_at", "seconds": 5}}, "integer_out_of_range",
         "expires_after.seconds"),
        ({"model": "gpt-4o-realtime-preview", "voice": "alloy"}, "unknown_parameter", "model"),
        ({"session": {"instructions": "no type"}}, "missing_required_parameter", "session.type"),
        ({"session": {"type": "realtime", "voice": "alloy"}}, "unknown_parameter", "session.voice"),
    ],
)
async def test_bad_secret_requests_get_the_real_error_body(sim, http, body, code, param):
    async with http.post(f"{sim.api_base}/realtime/client_secrets", json=body,
                         headers={"Authorization": "Bearer sk-test"}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    assert error["message"]


async def test_unparsable_body_is_a_400_not_a_crash(sim, http):
    async with http.post(f"{sim.api_base}/realtime/client_secrets", data=b"{not json",
                         headers={"Authorization": "Bearer sk-test",
                                  "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert "could not parse" in (await resp.json())["error"]["message"]
    async with http.get(f"{sim.url}/healthz") as resp:
        assert resp.status == 200


async def test_wrong_key_gets_401_with_the_key_masked(start_sim):
    pinned = start_sim("--api-key", "sk-the-right-key")
    client = AsyncOpenAI(api_key="sk-the-wrong-key-1234", base_url=pinned.api_base, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        await client.realtime.client_secrets.create()
    error = info.value.body
    assert error["code"] == "invalid_api_key"
    assert "sk-the-wrong-key-1234" not in error["message"] and "1234" in error["message"]
    good = AsyncOpenAI(api_key="sk-the-right-key", base_url=pinned.api_base)
    assert (await good.realtime.client_secrets.create()).value.startswith("ek_")


async def test_missing_or_unknown_keys_are_401(sim, http):
    url = f"{sim.api_base}/realtime/client_secrets"
    async with http.post(url, json={}) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["message"].startswith("You didn't provide an API key")
    for key in ("ek_00000000000000000000000000000000", "not-a-key"):
        async with http.post(url, json={}, headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "invalid_api_key"


async def test_ephemeral_key_cannot_mint_more_keys(sim):
    admin = AsyncOpenAI(api_key="sk-test", base_url=sim.api_base)
    secret = await admin.realtime.client_secrets.create()
    client = AsyncOpenAI(api_key=secret.value, base_url=sim.api_base, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await client.realtime.client_secrets.create()


@pytest.mark.parametrize(
    "path, content_type, body",
    [
        ("/v1/realtime/sessions", "application/json", b'{"model": "gpt-4o-realtime-preview"}'),
        ("/v1/realtime?model=gpt-4o-realtime-preview", "application/sdp", b"v=0\r\n"),
    ],
)
async def test_beta_endpoints_answer_beta_api_shape_disabled(sim, http, path, content_type, body):
    async with http.post(f"{sim.url}{path}", data=body, headers={
            "Authorization": "Bearer sk-test", "Content-Type": content_type}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "beta_api_shape_disabled"
