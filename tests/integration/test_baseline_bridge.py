"""The baseline bridge ``voxrelay bench`` measures voxrelay against, working end to end.

The simulator in echo mode (it says back what it heard) and ``python -m
benchmarks.baseline`` run as child processes on loopback; real aiortc clients — the
``VoxrelayClient`` the load generator uses — join through the bridge's HTTP API, speak
espeak-ng speech and must hear their own phrase come back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import aiohttp
import pytest

from services.client.voxrelay import VoxrelayClient, create_session
from tests.support.ports import free_port
from tests.support.sim_process import SimProcess
from tests.support.speech import (
    BYTES_PER_MS,
    best_correlation,
    duration_ms,
    rms_dbfs,
    silence,
    speak,
)

PHRASE = "what is the weather like today"
AUDIBLE_DBFS = -45.0
"Louder than this, a 20 ms frame a client hears is the reply, not silence."
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def echo_sim() -> Iterator[SimProcess]:
    process = SimProcess.start("--reply-mode", "echo", "--response-latency-ms", "150")
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="module")
def bridge(echo_sim: SimProcess) -> Iterator[str]:
    """The baseline bridge's URL; it must exit cleanly on SIGINT afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.baseline", "--host", "127.0.0.1", "--port",
         str(port), "--openai-base-url", echo_sim.api_base],
        env={**os.environ, "VOXRELAY_ICE_HOSTS": "127.0.0.1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("the baseline bridge did not exit within 10 s of SIGINT") from None
    assert code == 0


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the baseline bridge exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError("the baseline bridge did not answer /healthz in time")


def voiced_ms(pcm: bytes) -> int:
    """How much of ``pcm`` is audible, in whole 20 ms frames."""
    frame = 20 * BYTES_PER_MS
    return 20 * sum(rms_dbfs(pcm[i:i + frame]) > AUDIBLE_DBFS
                    for i in range(0, len(pcm) - frame + 1, frame))


async def hear_reply(client: VoxrelayClient, since: int, speech: bytes) -> bytes:
    """What ``client`` heard after byte ``since``, once the whole echo of ``speech`` could
    have arrived after its first 500 ms of voice."""
    async with asyncio.timeout(REPLY_TIMEOUT_S):
        while voiced_ms(bytes(client.heard[since:])) < 500:
            await asyncio.sleep(0.05)
        end = len(client.heard) + duration_ms(speech) * BYTES_PER_MS
        while len(client.heard) < end:
            await asyncio.sleep(0.05)
    return bytes(client.heard[since:])


async def test_healthz_names_the_process_to_measure(bridge):
    async with aiohttp.ClientSession() as http, http.get(f"{bridge}/healthz") as resp:
        assert resp.status == 200
        pid = (await resp.json())["pid"]
    assert os.path.exists(f"/proc/{pid}/stat")
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert b"benchmarks.baseline" in f.read()


async def test_requests_about_a_session_need_its_token(bridge):
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, bridge, name="tokens")
        sid = session["session_id"]
        offer = {"sdp": "v=0\r\n", "type": "offer"}
        async with http.post(f"{bridge}/v1/sessions/{sid}/clients", json=offer) as resp:
            assert resp.status == 401
        async with http.delete(f"{bridge}/v1/sessions/{sid}",
                               headers={"Authorization": "Bearer not-the-token"}) as resp:
            assert resp.status == 401
        auth = {"Authorization": f"Bearer {session['token']}"}
        async with http.delete(f"{bridge}/v1/sessions/{sid}/clients/nobody",
                               headers=auth) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "client_not_found"
        async with http.delete(f"{bridge}/v1/sessions/{sid}", headers=auth) as resp:
            assert resp.status == 204
        async with http.delete(f"{bridge}/v1/sessions/{sid}", headers=auth) as resp:
            assert resp.status == 404


async def test_client_hears_the_ai_say_its_phrase_back(bridge):
    speech = speak(PHRASE)
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, bridge, name="echo", voice="marin")
        client = VoxrelayClient("laptop")
        try:
            await client.join(http, bridge, session)
            await client.wait_connected()
            mark = len(client.heard)
            client.mic.play(silence(300) + speech + silence(1200))
            reply = await hear_reply(client, mark, speech)
            assert best_correlation(speech, reply) > 0.6

            auth = {"Authorization": f"Bearer {session['token']}"}
            url = f"{bridge}/v1/sessions/{session['session_id']}"
            async with http.delete(f"{url}/clients/{client.client_id}", headers=auth) as resp:
                assert resp.status == 204
            async with http.delete(url, headers=auth) as resp:
                assert resp.status == 204
        finally:
            await client.close()


async def test_two_clients_of_a_session_both_hear_the_reply(bridge):
    speech = speak(PHRASE)
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, bridge, name="two devices")
        laptop, phone = VoxrelayClient("laptop"), VoxrelayClient("phone")
        try:
            for client in (laptop, phone):
                await client.join(http, bridge, session)
            for client in (laptop, phone):
                await client.wait_connected()
            marks = [len(client.heard) for client in (laptop, phone)]
            laptop.mic.play(silence(300) + speech + silence(1200))
            replies = await asyncio.gather(*(hear_reply(client, mark, speech) for client, mark
                                             in zip((laptop, phone), marks, strict=True)))
            for reply in replies:
                assert best_correlation(speech, reply) > 0.6
        finally:
            for client in (laptop, phone):
                await client.close()
