"""GA session configuration: defaults, strict validation of updates, merging.

The real service rejects a whole ``session.update`` when any field is unknown
(beta-shaped fields such as ``session.voice`` included) or when ``session.type``
is missing; this module does the same and names the offending path in the error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from . import errors
from .errors import RealtimeError

DEFAULT_MODEL = "gpt-realtime"
DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. "
    "Act like a human, but remember that you aren't a human."
)
VOICES = (
    "alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer", "verse",
)
PCM_FORMAT = {"type": "audio/pcm", "rate": 24000}
SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 200,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}

Validator = Callable[[str, Any], Any]
Schema = dict[str, "Validator | Schema"]


def default_session(model: str = DEFAULT_MODEL) -> dict[str, Any]:
    """The session a fresh connection starts with (as in captures of the real service)."""
    return {
        "type": "realtime",
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "audio": {
            "input": {
                "format": dict(PCM_FORMAT),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(SERVER_VAD_DEFAULTS),
            },
            "output": {"format": dict(PCM_FORMAT), "voice": "alloy", "speed": 1.0},
        },
        "include": None,
    }


# -- leaf validators ---------------------------------------------------------------


def _any(path: str, value: Any) -> Any:
    return value


def _string(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise errors.invalid_type(path, "a string", value)
    return value


def _boolean(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise errors.invalid_type(path, "a boolean", value)
    return value


def _number(lo: float, hi: float) -> Validator:
    def check(path: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise errors.invalid_type(path, "a number", value)
        if not lo <= value <= hi:
            raise RealtimeError(
                "decimal_out_of_range" if isinstance(value, float) else "integer_out_of_range",
                f"Invalid '{path}': number must be between {lo} and {hi}, got {value}.",
                param=path,
            )
        return value

    return check


def _optional_int(lo: int, hi: int) -> Validator:
    def check(path: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.invalid_type(path, "an integer", value)
        if not lo <= value <= hi:
            raise RealtimeError(
                "integer_out_of_range",
                f"Invalid '{path}': integer must be between {lo} and {hi}, got {value}.",
                param=path,
            )
        return value

    return check


def _one_of(*choices: str) -> Validator:
    def check(path: str, value: Any) -> str:
        if value not in choices:
            raise errors.invalid_value(path, value, list(choices))
        return value

    return check


def _modalities(path: str, value: Any) -> list[str]:
    if value not in (["audio"], ["text"]):
        raise RealtimeError(
            "invalid_value",
            f"Invalid value for '{path}': expected ['audio'] or ['text'], got {value!r}.",
            param=path,
        )
    return list(value)


def _audio_format(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.invalid_type(path, "an object", value)
    _reject_unknown(path, value, ("type", "rate"))
    kind = value.get("type")
    if kind != "audio/pcm":
        # audio/pcmu and audio/pcma exist in the API; the simulator speaks PCM16 only.
        raise errors.invalid_value(f"{path}.type", kind, ["audio/pcm"])
    rate = value.get("rate", 24000)
    if rate != 24000:
        raise errors.invalid_value(f"{path}.rate", rate, ["24000"])
    return dict(PCM_FORMAT)


def _voice(path: str, value: Any) -> str | dict[str, Any]:
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return {"id": value["id"]}
    if not isinstance(value, str) or not value:
        raise errors.invalid_type(path, "a string", value)
    return value


def _max_tokens(path: str, value: Any) -> int | str:
    if value == "inf":
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.invalid_type(path, "an integer or 'inf'", value)
    if not 1 <= value <= 4096:
        raise RealtimeError(
            "integer_out_of_range",
            f"Invalid '{path}': integer must be between 1 and 4096, got {value}.",
            param=path,
        )
    return value


def _nullable(schema: Schema) -> Validator:
    def check(path: str, value: Any) -> Any:
        return None if value is None else validate(path, value, schema)

    return check


def _turn_detection(path: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.invalid_type(path, "an object", value)
    kind = value.get("type", "server_vad")
    if kind == "server_vad":
        merged = dict(SERVER_VAD_DEFAULTS)
        merged.update(validate(path, value, _SERVER_VAD))
    elif kind == "semantic_vad":
        merged = dict(SEMANTIC_VAD_DEFAULTS)
        merged.update(validate(path, value, _SEMANTIC_VAD))
    else:
        raise errors.invalid_value(f"{path}.type", kind, ["server_vad", "semantic_vad"])
    return merged


def _tools(path: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise errors.invalid_type(path, "an array", value)
    tools = []
    for i, tool in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(tool, dict):
            raise errors.invalid_type(where, "an object", tool)
        kind = tool.get("type", "function")
        if kind == "function":
            checked = validate(where, tool, _FUNCTION_TOOL)
            if "name" not in checked:
                raise errors.missing_parameter(f"{where}.name")
            checked["type"] = "function"
            tools.append(checked)
        elif kind == "mcp":
            tools.append(dict(tool))
        else:
            raise errors.invalid_value(f"{where}.type", kind, ["function", "mcp"])
    return tools


def _tool_choice(path: str, value: Any) -> str | dict[str, Any]:
    if value in ("auto", "none", "required"):
        return value
    if isinstance(value, dict) and value.get("type") in ("function", "mcp"):
        return dict(value)
    raise errors.invalid_value(path, value, ["auto", "none", "required"])


_SERVER_VAD: Schema = {
    "type": _any,
    "threshold": _number(0.0, 1.0),
    "prefix_padding_ms": _optional_int(0, 10_000),
    "silence_duration_ms": _optional_int(0, 10_000),
    "idle_timeout_ms": _optional_int(5_000, 30_000),
    "create_response": _boolean,
    "interrupt_response": _boolean,
}
_SEMANTIC_VAD: Schema = {
    "type": _any,
    "eagerness": _one_of("low", "medium", "high", "auto"),
    "create_response": _boolean,
    "interrupt_response": _boolean,
}
_TRANSCRIPTION: Schema = {
    "model": _string,
    "language": _string,
    "prompt": _string,
    "delay": _any,
    "keywords": _any,
    "languages": _any,
}
_FUNCTION_TOOL: Schema = {
    "type": _any,
    "name": _string,
    "description": _string,
    "parameters": _any,
}
SESSION_SCHEMA: Schema = {
    "type": _one_of("realtime", "transcription"),
    "model": _string,
    "output_modalities": _modalities,
    "instructions": _string,
    "audio": {
        "input": {
            "format": _audio_format,
            "transcription": _nullable(_TRANSCRIPTION),
            "noise_reduction": _nullable({"type": _one_of("near_field", "far_field")}),
            "turn_detection": _turn_detection,
        },
        "output": {
            "format": _audio_format,
            "voice": _voice,
            "speed": _number(0.25, 1.5),
        },
    },
    "tools": _tools,
    "tool_choice": _tool_choice,
    "max_output_tokens": _max_tokens,
    "tracing": _any,
    "truncation": _any,
    "prompt": _any,
    "include": _any,
    "reasoning": _any,
    "parallel_tool_calls": _boolean,
}
RESPONSE_SCHEMA: Schema = {
    "audio": {"output": {"format": _audio_format, "voice": _voice}},
    "conversation": _one_of("auto", "none"),
    "input": _any,
    "instructions": _string,
    "max_output_tokens": _max_tokens,
    "metadata": _any,
    "output_modalities": _modalities,
    "prompt": _any,
    "reasoning": _any,
    "tool_choice": _tool_choice,
    "tools": _tools,
    "parallel_tool_calls": _boolean,
}

# Fields whose value replaces the old one whole instead of merging into it.
_REPLACED = {"turn_detection", "transcription", "noise_reduction", "format", "voice"}


def _reject_unknown(path: str, value: dict[str, Any], known: Any) -> None:
    for key in value:
        if key not in known:
            raise errors.unknown_parameter(f"{path}.{key}")


def validate(path: str, value: Any, schema: Schema) -> dict[str, Any]:
    """Check ``value`` against ``schema``; return the normalised fields that were given."""
    if not isinstance(value, dict):
        raise errors.invalid_type(path, "an object", value)
    _reject_unknown(path, value, schema)
    checked: dict[str, Any] = {}
    for key, field in value.items():
        rule = schema[key]
        where = f"{path}.{key}"
        checked[key] = validate(where, field, rule) if isinstance(rule, dict) else rule(where, field)
    return checked


def validate_session_update(session: Any, *, require_type: bool = True) -> dict[str, Any]:
    """Validate the ``session`` of a ``session.update`` (or a call/secret request)."""
    if not isinstance(session, dict):
        raise errors.invalid_type("session", "an object", session)
    if require_type and "type" not in session:
        raise errors.missing_parameter("session.type")
    return validate("session", session, SESSION_SCHEMA)


def merge(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A new config: ``update`` applied onto a copy of ``current``."""
    result = copy.deepcopy(current)
    _merge_into(result, update)
    return result


def _merge_into(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict) and key not in _REPLACED:
            _merge_into(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
