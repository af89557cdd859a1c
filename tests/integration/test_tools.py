"""A tool call end to end: the model (the simulator, scripted) calls ``get_time``; the link
runs it and returns the result; the model's spoken reply carries it; the record shows it all
in order.

The whole stack runs under ``voxrelay up``; a real aiortc client asks the question in
espeak-ng speech and hears the reply.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.client.voxrelay import VoxrelayClient, create_session
from tests.support.speech import silence, speak
from tests.support.up import Up, running_up

pytestmark = pytest.mark.timeout(180)

SCRIPT = """
[[turn]]
user = "What time is it in Paris"
reply = "Here it is. {output}"
function_call = { name = "get_time", arguments = { timezone = "Europe/Paris" } }
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Up]:
    script = tmp_path / "script.toml"
    script.write_text(SCRIPT)
    with running_up(tmp_path, edges=1, env_extra={"VOXRELAY_SIM_REPLY_MODE": "script",
                                                  "VOXRELAY_SIM_SCRIPT": str(script)}) as up:
        yield up


async def recorded(http: aiohttp.ClientSession, up: Up, sid: str) -> list[dict[str, Any]]:
    async with http.get(f"{up.url}/v1/sessions/{sid}/events") as r:
        assert r.status == 200
        return [json.loads(line) for line in (await r.text()).splitlines() if line]


async def test_the_model_calls_a_tool_the_link_runs_it_and_the_reply_carries_the_result(
        stack: Up):
    async with aiohttp.ClientSession() as http:
        session = await create_session(http, stack.url, name="tools")
        sid = session["session_id"]
        client = VoxrelayClient("kitchen")
        try:
            await client.join(http, stack.url, session)
            await client.wait_connected()
            client.mic.play(silence(300) + speak("what time is it in Paris") + silence(1500))
            reply = await client.wait_event("transcript.done", timeout=40, role="assistant")
        finally:
            await client.close()
        async with asyncio.timeout(10):  # the recorder has written the last events
            while not any(e["type"] == "turn.summary" for e in await recorded(http, stack, sid)):
                await asyncio.sleep(0.2)
        record = await recorded(http, stack, sid)

    # the model was offered the tool
    updated = [json.loads(e["data"]) for e in record
               if e["type"] == "realtime.event" and e["event_type"] == "session.updated"]
    assert [t["name"] for t in updated[0]["session"]["tools"]] == ["get_time"]

    # the call, its result, the output given to the model, then the spoken reply
    kinds = [e["type"] if e["type"] != "realtime.event" else e["event_type"] for e in record]
    call = next(e for e in record if e["type"] == "tool.call")
    result = next(e for e in record if e["type"] == "tool.result")
    assert call["name"] == "get_time" and json.loads(call["arguments"]) == {
        "timezone": "Europe/Paris"}
    assert result["call_id"] == call["call_id"] and result["status"] == "ok"
    output = json.loads(result["output"])
    assert output["timezone"] == "Europe/Paris" and output["iso"][-6:] in ("+01:00", "+02:00")
    given = [i for i, e in enumerate(record) if e["type"] == "realtime.event"
             and e["event_type"] == "conversation.item.added"
             and json.loads(e["data"])["item"]["type"] == "function_call_output"]
    assert len(given) == 1
    assert json.loads(json.loads(record[given[0]]["data"])["item"]["output"]) == output
    assert (kinds.index("response.function_call_arguments.done") < kinds.index("tool.call")
            < kinds.index("tool.result") < given[0])
    spoken = [i for i, e in enumerate(record) if e["type"] == "transcript.done"
              and e["role"] == "assistant"]
    assert len(spoken) == 1 and spoken[0] > given[0]
    assert output["iso"] in record[spoken[0]]["text"]
    assert output["iso"] in reply["payload"]["text"]  # what the client was told it heard
