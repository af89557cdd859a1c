"""The web client's WebSocket fallback in a real headless Chromium.

The page's WebRTC is made unable to connect (its offer and the edge's answer travel
without ICE candidates), so after 8 s it must switch to the WebSocket transport on signaling's port,
say so (``INT_V2_WEBRTC_FALLBACK`` on the console, "Connected (WebSocket)"), and the
conversation must work: the AI answers and the transcript shows both turns.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import aiohttp
from playwright.async_api import expect

from services.client.voxrelay import create_session
from tests.support.up import Up

from .test_web_client import REPLY_TIMEOUT_MS, page_in

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
