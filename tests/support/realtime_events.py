"""Validation of server events against the official SDK's GA models."""

from __future__ import annotations

from typing import Annotated, Any

from openai.types.realtime import RealtimeServerEvent
from pydantic import Field, TypeAdapter

_server_event = TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])


def validate_server_event(event: dict[str, Any]) -> Any:
    """Raises pydantic.ValidationError when the event is not a valid GA server event."""
    return _server_event.validate_python(event)
