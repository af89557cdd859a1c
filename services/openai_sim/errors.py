"""The Realtime API's error shapes: in-session ``error`` events and HTTP error bodies."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import ids

INVALID_REQUEST = "invalid_request_error"


class RealtimeError(Exception):
    """A client event was refused; becomes one ``error`` server event. The session stays open."""

    def __init__(
        self,
        code: str | None,
        message: str,
        *,
        param: str | None = None,
        type: str = INVALID_REQUEST,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.type = type

    def to_event(self, client_event_id: str | None = None) -> dict[str, Any]:
        return {
            "type": "error",
            "event_id": ids.event_id(),
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
                "event_id": client_event_id,
            },
        }


def missing_parameter(param: str) -> RealtimeError:
    return RealtimeError(
        "missing_required_parameter", f"Missing required parameter: '{param}'.", param=param
    )


def unknown_parameter(param: str) -> RealtimeError:
    return RealtimeError("unknown_parameter", f"Unknown parameter: '{param}'.", param=param)


def invalid_type(param: str, expected: str, got: object) -> RealtimeError:
    return RealtimeError(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(got)} instead.",
        param=param,
    )


def invalid_value(param: str, got: object, supported: list[str] | None = None) -> RealtimeError:
    message = f"Invalid value: {got!r}."
    if supported:
        message += " Supported values are: " + ", ".join(f"'{v}'" for v in supported) + "."
    return RealtimeError("invalid_value", message, param=param)


def _type_name(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "an object"
    return type(value).__name__


def http_error(
    status: int,
    message: str,
    *,
    code: str | None,
    type: str = INVALID_REQUEST,
    param: str | None = None,
) -> web.Response:
    """An HTTP error response with OpenAI's body ``{"error": {message, type, param, code}}``."""
    return web.json_response(
        {"error": {"message": message, "type": type, "param": param, "code": code}},
        status=status,
    )
