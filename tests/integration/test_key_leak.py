"""The OpenAI API key shows nowhere: not to users, not in logs, data or metrics.

The stack runs (``voxrelay up``) with a recognisable fake key, ``sk-voxrelay-leakcheck-
<random hex>``, against a simulator the test starts itself (with a key set, ``voxrelay
up`` starts none). The link calls it over WebRTC, and the simulator accepts that key and
no other, so the key is known to be in use. A client converses; the call is dropped
under it (the link reports it and calls again, with the key); then the simulator is
replaced by one that refuses the key (the call is refused with a masked key in its
error). Then every HTTP answer the test got, the pages and their scripts, every
DataChannel message, the whole output of ``voxrelay up``, every service's /metrics,
every row of the database and every file in the data directory are searched for the key
and for pieces of it.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.client.voxrelay import VoxrelayClient, create_session
from services.signaling.web_routes import WEB_DIR
from tests.support.ports import free_port
from tests.support.sim_process import SimProcess
from tests.support.speech import silence, speak
from tests.support.up import running_up

pytestmark = pytest.mark.timeout(300)

KEY_HEX = secrets.token_hex(16)
KEY = f"sk-voxrelay-leakcheck-{KEY_HEX}"
NEEDLES = (KEY, KEY_HEX, KEY_HEX[8:20], "leakcheck")
"The key, its random part, a piece from its middle (a truncated or masked key), its tag."
OTHER_KEY = f"sk-voxrelay-other-{secrets.token_hex(8)}"
PHRASES = ("what is the weather like today", "please turn on the lights")
REPLY_WAIT_S = 45.0
STOP_TIMEOUT_S = 60.0


class Seen:
    """Everything the test was shown, by where it was seen."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def add(self, where: str, data: str | bytes) -> None:
        self.items.append((where, data.encode() if isinstance(data, str) else data))

    def trace(self) -> aiohttp.TraceConfig:
        """Every response of an aiohttp session: status line, headers, body."""
        config = aiohttp.TraceConfig()

        async def on_end(session: Any, context: Any, params: Any) -> None:
            response = params.response
            self.add(f"{params.method} {params.url} headers",
                     f"{response.status} {response.reason}\n{response.headers!r}")

        async def on_chunk(session: Any, context: Any, params: Any) -> None:
            self.add(f"{params.method} {params.url} body", params.chunk)

        config.on_request_end.append(on_end)
        config.on_response_chunk_received.append(on_chunk)
        return config

    def leaks(self) -> list[str]:
        return [f"{needle!r} in {where}" for where, data in self.items for needle in NEEDLES
                if needle.encode() in data]


async def replies(client: VoxrelayClient, count: int) -> None:
    async with asyncio.timeout(REPLY_WAIT_S):
        while len([e for e in client.events if e["type"] == "turn.end"
                   and e["payload"].get("role") == "assistant"]) < count:
            await asyncio.sleep(0.05)


async def event_after(client: VoxrelayClient, start: int, match: Callable[[dict], bool],
                      timeout: float = 30.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            for event in client.events[start:]:
                if match(event):
                    return event
            await asyncio.sleep(0.05)


async def converse_through_a_dropped_call(http: aiohttp.ClientSession, url: str,
                                          sim: SimProcess, seen: Seen) -> dict[str, Any]:
    """A recorded session: one turn, the call dropped and made again, a second turn."""
    session = await create_session(http, url, name="leak check", record=True)
    client = VoxrelayClient("desk")
    client.channel.on("message", lambda message: seen.add("the events DataChannel", message))
    try:
        await client.join(http, url, session)
        await client.wait_connected()
        client.mic.play(silence(300) + speak(PHRASES[0]) + silence(1500))
        await replies(client, 1)
        mark = len(client.events)
        async with aiohttp.ClientSession() as control, \
                control.post(f"{sim.url}/_sim/drop") as r:
            assert (await r.json())["dropped"]
        await event_after(client, mark, lambda e: e["type"] == "error"
                          and e["payload"]["code"] == "realtime_disconnected")
        await event_after(client, mark, lambda e: e["type"] == "ai.state"
                          and e["payload"]["state"] == "listening")
        client.mic.play(silence(300) + speak(PHRASES[1]) + silence(1500))
        await replies(client, 2)
        await client.wait_event("transcript.done", role="assistant")
        await asyncio.sleep(1.0)  # the reply's tail reaches the recording
    finally:
        await client.close()
    sid = session["session_id"]
    async with http.delete(f"{url}/v1/sessions/{sid}",
                           headers={"Authorization": f"Bearer {session['token']}"}) as r:
        assert r.status == 204
    return session


async def join_refused(http: aiohttp.ClientSession, url: str, seen: Seen) -> None:
    """A client joins while the API refuses the key: a clear error, the key masked."""
    session = await create_session(http, url, name="refused")
    client = VoxrelayClient("refused")
    client.channel.on("message", lambda message: seen.add("the events DataChannel", message))
    try:
        await client.pc.setLocalDescription(await client.pc.createOffer())
        async with http.post(f"{url}/v1/sessions/{session['session_id']}/clients",
                             json={"sdp": client.pc.localDescription.sdp, "type": "offer"},
                             headers={"Authorization": f"Bearer {session['token']}"}) as r:
            body = await r.text()
            assert r.status >= 500, body
    finally:
        await client.close()
    assert "invalid_api_key" in body, body


async def read_everything(http: aiohttp.ClientSession, url: str, up_metrics_port: int,
                          sids: list[str]) -> None:
    """The pages, their files, every read of the API, every service's /metrics."""
    reads = ["/", "/healthz", "/metrics", "/v1/sessions", "/v1/history"]
    reads += [f"/static/{p.name}" for p in sorted(WEB_DIR.iterdir()) if p.name != "index.html"]
    for sid in sids:
        base = f"/v1/sessions/{sid}"
        reads += [f"/s/{sid}", base, f"{base}/transcript", f"{base}/events", f"{base}/recordings"]
    for path in reads:
        async with http.get(f"{url}{path}") as r:
            assert r.status == 200, f"{path}: {r.status}"
            if path.endswith("/recordings"):
                for stream in (await r.json())["streams"]:
                    async with http.get(f"{url}{path}/{stream['file']}") as wav:
                        assert wav.status == 200
                        await wav.read()
            else:
                await r.read()
    async with http.get(f"{url}/healthz") as r:
        services = (await r.json())["services"]
    metrics = [i["metrics"] for instances in services.values() for i in instances if i["metrics"]]
    metrics.append(f"http://127.0.0.1:{up_metrics_port}/metrics")  # the bus's
    assert len(metrics) >= 5
    for metrics_url in metrics:
        async with http.get(metrics_url) as r:
            assert r.status == 200
            await r.read()


def database_rows(path: Path) -> str:
    """Every row of every table, as SQL."""
    with sqlite3.connect(path) as db:
        return "\n".join(db.iterdump())


async def test_the_openai_key_shows_nowhere(tmp_path: Path,
                                            start_sim: Callable[..., SimProcess]) -> None:
    sim_port = free_port()
    sim = start_sim("--port", str(sim_port), "--response-latency-ms", "150",
                    env={"VOXRELAY_SIM_API_KEY": KEY})  # this key and no other
    seen = Seen()
    env = {"OPENAI_API_KEY": KEY, "VOXRELAY_OPENAI_BASE_URL": sim.api_base,
           "VOXRELAY_OPENAI_TRANSPORT": "webrtc"}
    with running_up(tmp_path, edges=1, env_extra=env) as up:
        async with aiohttp.ClientSession(trace_configs=[seen.trace()]) as http:
            talked = await converse_through_a_dropped_call(http, up.url, sim, seen)
            assert sim.stop() == 0
            start_sim("--port", str(sim_port), env={"VOXRELAY_SIM_API_KEY": OTHER_KEY})
            await join_refused(http, up.url, seen)
            await read_everything(http, up.url, up.metrics_port, [talked["session_id"]])
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(STOP_TIMEOUT_S) == 0
        assert up.proc.stdout is not None
        seen.add("the standard output of voxrelay up", up.proc.stdout.read())
        log = up.log_text()
    seen.add("the log of voxrelay up", log)
    assert "ended; reconnecting" in log, "the dropped call was not logged"
    assert "refused the call: HTTP 401 invalid_api_key" in log, "the refused call was not logged"

    database = up.data_dir / "recorder.sqlite3"
    rows = database_rows(database)
    assert talked["session_id"] in rows and 'INSERT INTO "transcript"' in rows
    seen.add("the database's rows", rows)
    indexes = list((up.data_dir / "recordings").rglob("index.json"))
    assert indexes, "nothing was recorded"
    for path in up.data_dir.rglob("*"):  # the index files, the WAVs, the database files
        if path.is_file():
            seen.add(str(path.relative_to(tmp_path)), path.read_bytes())

    kinds = {where.split(" ")[0] for where, _ in seen.items}
    assert {"GET", "POST", "DELETE"} <= kinds
    assert not seen.leaks(), "\n".join(seen.leaks())
    print(f"searched {len(seen.items)} items, {sum(len(d) for _, d in seen.items)} bytes")


def test_the_search_finds_the_key_where_it_is():
    seen = Seen()
    seen.add("a log", f"Authorization: Bearer {KEY}")
    seen.add("a cut log", f"...{KEY_HEX[4:24]}...")
    seen.add("a clean log", "Incorrect API key provided: sk-*****" + KEY_HEX[-4:])
    assert [leak.split(" in ")[1] for leak in seen.leaks()] == [
        "a log", "a log", "a log", "a log", "a cut log"]
