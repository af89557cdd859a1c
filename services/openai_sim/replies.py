"""What the simulated model says: the reply modes.

- ``default``: a short friendly script that cycles.
- ``echo``: play back the user's own utterance (an exact latency probe).
- ``script``: a file of turns, taken in order, each an expected user phrase, the
  reply text and optionally a function call the model makes first.

The simulator does no speech recognition: the n-th user turn is taken to be the
script's n-th turn, and its expected phrase becomes the input transcription.
"""

from __future__ import annotations

import enum
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_LINES = (
    "Hello! This is the voxrelay simulator. I can hear you.",
    "Thanks, I heard that. Tell me more.",
    "Interesting. What else would you like to talk about?",
    "I am a simulated voice, but I am listening. Please go on.",
)
FALLBACK_OUTPUT = "nothing"


class ReplyMode(enum.StrEnum):
    DEFAULT = "default"
    ECHO = "echo"
    SCRIPT = "script"


class ScriptError(ValueError):
    """A script file that cannot be used; the message names the file and the turn."""


@dataclass(frozen=True)
class FunctionCallSpec:
    name: str
    arguments: str
    "JSON text, as the model sends it."


@dataclass(frozen=True)
class ScriptTurn:
    user: str
    reply: str
    function_call: FunctionCallSpec | None = None


@dataclass(frozen=True)
class SpeakReply:
    text: str
    audio: bytes | None = None
    "Ready PCM (echo mode); otherwise the voice speaks ``text``."


@dataclass(frozen=True)
class CallReply:
    name: str
    arguments: str


Reply = SpeakReply | CallReply


@dataclass
class ReplyContext:
    """What the planner may look at when the session asks for a reply."""

    tools: list[dict[str, Any]]
    tool_choice: Any
    last_user_speech: bytes | None
    function_output: Callable[[str], str | None]


def load_script(path: Path) -> list[ScriptTurn]:
    """Read a script (TOML ``[[turn]]`` tables, or a JSON list of turns)."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text).get("turn", [])
    except (OSError, ValueError) as e:
        raise ScriptError(f"{path}: {e}") from e
    if isinstance(raw, dict):
        raw = raw.get("turns", [])
    if not isinstance(raw, list) or not raw:
        raise ScriptError(f"{path}: no turns (expected [[turn]] tables or a JSON list)")
    return [_parse_turn(path, i, t) for i, t in enumerate(raw)]


def _parse_turn(path: Path, index: int, raw: Any) -> ScriptTurn:
    where = f"{path}: turn {index + 1}"
    if not isinstance(raw, dict) or not isinstance(raw.get("reply"), str):
        raise ScriptError(f"{where}: needs a 'reply' string")
    user = raw.get("user", "")
    if not isinstance(user, str):
        raise ScriptError(f"{where}: 'user' must be a string")
    call = raw.get("function_call")
    spec = None
    if call is not None:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ScriptError(f"{where}: 'function_call' needs a 'name'")
        args = call.get("arguments", {})
        spec = FunctionCallSpec(call["name"], args if isinstance(args, str) else json.dumps(args))
    return ScriptTurn(user=user, reply=raw["reply"], function_call=spec)


@dataclass
class _Pending:
    turn: ScriptTurn
    call_id: str | None = None
    called: bool = False


@dataclass
class Replier:
    """Per-session reply planner."""

    mode: ReplyMode
    script: list[ScriptTurn] = field(default_factory=list)
    _next_turn: int = 0
    _next_line: int = 0
    _pending: _Pending | None = None

    def user_turn(self, duration_ms: int) -> str:
        """A user audio turn was committed; returns its input transcription."""
        turn = self._take_turn()
        if turn is not None:
            return turn.user
        return f"[speech {duration_ms / 1000:.1f} s]"

    def user_text(self, text: str) -> None:
        """A user text message was added: take the scripted turn that matches it, if any."""
        if self.mode is not ReplyMode.SCRIPT:
            return
        wanted = _normalise(text)
        for i in range(self._next_turn, len(self.script)):
            if _normalise(self.script[i].user) == wanted:
                self._next_turn = i
                break
        self._take_turn()

    def call_made(self, call_id: str) -> None:
        if self._pending is not None:
            self._pending.call_id = call_id

    def next_reply(self, ctx: ReplyContext) -> Reply:
        if self.mode is ReplyMode.ECHO and ctx.last_user_speech:
            seconds = len(ctx.last_user_speech) / 48_000
            return SpeakReply(text=f"[echo {seconds:.1f} s]", audio=ctx.last_user_speech)
        pending = self._pending
        if pending is not None:
            call = pending.turn.function_call
            if call is not None and not pending.called and _may_call(ctx, call.name):
                pending.called = True
                return CallReply(call.name, call.arguments)
            self._pending = None
            output = FALLBACK_OUTPUT
            if pending.call_id is not None:
                output = ctx.function_output(pending.call_id) or FALLBACK_OUTPUT
            return SpeakReply(text=fill_reply(pending.turn.reply, output))
        if ctx.tool_choice == "required" and ctx.tools:
            return CallReply(ctx.tools[0].get("name", "tool"), "{}")
        line = DEFAULT_LINES[self._next_line % len(DEFAULT_LINES)]
        self._next_line += 1
        return SpeakReply(text=line)

    def _take_turn(self) -> ScriptTurn | None:
        if self.mode is not ReplyMode.SCRIPT or self._next_turn >= len(self.script):
            return None
        turn = self.script[self._next_turn]
        self._next_turn += 1
        self._pending = _Pending(turn)
        return turn


OUTPUT_FIELD = re.compile(r"\{output\.([A-Za-z0-9_]+)\}")


def fill_reply(template: str, output: str) -> str:
    """A scripted reply with the tool's output in it: ``{output}`` is the whole text,
    ``{output.key}`` one field of a JSON object output (empty when it has none)."""
    try:
        fields = json.loads(output)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        fields = {}
    text = OUTPUT_FIELD.sub(lambda m: str(fields.get(m.group(1), "")), template)
    return text.replace("{output}", output)


def _may_call(ctx: ReplyContext, name: str) -> bool:
    if ctx.tool_choice == "none":
        return False
    return any(t.get("type") == "function" and t.get("name") == name for t in ctx.tools)


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()
