"""The web client's WebSocket fallback in a real headless Chromium.

The page's WebRTC is made unable to connect (its offer and the edge's answer travel
without ICE candidates), so after 8 s it must switch to the WebSocket transport on signaling's port,
say so (``INT_V2_WEBRTC_FALLBACK`` on the console, "Connected (WebSocket)"), and the
conversation must work: the AI answers and the transcript shows both turns.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import expect

from services.client.voxrelay import create_session
from tests.support.netblock import unprivileged_user
from tests.support.up import Up

from .conftest import launch_chromium
from .test_web_client import (
    MS,
    RECOVERY_TIMEOUT_MS,
    REPLY_TIMEOUT_MS,
    UI_TIMEOUT_MS,
    outage,
    page_in,
)

NO_ICE = """
const withoutCandidates = (description) => description && {
  type: description.type,
  sdp: description.sdp.split("\\r\\n").filter((l) => !l.startsWith("a=candidate")).join("\\r\\n"),
};
const RealPeerConnection = window.RTCPeerConnection;
window.RTCPeerConnection = class extends RealPeerConnection {
  get localDescription() { return withoutCandidates(super.localDescription); }
  setRemoteDescription(description) {
    return super.setRemoteDescription(withoutCandidates(description));
  }
};
"""
FALLBACK_TIMEOUT_MS = 12_000


async def test_a_page_without_webrtc_falls_back_to_websocket_and_talks_with_the_ai(
        up: Up, browser: Any, trusted: ssl.SSLContext) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as http:
        session = await create_session(http, up.url, name="fallback")
    async with page_in(browser) as page:
        warnings: list[str] = []
        page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
        await page.add_init_script(NO_ICE)
        await page.goto(f"{up.url}/s/{session['session_id']}?t={session['token']}")
        await page.locator("#name").fill("Walkie")
        await page.get_by_role("button", name="Join", exact=True).click()
        joined = time.monotonic()
        status = page.get_by_role("status")
        await expect(status).to_have_text("Connected (WebSocket)", timeout=FALLBACK_TIMEOUT_MS)
        assert 7.5 < time.monotonic() - joined < 12
        assert any("INT_V2_WEBRTC_FALLBACK" in w for w in warnings), warnings
        assert await page.evaluate("window.voxrelay.transport") == "websocket"
        log = page.get_by_role("log")
        await expect(log.locator(".turn.user .speaker").first).to_have_text(
            "Walkie", timeout=REPLY_TIMEOUT_MS)
        await expect(log.locator(".turn.assistant:not(.pending) .text").first).not_to_be_empty(
            timeout=REPLY_TIMEOUT_MS)
        await expect(page.locator("#orb")).to_have_attribute("data-speaking", "true",
                                                             timeout=REPLY_TIMEOUT_MS)
        connector = aiohttp.TCPConnector(ssl=trusted)
        async with aiohttp.ClientSession(connector=connector) as http, \
                http.get(f"{up.url}/v1/sessions/{session['session_id']}") as r:
            clients = (await r.json())["clients"]
        # the client that tried WebRTC, moved: one client, now on WebSocket
        assert [(c["name"], c["transport"], c["connected"]) for c in clients] == \
            [("Walkie", "websocket", True)]


async def test_a_websocket_that_drops_for_5_s_comes_back_as_the_same_client(
        up: Up, speech_wav: Path, trusted: ssl.SSLContext) -> None:
    """In WebSocket mode, every TCP packet to and from Chromium is dropped for 5 s: the
    page notices without any close (no latency.pong), says it is reconnecting, and once
    the network is back opens the socket again as the same client; the conversation
    goes on. The round trip is shown in this mode too."""
    user = unprivileged_user()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as http:
        session = await create_session(http, up.url, name="wobbly websocket")
    async with launch_chromium(speech_wav, user=user) as chromium, page_in(chromium) as page:
        await page.add_init_script(NO_ICE)
        await page.goto(f"{up.url}/s/{session['session_id']}?t={session['token']}")
        await page.get_by_role("button", name="Join", exact=True).click()
        status = page.get_by_role("status")
        await expect(status).to_have_text("Connected (WebSocket)", timeout=FALLBACK_TIMEOUT_MS)
        await expect(page.locator("#rtt")).to_have_text(MS, timeout=UI_TIMEOUT_MS)
        [before] = await clients(up, trusted, session["session_id"])
        replies = page.get_by_role("log").locator(".turn.assistant:not(.pending)")

        loop = asyncio.get_running_loop()
        noticed = await outage(page, user.pw_uid, "tcp", BLOCK_S)
        unblocked = loop.time()
        await expect(status).to_have_text("Connected (WebSocket)",
                                          timeout=RECOVERY_TIMEOUT_MS)
        back = loop.time() - unblocked
        print(f"the page noticed the dead socket after {noticed:.1f} s and was connected "
              f"again {back:.1f} s after the {BLOCK_S} s block ended")
        answered = await replies.count()
        await expect(replies).to_have_count(answered + 1, timeout=REPLY_TIMEOUT_MS)
        after = await clients(up, trusted, session["session_id"])
        assert [(c["client_id"], c["transport"], c["connected"]) for c in after] == [
            (before["client_id"], "websocket", True)]


async def clients(up: Up, trusted: ssl.SSLContext, session_id: str) -> list[dict]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as http, \
            http.get(f"{up.url}/v1/sessions/{session_id}") as r:
        return list((await r.json())["clients"])


BLOCK_S = 5
