"""signaling on its own: the HTTP API's validation, errors and health, on a real bus."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.ports import free_port
from tests.support.stack import Stack


@contextlib.asynccontextmanager
async def signaling_alone(data_dir, **env: str) -> AsyncIterator[aiohttp.ClientSession]:
    """signaling on a bus of its own (no other service), and a client of its API."""
    port = free_port()
    async with Stack(data_dir=data_dir) as stack:
        await stack.start("signaling", env={"VOXRELAY_HTTP_PORT": str(port), **env})
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            yield http


@pytest.fixture
async def signaling(tmp_path):
    async with signaling_alone(tmp_path) as http:
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
        (b'{"profile": "quiz"}', "invalid_field"),
        (b'{"profile": "interview"}', "invalid_field"),  # no questions here or in a file
        (b'{"profile": "interview", "questions": [{"domain": "x"}]}', "invalid_field"),
        (b'{"questions": [{"text": "Why?"}]}', "invalid_field"),  # not an interview
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


async def test_one_address_creating_sessions_too_fast_gets_429_with_retry_after(tmp_path):
    statuses = []
    async with signaling_alone(tmp_path, VOXRELAY_PLACEMENT_WAIT_S="0") as http:
        for _ in range(12):
            async with http.post("/v1/sessions", json={}) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert (await resp.json())["error"]["code"] == "rate_limited"
                    assert int(resp.headers["Retry-After"]) >= 1
        # The first ten (the burst) get as far as placement (503: no mixer here), then 429.
        assert statuses == [503] * 10 + [429] * 2
        async with http.get("/metrics") as resp:
            assert 'voxrelay_http_rejected_total{limit="session_rate"} 2.0' in await resp.text()


async def test_other_origins_get_no_cors_headers_unless_configured(tmp_path):
    allowed = "https://app.example"
    async with signaling_alone(tmp_path, VOXRELAY_CORS_ORIGINS=allowed) as http:
        preflight = {"Origin": allowed, "Access-Control-Request-Method": "POST"}
        async with http.options("/v1/sessions", headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == allowed
            assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        async with http.get("/healthz", headers={"Origin": "https://evil.example"}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers


async def test_by_default_no_origin_is_allowed_and_the_page_is_locked_down(signaling):
    async with signaling.get("/healthz", headers={"Origin": "https://app.example"}) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers
    async with signaling.options("/v1/sessions", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST"}) as resp:
        assert resp.status >= 400 and "Access-Control-Allow-Origin" not in resp.headers
    async with signaling.get("/") as resp:
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
