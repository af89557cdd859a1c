"""Direct mode in a real headless Chromium: the page's call goes to the Realtime API (the
simulator) itself, with an ephemeral key from voxrelay; the conversation works, voxrelay
records it through the call's sideband, and the standard API key reaches the browser in
no response, request, page or storage.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import pytest
from playwright.async_api import expect

from services.client.voxrelay import create_session
from services.openai_link.config import SIMULATOR_KEY
from tests.support.up import Up

from .test_web_client import CONNECT_TIMEOUT_MS, REPLY_TIMEOUT_MS, api, page_in

pytestmark = pytest.mark.browser

RECORDED_TIMEOUT_S = 15


class Wiretap:
    """Everything the page sent and received over HTTP: headers and bodies."""

    def __init__(self, page: Any) -> None:
        self.requests: list[Any] = []
        self.responses: list[Any] = []
        page.on("request", lambda request: self.requests.append(request))
        page.on("response", lambda response: self.responses.append(response))

    async def text(self) -> str:
        seen = []
        for request in self.requests:
            seen += [request.url, json.dumps(await request.all_headers()),
                     request.post_data or ""]
        for response in self.responses:
            seen += [json.dumps(await response.all_headers())]
            try:
                seen.append((await response.body()).decode("utf-8", "replace"))
            except Exception:  # a redirect or a body the browser did not keep
                pass
        return "\n".join(seen)

    async def authorization_of(self, path: str) -> str:
        [request] = [r for r in self.requests if r.url.endswith(path)]
        return (await request.all_headers())["authorization"]


async def sim_calls(up: Up) -> dict[str, str]:
    async with api(ssl.create_default_context()) as http, \
            http.get(f"{up.sim_url}/_sim/calls") as r:
        return {c["call_id"]: c["connection_state"] for c in (await r.json())["calls"]
                if c["transport"] == "webrtc"}


async def test_direct_mode_talks_to_the_ai_itself_and_voxrelay_records_it(
        up: Up, browser: Any, trusted: ssl.SSLContext) -> None:
    async with api(trusted) as http:
        session = await create_session(http, up.url, name="direct")
    sid, token = session["session_id"], session["token"]
    async with page_in(browser) as page:
        tap = Wiretap(page)
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        await page.goto(f"{up.url}/s/{sid}?t={token}")
        await page.locator("#name").fill("Solo")
        await page.locator("#mode-select").select_option("direct")
        await page.get_by_role("button", name="Join", exact=True).click()
        await expect(page.get_by_role("status")).to_have_text(
            "Connected (direct to the AI)", timeout=CONNECT_TIMEOUT_MS)
        assert await page.evaluate("window.voxrelay.transport") == "direct"

        # the page's call is a call of the simulator's, connected to Chromium itself
        call_id = await page.evaluate("window.voxrelay.callId")
        assert (await sim_calls(up)).get(call_id) == "connected"
        async with api(trusted) as http, http.get(f"{up.url}/v1/sessions/{sid}") as r:
            clients = (await r.json())["clients"]
        assert [(c["name"], c["transport"]) for c in clients] == [("Solo", "direct")]

        # the conversation works: the page shows both turns as the AI's events say them
        log = page.get_by_role("log")
        await expect(log.locator(".turn.user .speaker").first).to_have_text(
            "Solo", timeout=REPLY_TIMEOUT_MS)
        await expect(log.locator(".turn.user:not(.pending) .text").first).not_to_be_empty(
            timeout=REPLY_TIMEOUT_MS)
        reply = log.locator(".turn.assistant:not(.pending) .text").first
        await expect(reply).not_to_be_empty(timeout=REPLY_TIMEOUT_MS)
        shown = await reply.text_content()

        # what the browser held: the ephemeral key, never the standard one
        assert (await tap.authorization_of("/v1/realtime/calls")).startswith("Bearer ek_")
        held = "\n".join([
            await tap.text(), await page.content(), "\n".join(console),
            await page.evaluate("JSON.stringify({...localStorage, ...sessionStorage})"),
        ])
        assert "ek_" in held and SIMULATOR_KEY not in held

        await page.get_by_role("button", name="Leave").click()
        async with asyncio.timeout(10):  # leaving hung the call up
            while call_id in await sim_calls(up):
                await asyncio.sleep(0.1)

    # recorded through the sideband: the user named, the reply as the page showed it
    async with api(trusted) as http, asyncio.timeout(RECORDED_TIMEOUT_S):
        while True:
            async with http.get(f"{up.url}/v1/sessions/{sid}/transcript") as r:
                entries = (await r.json())["entries"]
            if {"Solo", "assistant"} <= {e["speaker"] for e in entries}:
                break
            await asyncio.sleep(0.2)
    assert entries[0]["speaker"] == "Solo" and entries[0]["text"]
    assert shown in [e["text"] for e in entries if e["speaker"] == "assistant"]
