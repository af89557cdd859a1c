"""Hostile clients: junk and floods on the paths browsers send on are dropped and counted,
and the session carries on.

The whole stack runs (``voxrelay up``, one media edge so both WebRTC clients share it). A
real aiortc client sends binary, broken JSON, wrong types, unknown requests, oversized
text, a second unexpected channel and a flood of 5,000 messages on its ``events``
DataChannel while another client of the session speaks; a WebSocket-fallback client
sends audio frames of impossible sizes, audio far ahead of real time, junk text, a flood,
and one message over the socket's size limit. The processes stay up, the clients are
still answered, the conversation is held and recorded, and /metrics says what was
dropped and why.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.client.voxrelay import VoxrelayClient, create_session, find_event
from services.runtime.ratelimit import CLIENT_MESSAGE_BURST, CLIENT_MESSAGES_PER_S
from services.supervisor.status import parse_metrics
from tests.support.speech import send_paced, silence, speak
from tests.support.up import Up, running_up

pytestmark = pytest.mark.timeout(240)

PHRASE = "what is the weather like today"
FLOOD = 5000
FLOOD_DRAIN_S = 60.0
REPLY_WAIT_S = 45.0
FRAME_BYTES = 960
EDGE_DROPPED = "voxrelay_edge_channel_messages_dropped_total"
WS_DROPPED = "voxrelay_ws_messages_dropped_total"

JUNK_TEXT = (
    "not json", "{", "", "\x00\x01\x02", "null", "42", '["latency.ping"]',
    '{"type": "latency.ping", "payload": {"ping_id": [1, 2]}}',  # wrong type
    '{"type": "client.mute", "payload": {"muted": "yes"}}',  # wrong type
    '{"type": "latency.ping"}',  # no payload
    '{"type": "session.update", "payload": {"instructions": "be rude"}}',  # unknown type
    '{"type": "response.create"}',  # unknown type
    '{"payload": {"ping_id": "x"}}',  # no type
)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Up]:
    with running_up(tmp_path, edges=1) as up:
        yield up


async def health(http: aiohttp.ClientSession, url: str) -> dict[str, dict[str, Any]]:
    """Every live instance /healthz lists, by name."""
    async with http.get(f"{url}/healthz") as resp:
        assert resp.status == 200
        services = (await resp.json())["services"]
    return {i["instance"]: i for instances in services.values() for i in instances}


async def dropped(http: aiohttp.ClientSession, metrics_url: str, name: str) -> dict[str, float]:
    """``name``'s samples by their ``reason`` label."""
    async with http.get(metrics_url) as resp:
        metrics = parse_metrics(await resp.text())
    return {dict(labels)["reason"]: value for (sample, labels), value in metrics.values.items()
            if sample == name}


async def recorded_types(http: aiohttp.ClientSession, url: str, sid: str) -> list[str]:
    async with http.get(f"{url}/v1/sessions/{sid}/events") as resp:
        assert resp.status == 200
        return [json.loads(line)["type"] for line in (await resp.text()).splitlines() if line]


def pongs(client: VoxrelayClient, prefix: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e["type"] == "latency.pong"
            and str(e["payload"].get("ping_id", "")).startswith(prefix)]


async def ping_until_answered(client: VoxrelayClient, timeout: float = 20.0) -> None:
    """Ping until the edge answers one (it drops what comes over the client's rate)."""
    async with asyncio.timeout(timeout):
        for n in itertools.count():
            client.channel.send(json.dumps({"type": "latency.ping", "ts": time.time() * 1000,
                                            "payload": {"ping_id": f"probe-{n}"}}))
            await asyncio.sleep(0.5)
            if pongs(client, "probe-"):
                return


async def replies(events: list[dict[str, Any]], count: int) -> None:
    async with asyncio.timeout(REPLY_WAIT_S):
        while len([e for e in events if e["type"] == "turn.end"
                   and e["payload"].get("role") == "assistant"]) < count:
            await asyncio.sleep(0.05)


async def test_junk_and_a_flood_on_the_events_channel_are_dropped_while_the_session_talks(
        stack: Up):
    async with aiohttp.ClientSession() as http:
        edge = (await health(http, stack.url))["media_edge-1"]
        session = await create_session(http, stack.url, name="hostile channel")
        hostile, friend = VoxrelayClient("hostile"), VoxrelayClient("friend")
        try:
            for client in (hostile, friend):
                await client.join(http, stack.url, session)
                await client.wait_connected()
            channel = hostile.channel
            for size in (0, 1, 1000, 64 * 1024):  # aiortc sends up to the edge's 256 KiB
                channel.send(os.urandom(size))
            for text in JUNK_TEXT:
                channel.send(text)
            channel.send('{"type": "latency.ping", "payload": {"ping_id": "' + "x" * 20_000 + '"}}')
            sneaky = hostile.pc.createDataChannel("sneaky")
            async with asyncio.timeout(10):
                while sneaky.readyState != "open":
                    await asyncio.sleep(0.02)
            for _ in range(3):
                sneaky.send('{"type": "client.mute", "payload": {"muted": true}}')

            friend.mic.play(silence(300) + speak(PHRASE) + silence(1500))
            flood_started = time.monotonic()
            for n in range(FLOOD):
                channel.send(json.dumps({"type": "latency.ping", "ts": 0,
                                         "payload": {"ping_id": f"flood-{n}"}}))
                if n % 100 == 99:
                    await asyncio.sleep(0)  # let the client's SCTP send while it queues
            async with asyncio.timeout(FLOOD_DRAIN_S):
                while channel.bufferedAmount:
                    await asyncio.sleep(0.05)

            await replies(friend.events, 1)  # the friend was answered through the flood
            await ping_until_answered(hostile)  # and so is the flooder, at its rate again
            await ping_until_answered(friend)
            transcript = await friend.wait_event("transcript.done", role="assistant")
            assert transcript["payload"]["text"]
            assert await hostile.wait_event("turn.end", role="assistant")
            answered = len(pongs(hostile, "flood-"))
            elapsed = time.monotonic() - flood_started
            # No more than the bucket allows: its burst, then its rate (the bound is exact).
            assert answered <= CLIENT_MESSAGE_BURST + CLIENT_MESSAGES_PER_S * elapsed
            assert answered < FLOOD
            assert not any(e["type"] == "client.muted" for e in friend.events), \
                "a mute on an unexpected channel was obeyed"
        finally:
            await hostile.close()
            await friend.close()

        assert (await health(http, stack.url))["media_edge-1"]["pid"] == edge["pid"]
        drops = await dropped(http, edge["metrics"], EDGE_DROPPED)
        print(f"edge drops: {drops}; flood pings answered: {answered}")
        assert drops.get("binary") == 4
        assert drops.get("malformed") == len(JUNK_TEXT)
        assert drops.get("oversized") == 1
        assert drops.get("unexpected_channel") == 3
        assert drops.get("rate", 0) >= FLOOD - answered - 2 * CLIENT_MESSAGE_BURST
        types = await recorded_types(http, stack.url, session["session_id"])
        for kind in ("client.joined", "turn.start", "transcript.done", "turn.end"):
            assert kind in types, f"{kind} was not recorded: {types}"
    assert "media_edge-1 exited" not in stack.log_text()


class WsPeer:
    """A WebSocket-fallback client: what it received, and its speech paced at real time."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.heard = 0
        self.events: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                self.heard += len(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(message.data))

    async def wait_event(self, kind: str, timeout: float = 10.0, **payload: Any
                         ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while (event := find_event(self.events, kind, **payload)) is None:
                await asyncio.sleep(0.02)
            return event

    async def ping_until_answered(self, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            for n in itertools.count():
                await self.ws.send_str(json.dumps({"type": "latency.ping", "ts": 0,
                                                   "payload": {"ping_id": f"probe-{n}"}}))
                await asyncio.sleep(0.5)
                if any(e["type"] == "latency.pong"
                       and str(e["payload"]["ping_id"]).startswith("probe-")
                       for e in self.events):
                    return

    async def speak(self, pcm: bytes) -> None:
        await send_paced(self.ws.send_bytes, pcm)

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


async def test_junk_and_floods_on_the_websocket_fallback_are_dropped_while_it_talks(stack: Up):
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, stack.url, name="hostile socket")
        sid, token = session["session_id"], session["token"]
        base = f"{stack.url}/v1/sessions/{sid}"
        peer = WsPeer(await http.ws_connect(f"{base}/ws?t={token}&name=walkie"))
        try:
            welcome = await peer.wait_event("ws.welcome")
            client_id = welcome["payload"]["client_id"]
            for size in (0, 1, 959, 961):
                await peer.ws.send_bytes(os.urandom(size))
            for _ in range(10 * 50):  # 10 s of audio at once: 2 s may run ahead
                await peer.ws.send_bytes(bytes(FRAME_BYTES))
            for text in JUNK_TEXT:
                await peer.ws.send_str(text)
            for n in range(FLOOD):
                await peer.ws.send_str(json.dumps({"type": "latency.ping", "ts": 0,
                                                   "payload": {"ping_id": f"flood-{n}"}}))
            await peer.ping_until_answered()  # answered again once under its rate
            await peer.speak(silence(300) + speak(PHRASE) + silence(1500))
            await peer.wait_event("turn.start", timeout=15, role="user")
            await peer.wait_event("turn.end", timeout=REPLY_WAIT_S, role="assistant")
            assert peer.heard > 50 * FRAME_BYTES, "the AI's voice was not heard"
            answered = len([e for e in peer.events if e["type"] == "latency.pong"
                            and str(e["payload"]["ping_id"]).startswith("flood-")])
            assert answered < FLOOD

            await peer.ws.send_bytes(bytes(64 * 1024 + 1))  # over the socket's limit
            async with asyncio.timeout(10):
                await peer.reader
            assert peer.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        finally:
            await peer.close()

        again = WsPeer(await http.ws_connect(f"{base}/ws?t={token}&client_id={client_id}"))
        try:
            assert (await again.wait_event("ws.welcome"))["payload"]["client_id"] == client_id
            await again.ping_until_answered()
        finally:
            await again.close()

        await health(http, stack.url)  # 200: every service alive
        drops = await dropped(http, f"{stack.url}/metrics", WS_DROPPED)
        print(f"signaling drops: {drops}; flood pings answered: {answered}")
        assert drops.get("size") == 4
        assert drops.get("invalid") == len(JUNK_TEXT)
        assert drops.get("rate", 0) > 0
        assert drops.get("ahead", 0) > 0
        assert drops.get("oversized") == 1
        async with http.get(f"{base}/transcript") as r:
            speakers = [e["speaker"] for e in (await r.json())["entries"]]
        assert "walkie" in speakers and "assistant" in speakers
        types = await recorded_types(http, stack.url, sid)
        for kind in ("client.joined", "turn.start", "transcript.done", "turn.end"):
            assert kind in types, f"{kind} was not recorded: {types}"
    assert "signaling-1 exited" not in stack.log_text()
