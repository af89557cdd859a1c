"""The web client's PCM transport in a real headless Chromium: with the audio path set to
"PCM on a data channel" the page sends its microphone and plays the AI's voice as PCM16 on
an ``audio`` DataChannel, through its own AudioWorklet pipeline, and the conversation works.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from playwright.async_api import expect

from services.client.voxrelay import create_session
from tests.support.up import Up

from .test_web_client import CONNECT_TIMEOUT_MS, REPLY_TIMEOUT_MS, api, page_in

pytestmark = pytest.mark.browser


async def test_the_pcm_datachannel_transport_carries_a_conversation(
        up: Up, browser: Any, trusted: ssl.SSLContext) -> None:
    async with api(trusted) as http:
        session = await create_session(http, up.url, name="pcm page")
    sid, token = session["session_id"], session["token"]
    async with page_in(browser) as page:
        await page.goto(f"{up.url}/s/{sid}?t={token}")
        await page.locator("#name").fill("Kiosk")
        await page.locator("#mode-select").select_option("datachannel")
        await page.get_by_role("button", name="Join", exact=True).click()
        await expect(page.get_by_role("status")).to_have_text("Connected (PCM)",
                                                              timeout=CONNECT_TIMEOUT_MS)
        # no audio track at all: the microphone and the AI's voice are on the data channel
        assert await page.evaluate("window.voxrelay.pc.getTransceivers().length") == 0
        labels = await page.evaluate("window.voxrelay.transport")
        assert labels == "datachannel"
        async with api(trusted) as http, http.get(f"{up.url}/v1/sessions/{sid}") as r:
            clients = (await r.json())["clients"]
        assert [(c["name"], c["transport"]) for c in clients] == [("Kiosk", "datachannel")]

        log = page.get_by_role("log")
        await expect(log.locator(".turn.user .speaker").first).to_have_text(
            "Kiosk", timeout=REPLY_TIMEOUT_MS)
        await expect(log.locator(".turn.assistant:not(.pending) .text").first).not_to_be_empty(
            timeout=REPLY_TIMEOUT_MS)
        # the AI's voice played through the page's worklet: the level meter heard it
        await expect(page.locator("#orb")).to_have_attribute("data-speaking", "true",
                                                             timeout=REPLY_TIMEOUT_MS)
        lost = await page.evaluate("window.voxrelay.framesLost")
        print(f"\nframes the edge dropped on the way to the page: {lost}")
