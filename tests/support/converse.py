"""A finished conversation on a running stack, for tests that look back at one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from services.client.voxrelay import VoxrelayClient, create_session
from tests.support.speech import silence, speak

REPLY_WAIT_S = 45.0


async def converse(url: str, turns: Sequence[tuple[str, str]], name: str,
                   record: bool = False) -> dict:
    """Devices named as in ``turns`` join a new session; each says its phrase once the
    previous reply is over; then they leave and the session is ended. The session."""
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, url, name=name, record=record)
        devices = {device: VoxrelayClient(device) for device, _ in turns}
        try:
            for device in devices.values():
                await device.join(http, url, session)
                await device.wait_connected()
            for number, (device, phrase) in enumerate(turns, start=1):
                devices[device].mic.play(silence(300) + speak(phrase) + silence(1500))
                async with asyncio.timeout(REPLY_WAIT_S):
                    while len([e for e in devices[device].events if e["type"] == "turn.end"
                               and e["payload"]["role"] == "assistant"]) < number:
                        await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # the last reply's tail reaches every recording
        finally:
            for device in devices.values():
                await device.close()
        async with http.delete(f"{url}/v1/sessions/{session['session_id']}",
                               headers={"Authorization": f"Bearer {session['token']}"}) as r:
            assert r.status == 204
    return session


async def stored_transcript(url: str, session_id: str) -> list[dict]:
    """The transcript the stack serves for a session (asserting it answers 200)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/v1/sessions/{session_id}/transcript") as r:
            assert r.status == 200, await r.text()
            return (await r.json())["entries"]
