"""signaling on its own: the HTTP API's validation, errors and health, on a real bus."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.ports import free_port
from tests.support.stack import Stack


@pytest.fixture
async def signaling(tmp_path):
    port = free_port()
    async with Stack(data_dir=tmp_path) as stack:
        await stack.start("signaling", env={"VOXRELAY_HTTP_PORT": str(port)})
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            yield http


async def test_health_reports_missing_services(signaling):
    async with signaling.get("/healthz") as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["status"] == "degraded"
    assert body["services"]["mixer"] == [] and body["services"]["media_edge"] == []


async def test_session_creation_without_services_is_503_with_a_reason(signaling):
    async with signaling.post("/v1/sessions", json={"name": "kitchen"}) as resp:
        assert resp.status == 503
        error = (await resp.json())["error"]
    assert error["code"] == "unavailable" and "mixer" in error["message"]


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'{"voice": "bogus"}', "invalid_field"),
        (b'{"name": 42}', "invalid_field"),
        (b'{"record": "yes"}', "invalid_field"),
    ],
)
async def test_bad_session_bodies_get_400(signaling, body, code):
    async with signaling.post("/v1/sessions", data=body,
                              headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == code


async def test_unknown_sessions_are_404(signaling):
    for method, path in [("GET", "/v1/sessions/" + "0" * 32), ("GET", "/v1/sessions/nope"),
                         ("POST", "/v1/sessions/" + "0" * 32 + "/clients")]:
        async with signaling.request(method, path, json={}) as resp:
            assert resp.status == 404, path
            assert (await resp.json())["error"]["code"] == "session_not_found"


async def test_metrics_are_served(signaling):
    async with signaling.get("/healthz"):
        pass
    async with signaling.get("/metrics") as resp:
        assert resp.status == 200
        assert "voxrelay_http_requests_total" in await resp.text()
