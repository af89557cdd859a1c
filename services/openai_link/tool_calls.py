"""One session's tool calls: run what the model asks for, give it the results, ask for the reply.

When the model calls a tool (``response.function_call_arguments.done``) the call starts
at once, in its own task, bounded by the tool's timeout: a response that calls several
tools (parallel tool calls) has them all running together. Once that response is done
(``response.done``) and every call of it has finished, the results go back in the
order the model made the calls, each a ``conversation.item.create`` of a
``function_call_output``, followed by one ``response.create``: the model then speaks
with the results in hand.

Each call is a ``tool.call`` event on the bus and each result a ``tool.result``
(status ``ok``, ``error``, ``timeout``, ``cancelled`` or ``unknown``), so the record
shows what ran, with what, and what came back.

Barge-in (``input_audio_buffer.speech_started`` while calls are running) cancels the
calls of tools marked ``cancel_on_barge_in``; the others finish. The model still gets
an output for every call (a cancelled one says so), but when the user has taken the
floor no ``response.create`` follows: the user's new turn brings the next reply.

Arguments that are not a JSON object, or that the tool does not take, are the model's
mistake: the output says what was wrong (status ``error``) so it can try again. A tool
that raises gives ``{"error": "<type>: <message>"}``; the link carries on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from proto import events
from services.tools import Tool, ToolContext

from . import realtime_events as rt
from .metrics import TOOL_CALLS, TOOL_SECONDS

logger = logging.getLogger(__name__)

MAX_OUTPUT_CHARS = 16_000
"An output longer than this is cut (the model's context is not a dump)."

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


@dataclass
class _Call:
    call_id: str
    name: str
    arguments: str
    response_id: str
    tool: Tool | None
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    status: str = ""
    output: str = ""

    @property
    def finished(self) -> bool:
        return bool(self.status)


class ToolCalls:
    def __init__(self, tools: Iterable[Tool], context: ToolContext, *, spawn: Spawn,
                 send: Callable[[dict[str, Any]], bool],
                 publish_event: Callable[[events.Event], object]) -> None:
        self.tools = {t.name: t for t in tools}
        self.context = context
        context.publish = self._publish_for_tool
        self._spawn = spawn
        self._send = send
        self._publish = publish_event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._calls: dict[str, _Call] = {}
        "Calls not yet answered, in the order the model made them."
        self._done_responses: set[str] = set()
        self._barged_in: set[str] = set()
        "Responses whose calls the user talked over: no response.create after them."
        self._closed = False

    def __repr__(self) -> str:
        return f"ToolCalls({self.context.session_id})"

    @property
    def running(self) -> int:
        return sum(1 for c in self._calls.values() if not c.finished)

    def schemas(self) -> tuple[dict[str, Any], ...]:
        """The tools as ``session.update`` declares them."""
        return tuple(t.schema() for t in self.tools.values())

    def observe(self, event: rt.AnyServerEvent | rt.OtherEvent) -> None:
        match event:
            case rt.FunctionCallArgumentsDone(response_id=response_id, call_id=call_id,
                                              name=name, arguments=arguments):
                self._start(_Call(call_id, name, arguments, response_id, self.tools.get(name)))
            case rt.ResponseDone(response=response):
                if any(c.response_id == response.id for c in self._calls.values()):
                    self._done_responses.add(response.id)
                    self._answer(response.id)
            case rt.SpeechStarted():
                self._barge_in()
            case _:
                pass

    def close(self) -> None:
        """The session ends: cancel whatever still runs (nothing is sent)."""
        self._closed = True
        for call in self._calls.values():
            if call.task is not None and not call.task.done():
                call.task.cancel()
        self._calls.clear()

    # -- running ------------------------------------------------------------------

    def _publish_for_tool(self, event: events.Event) -> None:
        """A tool's event for the bus, from the loop or from a sync tool's thread."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._publish(event)
        else:
            self._loop.call_soon_threadsafe(self._publish, event)

    def _start(self, call: _Call) -> None:
        if call.call_id in self._calls:
            return  # the same call reported twice
        if self._loop is None:
            self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self._calls[call.call_id] = call
        self._publish(events.ToolCall(
            session_id=self.context.session_id, call_id=call.call_id, name=call.name,
            arguments=call.arguments, response_id=call.response_id))
        if call.tool is None:
            self._finish(call, "unknown", {"error": f"no tool named {call.name!r}"})
            return
        call.task = self._spawn(self._run(call, call.tool), f"tool-{call.name}-{call.call_id}")

    async def _run(self, call: _Call, tool: Tool) -> None:
        try:
            arguments = json.loads(call.arguments or "{}")
            if not isinstance(arguments, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as e:
            self._finish(call, "error", {"error": f"bad arguments: {e}"})
            return
        if tool.wants_context:
            arguments["context"] = self.context
        try:
            async with asyncio.timeout(tool.timeout_s):
                if tool.is_async:
                    result = await tool.function(**arguments)
                else:
                    result = await asyncio.to_thread(tool.function, **arguments)
        except asyncio.CancelledError:
            if not call.finished:
                self._finish(call, "cancelled", {"error": "cancelled: the user spoke"})
            raise
        except TimeoutError:
            self._finish(call, "timeout", {"error": f"timed out after {tool.timeout_s:g} s"})
        except TypeError as e:  # arguments the function does not take (or a bug in it)
            self._finish(call, "error", {"error": f"TypeError: {e}"})
        except Exception as e:  # a failing tool must not take the link down
            logger.warning("%r: tool %s failed: %s: %s", self, call.name, type(e).__name__, e,
                           extra={"session_id": self.context.session_id})
            self._finish(call, "error", {"error": f"{type(e).__name__}: {e}"})
        else:
            self._finish(call, "ok", result)

    def _finish(self, call: _Call, status: str, result: Any) -> None:
        if self._closed:
            return
        call.status = status
        call.output = _output_text(result)
        took = time.monotonic() - call.started
        TOOL_CALLS.labels(status).inc()
        TOOL_SECONDS.observe(took)
        self._publish(events.ToolResult(
            session_id=self.context.session_id, call_id=call.call_id, name=call.name,
            status=status, output=call.output, duration_s=round(took, 4)))
        self._answer(call.response_id)

    def _barge_in(self) -> None:
        for call in list(self._calls.values()):
            if call.finished:
                continue
            self._barged_in.add(call.response_id)
            if call.tool is not None and call.tool.cancel_on_barge_in and call.task is not None:
                call.task.cancel()  # it may not have started yet: finished here, not there
                self._finish(call, "cancelled", {"error": "cancelled: the user spoke"})

    # -- answering ----------------------------------------------------------------

    def _answer(self, response_id: str) -> None:
        """Once ``response_id`` is done and all its calls finished: outputs, then reply."""
        if response_id not in self._done_responses:
            return
        calls = [c for c in self._calls.values() if c.response_id == response_id]
        if not all(c.finished for c in calls):
            return
        self._done_responses.discard(response_id)
        for call in calls:
            del self._calls[call.call_id]
            self._send({"type": "conversation.item.create",
                        "item": {"type": "function_call_output", "call_id": call.call_id,
                                 "output": call.output}})
        if response_id in self._barged_in:
            self._barged_in.discard(response_id)
            return
        self._send({"type": "response.create"})


def _output_text(result: Any) -> str:
    if isinstance(result, str):
        text = result
    else:
        try:
            text = json.dumps(result, ensure_ascii=False, default=str)
        except (TypeError, ValueError) as e:
            text = json.dumps({"error": f"the tool's result is not JSON: {e}"})
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + "…"
