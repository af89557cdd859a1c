"""The browser's WebSocket fallback: a client with no WebRTC talks over signaling's port.

The whole stack runs (``voxrelay up``); a plain aiohttp WebSocket client joins a session at
``/v1/sessions/{sid}/ws``, streams espeak-ng speech as 20 ms PCM16 frames in real time and
must get the AI's voice back as binary frames and its events as text, in the same session
and transcript as WebRTC clients.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.client.voxrelay import create_session, find_event
from tests.support.speech import rms_dbfs, send_paced, silence, speak
from tests.support.up import Up, running_up

PHRASE = "what is the weather like today"
FRAME_BYTES = 960


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Up]:
    with running_up(tmp_path) as up:
        yield up


class WsPeer:
    """What a WebSocket client received: model audio and events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.heard = bytearray()
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                assert len(message.data) == FRAME_BYTES
                self.heard += message.data
            elif message.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(message.data))
                self.changed.set()

    async def wait_event(self, type_: str, timeout: float, **payload: Any) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while (event := find_event(self.events, type_, **payload)) is None:
                self.changed.clear()
                await self.changed.wait()
            return event

    async def speak(self, pcm: bytes) -> None:
        """Send ``pcm`` as 20 ms frames, paced at real time."""
        await send_paced(self.ws.send_bytes, pcm)


async def metric(http: aiohttp.ClientSession, url: str, line_start: str) -> float | None:
    async with http.get(f"{url}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(line_start + " "):
                return float(line.split()[-1])
    return None


async def test_websocket_client_hears_the_ai_and_is_in_the_transcript(stack):
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, stack.url, name="fallback")
        sid, token = session["session_id"], session["token"]
        base = f"{stack.url}/v1/sessions/{sid}"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{base}/ws?t=not-the-token")
        assert refused.value.status == 401
        async with http.ws_connect(f"{base}/ws?t={token}&name=walkie") as ws:
            peer = WsPeer(ws)
            reader = asyncio.create_task(peer.read())
            try:
                joined = await peer.wait_event("client.joined", timeout=5)
                assert joined["payload"]["transport"] == "websocket"
                await ws.send_bytes(b"\x00" * 7)  # not whole 10 ms: dropped, socket open
                await ws.send_bytes(bytes(FRAME_BYTES * 11))  # 220 ms: too long, dropped
                await peer.speak(silence(300) + speak(PHRASE) + silence(1500))
                await peer.wait_event("turn.start", timeout=15, role="user")
                await peer.wait_event("turn.end", timeout=30, role="assistant")
                assert len(peer.heard) > 50 * FRAME_BYTES  # over a second of the AI's voice
                assert rms_dbfs(bytes(peer.heard)) > -45, "the AI's voice was not heard"
                async with http.get(base) as r:
                    clients = (await r.json())["clients"]
                assert [(c["name"], c["transport"], c["connected"]) for c in clients] == \
                    [("walkie", "websocket", True)]
                assert clients[0]["edge"].startswith("signaling")
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        async with http.get(f"{base}/transcript") as r:
            speakers = [e["speaker"] for e in (await r.json())["entries"]]
        assert "walkie" in speakers and "assistant" in speakers
        fallbacks = 'voxrelay_fallbacks_total{kind="browser_websocket"}'
        assert await metric(http, stack.url, fallbacks) == 1.0
        dropped = 'voxrelay_ws_messages_dropped_total{reason="size"}'
        assert await metric(http, stack.url, dropped) == 2.0
        async with asyncio.timeout(5):  # the socket closed: the client left
            while True:
                async with http.get(base) as r:
                    if not (await r.json())["clients"][0]["connected"]:
                        break
                await asyncio.sleep(0.1)
        assert "INT_V2_WEBRTC_FALLBACK" in stack.log_text()
        assert token not in stack.log_text()
