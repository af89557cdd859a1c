"""openai_sim holds the items a client creates, as the Realtime API does, and lists them.

A conversation carried over to a new call (openai_link's context replay) is a run of
``conversation.item.create`` events; the simulator answers each with
``conversation.item.added`` then ``conversation.item.done`` (GA: never ``.created``),
and ``GET /_sim/calls`` shows each call's items so a test can see what a call was told.
The client is the official SDK over WebSocket; every event it receives is validated
against the SDK's GA models.
"""

from __future__ import annotations

import aiohttp
from openai import AsyncOpenAI

from proto import events
from services.openai_link.history import ConversationHistory
from tests.support.ws_client import EventReader

SID = "0123456789abcdef0123456789abcdef"


async def listed_items(sim) -> list[list[dict]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sim.url}/_sim/calls",
                            timeout=aiohttp.ClientTimeout(total=5)) as r:
            return [call["items"] for call in (await r.json())["calls"]]


async def test_replayed_items_are_added_in_order_and_listed_with_role_and_text(sim):
    history = ConversationHistory()
    for n, (role, text) in enumerate([("user", "What is the weather like today?"),
                                      ("assistant", "Sunny, and 21 degrees."),
                                      ("user", "And tomorrow?")]):
        history.observe(events.TranscriptDone(session_id=SID, turn_id=f"t{n}", role=role,
                                              text=text, started_at=float(n)))
    client = AsyncOpenAI(api_key="sk-test", base_url=sim.api_base, max_retries=0)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        created = await reader.until("session.created")
        for n, event in enumerate(history.replay()):
            await conn.send({**event, "event_id": f"event_replay_{n}"})
        done = [await reader.until("conversation.item.done") for _ in range(3)]
        added = [e for e in reader.events if e["type"] == "conversation.item.added"]
        assert "error" not in reader.types()
        assert "conversation.item.created" not in reader.types()
        # Each item added, then done, chained after the one before it.
        assert [e["item"]["id"] for e in added] == [e["item"]["id"] for e in done]
        assert [e["previous_item_id"] for e in done] == [None] + [e["item"]["id"]
                                                             for e in done[:2]]
        assert done[1]["item"]["content"] == [{"type": "output_text",
                                               "text": "Sunny, and 21 degrees."}]
        assert all(e["item"]["status"] == "completed" for e in done)
        # The simulator's listing of this session shows the same conversation.
        [items] = [items for items in await listed_items(sim)
                   if [i["id"] for i in items] == [e["item"]["id"] for e in done]]
        assert [(i["type"], i["role"], i["text"]) for i in items] == [
            ("message", "user", "What is the weather like today?"),
            ("message", "assistant", "Sunny, and 21 degrees."),
            ("message", "user", "And tomorrow?")]
        assert created["session"]["id"].startswith("sess_")


async def test_assistant_audio_cannot_be_replayed_only_its_text(sim):
    client = AsyncOpenAI(api_key="sk-test", base_url=sim.api_base, max_retries=0)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        reader = EventReader(conn)
        await reader.until("session.created")
        await conn.send({"type": "conversation.item.create", "event_id": "event_audio",
                         "item": {"type": "message", "role": "assistant",
                                  "content": [{"type": "output_audio", "transcript": "hi"}]}})
        error = await reader.until("error")
    assert error["error"]["code"] == "missing_required_parameter"
    assert error["error"]["param"] == "item.content[0].text"
    assert error["error"]["event_id"] == "event_audio"
