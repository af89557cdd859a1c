"""Who gets in: the admin key, tenant and session tokens, revocation, and the limits.

One stack (``voxrelay up`` with ``VOXRELAY_ADMIN_KEY``) serves every test here; each
test makes its own sessions, in its own tenants.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from services.client.voxrelay import VoxrelayClient
from services.signaling.tokens import TokenSigner
from tests.support.up import Up, running_up

ADMIN = "admin-" + secrets.token_hex(20)
MAX_PER_TENANT = 3


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("auth"), edges=1, env_extra={
            "VOXRELAY_ADMIN_KEY": ADMIN,
            "VOXRELAY_MAX_SESSIONS_PER_TENANT": str(MAX_PER_TENANT),
            "VOXRELAY_SESSION_RATE_PER_MIN": "6000"}) as running:
        yield running


@pytest.fixture
async def http(up: Up) -> Any:
    async with aiohttp.ClientSession(up.url) as session:
        yield session


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def call(http: aiohttp.ClientSession, method: str, path: str, credential: str | None,
               **kwargs: Any) -> tuple[int, Any]:
    headers = {**kwargs.pop("headers", {}), **(bearer(credential) if credential else {})}
    async with http.request(method, path, headers=headers, **kwargs) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def new_session(http: aiohttp.ClientSession, credential: str, tenant: str | None = None,
                      ) -> dict[str, Any]:
    status, body = await call(http, "POST", "/v1/sessions", credential,
                              json={"name": "t"} | ({"tenant": tenant} if tenant else {}))
    assert status == 201, body
    return body


async def tenant_token(http: aiohttp.ClientSession, tenant: str) -> str:
    status, body = await call(http, "POST", "/v1/tokens", ADMIN, json={"tenant": tenant})
    assert status == 201, body
    return body["token"]


def code(body: Any) -> str:
    return body["error"]["code"]


async def test_without_a_credential_nothing_but_the_page_and_health_is_open(http):
    for method, path in [("POST", "/v1/sessions"), ("GET", "/v1/sessions"),
                         ("GET", "/v1/history"), ("POST", "/v1/tokens")]:
        status, body = await call(http, method, path, None, json={})
        assert (status, code(body)) == (401, "unauthorized"), path
    assert (await call(http, "GET", "/", None))[0] == 200
    assert (await call(http, "GET", "/healthz", None))[0] == 200
    status, body = await call(http, "POST", "/v1/sessions", "wrong-" + ADMIN, json={})
    assert (status, code(body)) == (401, "invalid_token")


async def test_a_tenant_sees_and_touches_only_its_own_sessions(http):
    acme, globex = await tenant_token(http, "acme"), await tenant_token(http, "globex")
    ours = await new_session(http, acme)
    theirs = await new_session(http, ADMIN, tenant="globex")
    assert ours["tenant"] == "acme" and theirs["tenant"] == "globex"
    sid = theirs["session_id"]

    # Everything of globex's session is "not found" to acme's token, the same as nothing.
    for method, path, body in [
            ("GET", f"/v1/sessions/{sid}", None),
            ("GET", f"/v1/sessions/{sid}/transcript", None),
            ("GET", f"/v1/sessions/{sid}/events", None),
            ("GET", f"/v1/sessions/{sid}/recordings", None),
            ("POST", f"/v1/sessions/{sid}/clients", {"sdp": "v=0\r\n", "type": "offer"}),
            ("POST", f"/v1/sessions/{sid}/tokens", {}),
            ("DELETE", f"/v1/sessions/{sid}", None),
            ("GET", f"/v1/sessions/{sid}/ws", None)]:
        status, answer = await call(http, method, path, acme, json=body)
        assert (status, code(answer)) == (404, "session_not_found"), (method, path)
    # ...and acme's session token opens only acme's one session.
    status, answer = await call(http, "GET", f"/v1/sessions/{sid}", ours["token"])
    assert (status, code(answer)) == (401, "unauthorized")

    status, listed = await call(http, "GET", "/v1/sessions", acme)
    assert status == 200 and {s["tenant_id"] for s in listed["sessions"]} == {"acme"}
    assert ours["session_id"] in {s["session_id"] for s in listed["sessions"]}
    status, history = await call(http, "GET", "/v1/history", acme)
    assert status == 200 and sid not in {s["session_id"] for s in history["sessions"]}
    assert {s["tenant_id"] for s in history["sessions"]} == {"acme"}
    status, history = await call(http, "GET", "/v1/history", ADMIN)
    assert {ours["session_id"], sid} <= {s["session_id"] for s in history["sessions"]}

    status, answer = await call(http, "POST", "/v1/sessions", acme, json={"tenant": "globex"})
    assert (status, code(answer)) == (403, "forbidden")
    status, answer = await call(http, "POST", "/v1/tokens", acme, json={"tenant": "acme"})
    assert (status, code(answer)) == (403, "forbidden")
    for path in ("/v1/sessions", "/v1/history"):
        status, answer = await call(http, "GET", path, ours["token"])
        assert (status, code(answer)) == (403, "forbidden"), path

    # globex's own token does all of it.
    globex_sid = f"/v1/sessions/{sid}"
    assert (await call(http, "GET", f"{globex_sid}/transcript", globex))[0] == 200
    assert (await call(http, "DELETE", globex_sid, globex))[0] == 204
    await call(http, "DELETE", f"/v1/sessions/{ours['session_id']}", acme)


async def test_a_session_token_joins_and_ending_the_session_revokes_it(http, up):
    session = await new_session(http, ADMIN, tenant="household")
    sid, token = session["session_id"], session["token"]
    client = VoxrelayClient("kitchen")
    try:
        await client.join(http, up.url, session)  # with the session's token, as a guest would
        await client.wait_connected(timeout=15)
    finally:
        await client.close()
    status, fresh = await call(http, "POST", f"/v1/sessions/{sid}/tokens", token, json={})
    assert status == 201 and fresh["token"] != token
    assert (await call(http, "GET", f"/v1/sessions/{sid}/transcript", token))[0] == 200

    assert (await call(http, "DELETE", f"/v1/sessions/{sid}", token))[0] == 204
    for credential in (token, fresh["token"]):
        for method, path in [("GET", f"/v1/sessions/{sid}"),
                             ("GET", f"/v1/sessions/{sid}/transcript"),
                             ("POST", f"/v1/sessions/{sid}/clients")]:
            status, answer = await call(http, method, path, credential,
                                        json={"sdp": "v=0\r\n", "type": "offer"})
            assert (status, code(answer)) == (409, "session_ended"), (method, path)
    # The recorded session stays readable for its tenant and the admin.
    status, transcript = await call(http, "GET", f"/v1/sessions/{sid}/transcript", ADMIN)
    assert status == 200 and transcript["session_id"] == sid
    household = await tenant_token(http, "household")
    assert (await call(http, "GET", f"/v1/sessions/{sid}/events", household))[0] == 200
    globex = await tenant_token(http, "globex")
    status, answer = await call(http, "GET", f"/v1/sessions/{sid}/events", globex)
    assert (status, code(answer)) == (404, "session_not_found")


async def test_expired_and_forged_tokens_are_refused(http, up):
    session = await new_session(http, ADMIN, tenant="acme")
    sid = session["session_id"]
    secret = (up.data_dir / "token-secret").read_text().strip().encode()
    expired, _ = TokenSigner(secret).mint("session", "acme", sid, 60, now=time.time() - 3600)
    status, answer = await call(http, "GET", f"/v1/sessions/{sid}", expired)
    assert (status, code(answer)) == (401, "token_expired")
    forged, _ = TokenSigner(b"f" * 32).mint("tenant", "acme", "acme", 600)
    status, answer = await call(http, "GET", f"/v1/sessions/{sid}", forged)
    assert (status, code(answer)) == (401, "invalid_token")
    status, answer = await call(http, "GET", f"/v1/sessions/{sid}/ws?t={forged}", None)
    assert (status, code(answer)) == (401, "invalid_token")
    await call(http, "DELETE", f"/v1/sessions/{sid}", ADMIN)


async def test_limits_answer_with_a_clear_error_and_are_counted(http, up):
    sessions = [await new_session(http, ADMIN, tenant="busy") for _ in range(MAX_PER_TENANT)]
    status, answer = await call(http, "POST", "/v1/sessions", ADMIN, json={"tenant": "busy"})
    assert (status, code(answer)) == (429, "too_many_sessions")
    await call(http, "DELETE", f"/v1/sessions/{sessions[0]['session_id']}", ADMIN)
    sessions[0] = await new_session(http, ADMIN, tenant="busy")  # room again

    join = f"/v1/sessions/{sessions[1]['session_id']}/clients"
    many_lines = "v=0\r\n" + "a=x\r\n" * 2000
    candidates = "v=0\r\n" + "".join(
        f"a=candidate:{i} 1 udp 1 10.0.{i // 250}.{i % 250} 9 typ host\r\n" for i in range(200))
    for sdp, expected in [(many_lines, (413, "sdp_too_large")),
                          (candidates, (400, "too_many_candidates")),
                          ("v=0\r\n" + "x" * 70_000, (413, "sdp_too_large")),
                          ("not sdp", (400, "invalid_sdp"))]:
        status, answer = await call(http, "POST", join, ADMIN, json={"sdp": sdp})
        assert (status, code(answer)) == expected
    status, answer = await call(http, "POST", "/v1/sessions", ADMIN,
                                data=b"{" + b" " * 300_000 + b"}",
                                headers={"Content-Type": "application/json"})
    assert (status, code(answer)) == (413, "body_too_large")
    for session in sessions:
        await call(http, "DELETE", f"/v1/sessions/{session['session_id']}", ADMIN)

    status, metrics = await call(http, "GET", "/metrics", None)
    counted = {line.split("{")[1].split("}")[0]: float(line.split()[-1])
               for line in metrics.splitlines()
               if line.startswith("voxrelay_http_rejected_total{")}
    for limit in ("tenant_sessions", "sdp_lines", "sdp_bytes", "candidates", "body"):
        assert counted[f'limit="{limit}"'] >= 1, limit


async def test_malformed_offers_get_400_and_mdns_candidates_do_not_stall_a_join(http, up):
    session = await new_session(http, ADMIN, tenant="offers")
    join = f"/v1/sessions/{session['session_id']}/clients"
    before = await edge_pid(http)
    for sdp in ("v=0\r\nthis is not sdp\r\n", "v=0\r\nm=audio x y\r\n", "v=0\r\n" + "\0" * 500,
                "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:bogus\r\n"):
        status, answer = await call(http, "POST", join, ADMIN, json={"sdp": sdp})
        assert status == 400 and "sdp" in answer["error"]["message"].lower(), (sdp[:40], answer)

    client = VoxrelayClient("phone")
    try:
        await client.pc.setLocalDescription(await client.pc.createOffer())
        offer = client.pc.localDescription.sdp
        mdns = "".join(f"a=candidate:{900 + i} 1 udp 2122260223 {i:08x}-1b2c-4d5e-8f90-"
                       f"0123456789ab.local 5{i:04d} typ host\r\n" for i in range(40))
        offer = offer.replace("a=end-of-candidates", mdns + "a=end-of-candidates", 1) \
            if "a=end-of-candidates" in offer else offer + mdns
        status, answer = await call(http, "POST", join, session["token"],
                                    json={"sdp": offer, "type": "offer", "name": "phone"})
        assert status == 201, answer
    finally:
        await client.close()
    assert await edge_pid(http) == before
    await call(http, "DELETE", f"/v1/sessions/{session['session_id']}", ADMIN)


async def edge_pid(http: aiohttp.ClientSession) -> int:
    status, health = await call(http, "GET", "/healthz", None)
    assert status == 200, health
    return health["services"]["media_edge"][0]["pid"]
