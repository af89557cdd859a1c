"""The link's tool calls: run as the model asks, answered in order, then the reply asked for."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from proto import events
from services.openai_link import realtime_events as rt
from services.openai_link.calls_api import CallSettings, session_config
from services.openai_link.tool_calls import ToolCalls
from services.tools import Tool, ToolContext, ToolError, ToolRegistry, load

SID = "a" * 32


async def slow_lookup(word: str, seconds: float = 0.05) -> dict[str, Any]:
    await asyncio.sleep(seconds)
    return {"word": word, "found": True}


def blocking_sum(a: int, b: int) -> int:
    time.sleep(0.05)  # a sync tool runs in a thread: the loop keeps going
    return a + b


def broken() -> None:
    raise RuntimeError("the database is down")


def remember(note: str, context: ToolContext) -> str:
    context.state.setdefault("notes", []).append(note)
    return f"{len(context.state['notes'])} notes"


TOOLS = [
    Tool("lookup", slow_lookup, parameters={"type": "object", "properties": {}}, timeout_s=1.0),
    Tool("sum", blocking_sum, timeout_s=1.0),
    Tool("broken", broken),
    Tool("remember", remember),
    Tool("stuck", slow_lookup, timeout_s=0.1),
    Tool("search", slow_lookup, cancel_on_barge_in=True),
]


class Harness:
    def __init__(self, tools: list[Tool] = TOOLS) -> None:
        self.sent: list[dict[str, Any]] = []
        self.published: list[events.Event] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.context = ToolContext(SID)
        self.calls = ToolCalls(tools, self.context, spawn=self._spawn, send=self._send,
                               publish_event=self.published.append)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task

    def _send(self, event: dict[str, Any]) -> bool:
        self.sent.append(event)
        return True

    def call(self, call_id: str, name: str, arguments: Any, response_id: str = "resp_1") -> None:
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        self.calls.observe(rt.FunctionCallArgumentsDone(
            response_id=response_id, call_id=call_id, name=name, arguments=text))

    def response_done(self, response_id: str = "resp_1", status: str = "completed") -> None:
        self.calls.observe(rt.ResponseDone(response=rt.Response(id=response_id, status=status)))

    async def settle(self) -> None:
        async with asyncio.timeout(5):
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def outputs(self) -> list[tuple[str, Any]]:
        return [(e["item"]["call_id"], json.loads(e["item"]["output"]))
                for e in self.sent if e["type"] == "conversation.item.create"]

    def results(self) -> dict[str, events.ToolResult]:
        return {e.call_id: e for e in self.published if isinstance(e, events.ToolResult)}


async def test_parallel_calls_run_together_and_are_answered_in_order_then_a_reply():
    h = Harness()
    h.call("call_a", "lookup", {"word": "tide", "seconds": 0.2})
    h.call("call_b", "sum", {"a": 2, "b": 3})
    h.response_done()
    assert h.calls.running == 2 and h.sent == []  # nothing until every call is back
    began = time.monotonic()
    await h.settle()
    assert time.monotonic() - began < 1.0  # together, not one after the other's timeout
    assert h.outputs() == [("call_a", {"word": "tide", "found": True}), ("call_b", 5)]
    assert h.sent[-1] == {"type": "response.create"}
    assert [type(e).__name__ for e in h.published][:2] == ["ToolCall", "ToolCall"]
    assert {c: r.status for c, r in h.results().items()} == {"call_a": "ok", "call_b": "ok"}


async def test_the_answer_waits_for_the_response_to_be_done():
    h = Harness()
    h.call("call_a", "sum", {"a": 1, "b": 1})
    await h.settle()
    assert h.sent == []  # finished, but the model may still be adding calls
    h.response_done()
    assert h.outputs() == [("call_a", 2)] and h.sent[-1]["type"] == "response.create"


@pytest.mark.parametrize(("name", "arguments", "status", "error"), [
    ("broken", {}, "error", "RuntimeError: the database is down"),
    ("stuck", {"word": "x", "seconds": 5}, "timeout", "timed out after 0.1 s"),
    ("sum", "{not json", "error", "bad arguments"),
    ("sum", [1, 2], "error", "arguments must be a JSON object"),
    ("sum", {"a": 1}, "error", "TypeError"),
    ("nonexistent", {}, "unknown", "no tool named 'nonexistent'"),
])
async def test_a_failing_call_gives_the_model_an_error_it_can_act_on(name, arguments, status,
                                                                     error):
    h = Harness()
    h.call("call_x", name, arguments)
    h.response_done()
    await h.settle()
    [(call_id, output)] = h.outputs()
    assert call_id == "call_x" and error in output["error"]
    assert h.results()["call_x"].status == status
    assert h.sent[-1] == {"type": "response.create"}


async def test_barge_in_cancels_what_is_marked_so_and_no_reply_is_asked_for():
    h = Harness()
    h.call("call_s", "search", {"word": "moon", "seconds": 5})
    h.call("call_l", "lookup", {"word": "sea", "seconds": 0.1})
    h.response_done(status="completed")
    h.calls.observe(rt.SpeechStarted(item_id="item_user", audio_start_ms=0))
    await h.settle()
    assert dict(h.outputs()) == {"call_s": {"error": "cancelled: the user spoke"},
                                 "call_l": {"word": "sea", "found": True}}
    assert {c: r.status for c, r in h.results().items()} == {"call_s": "cancelled",
                                                             "call_l": "ok"}
    assert {"type": "response.create"} not in h.sent  # the user's turn brings the reply


async def test_a_tool_with_context_keeps_state_for_the_session():
    h = Harness()
    for n, note in enumerate(("milk", "eggs")):
        h.call(f"call_{n}", "remember", {"note": note}, response_id=f"resp_{n}")
        h.response_done(f"resp_{n}")
        await h.settle()
    assert h.context.state["notes"] == ["milk", "eggs"]
    assert [r.output for r in h.results().values()] == ["1 notes", "2 notes"]


async def test_closing_cancels_running_calls_and_sends_nothing():
    h = Harness()
    h.call("call_s", "lookup", {"word": "x", "seconds": 5})
    h.response_done()
    h.calls.close()
    await h.settle()
    assert h.sent == [] and h.results() == {}


def test_the_session_offers_its_tools_to_the_model():
    registry = load()
    assert "get_time" in registry
    schemas = tuple(t.schema() for t in registry.for_profile(""))
    session = session_config(CallSettings(tools=schemas))
    assert session["tool_choice"] == "auto"
    assert [t["name"] for t in session["tools"]] == ["get_time"]
    assert session["tools"][0]["parameters"]["properties"]["timezone"]["type"] == "string"
    assert "tools" not in session_config(CallSettings())


def test_tools_are_checked_when_registered_and_loaded():
    with pytest.raises(ToolError, match="tool name"):
        Tool("has space", broken)
    with pytest.raises(ToolError, match="timeout_s"):
        Tool("ok", broken, timeout_s=0)
    with pytest.raises(ToolError, match="two tools"):
        ToolRegistry([Tool("same", broken), Tool("same", remember)])
    with pytest.raises(ToolError, match="no_such_module"):
        load(["no_such_module"], plugins=False)
    assert len(load([], plugins=False)) == 0  # VOXRELAY_TOOLS="" offers none


def test_get_time_answers_for_a_zone_and_refuses_a_bad_one():
    get_time = load().get("get_time")
    assert get_time is not None
    paris = get_time.function(timezone="Europe/Paris")
    assert paris["timezone"] == "Europe/Paris" and paris["iso"][-6:] in ("+01:00", "+02:00")
    assert "error" in get_time.function(timezone="../../etc/passwd")
    assert get_time.function()["iso"].endswith("+00:00")
