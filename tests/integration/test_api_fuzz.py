"""Property-based fuzz of the HTTP API on a running stack.

Hypothesis sends requests built from the API's own routes with arbitrary methods, session
and client ids, query values, credentials (none, the admin key, a session or tenant
token, junk) and bodies (JSON of any shape, or raw bytes). Every answer must be an
answer: a status below 500 and, for an error, the ``{"error": {"code", "message"}}``
body; and afterwards every service is still the same process, and a session still works.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.up import Up, running_up

ADMIN = "admin-" + secrets.token_hex(20)
TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("fuzz"), edges=1, env_extra={
            "VOXRELAY_ADMIN_KEY": ADMIN, "VOXRELAY_SESSION_RATE_PER_MIN": "6000"}) as running:
        yield running


def request(url: str, method: str, path: str, credential: str | None = None,
            body: bytes | None = None) -> tuple[int, bytes, str]:
    headers = {"Content-Type": "application/json"}
    if credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    req = urllib.request.Request(url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read(), resp.headers.get_content_type()
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get_content_type()


def pids(url: str) -> dict[str, list[int]]:
    status, body, _ = request(url, "GET", "/healthz")
    assert status == 200, body
    return {service: sorted(i["pid"] for i in instances)
            for service, instances in json.loads(body)["services"].items()}


def quote(text: str) -> str:
    return urllib.parse.quote(text, safe="{}")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12)
fields = st.sampled_from(["name", "instructions", "voice", "record", "tenant", "ttl_s", "sdp",
                          "type", "role", "transport", "client_id"])
bodies = st.one_of(
    st.none(),
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(fields, json_values, max_size=5).map(lambda v: json.dumps(v).encode()),
)
ids = st.one_of(st.just("{sid}"), st.just("0" * 32), st.text(max_size=40),
                st.from_regex(r"[0-9a-f]{32}", fullmatch=True))
paths = st.one_of(
    st.just("/v1/sessions"), st.just("/v1/tokens"),
    st.builds("/v1/history?limit={}&before={}".format, st.text(max_size=8).map(quote),
              st.text(max_size=8).map(quote)),
    st.tuples(ids, st.sampled_from(["", "/clients", "/transcript", "/tokens", "/recordings",
                                    "/events?after=1&limit=2", "/events?after=x",
                                    "/recordings/mix.wav", "/recordings/..%2Fx.wav", "/ws"]))
    .map(lambda t: f"/v1/sessions/{quote(t[0])}{t[1]}"),
    st.tuples(ids, ids).map(lambda t: f"/v1/sessions/{quote(t[0])}/clients/{quote(t[1])}"),
)
credentials = st.sampled_from([None, "admin", "session", "tenant", "junk", "a.b.c", ""])


def test_no_request_gets_a_server_error_and_nothing_goes_down(up):
    url = up.url
    before = pids(url)
    _, created, _ = request(url, "POST", "/v1/sessions", ADMIN,
                            json.dumps({"tenant": "acme"}).encode())
    session = json.loads(created)
    _, minted, _ = request(url, "POST", "/v1/tokens", ADMIN, b'{"tenant": "acme"}')
    held = {"admin": ADMIN, "session": session["token"], "tenant": json.loads(minted)["token"],
            "junk": "x" * 300}
    seen: set[int] = set()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    # always tried, whatever the draw: a malformed body, no credential, an unknown path
    @example("POST", "/v1/sessions", "admin", b"{not json")
    @example("POST", "/v1/sessions", None, b"{}")
    @example("GET", "/v1/no-such-thing", "admin", None)
    @given(st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]), paths, credentials,
           bodies)
    def fuzz(method: str, path: str, credential: str | None, body: bytes | None) -> None:
        if method == "DELETE" and path.rstrip("/").endswith("{sid}"):
            return  # keep the one live session alive for the checks after
        status, answer, content_type = request(
            url, method, path.replace("{sid}", session["session_id"]),
            held.get(credential, credential) if credential else None, body)
        seen.add(status)
        assert status < 500, (method, path, status, answer[:300])
        if status >= 400 and content_type == "application/json":
            error = json.loads(answer)["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)

    fuzz()
    assert pids(url) == before  # no process died (and was restarted) meanwhile
    assert {400, 401, 404} <= seen, seen
    status, body, _ = request(url, "GET", f"/v1/sessions/{session['session_id']}",
                              session["token"])
    assert status == 200 and json.loads(body)["state"] == "active"
