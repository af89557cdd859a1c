"""Realtime API server events, decoded once at the boundary into typed Structs.

Only the events the link acts on get a Struct (with only the fields it reads; the
rest are ignored by msgspec). Every other event becomes :class:`OtherEvent`,
which says whether the type is one the GA API documents (``known``) so that new,
unknown types can be counted. Text that is not a JSON object with a ``type``, or a
known event missing a field the link needs, raises :class:`MalformedEvent`.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec


class ServerEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    event_id: str = ""


class SessionCreated(ServerEvent, tag="session.created"):
    pass


class SessionUpdated(ServerEvent, tag="session.updated"):
    pass


class SpeechStarted(ServerEvent, tag="input_audio_buffer.speech_started"):
    item_id: str
    audio_start_ms: int = 0


class SpeechStopped(ServerEvent, tag="input_audio_buffer.speech_stopped"):
    item_id: str
    audio_end_ms: int = 0


class InputCommitted(ServerEvent, tag="input_audio_buffer.committed"):
    item_id: str


class InputTranscriptionCompleted(
    ServerEvent, tag="conversation.item.input_audio_transcription.completed"
):
    item_id: str
    transcript: str | None = None


class InputTranscriptionFailed(ServerEvent, tag="conversation.item.input_audio_transcription.failed"):
    item_id: str


class OutputItem(msgspec.Struct, frozen=True):
    id: str | None = None
    type: str | None = None


class ErrorDetail(msgspec.Struct, frozen=True):
    message: str | None = None
    code: str | None = None
    type: str | None = None
    event_id: str | None = None
    "The client event that caused it, if any."


class StatusDetails(msgspec.Struct, frozen=True):
    type: str | None = None
    reason: str | None = None
    error: ErrorDetail | None = None


class Response(msgspec.Struct, frozen=True):
    id: str
    status: str = "in_progress"
    status_details: StatusDetails | None = None
    output: list[OutputItem] | None = None


class ResponseCreated(ServerEvent, tag="response.created"):
    response: Response


class OutputItemAdded(ServerEvent, tag="response.output_item.added"):
    response_id: str
    item: OutputItem


class OutputAudioDelta(ServerEvent, tag="response.output_audio.delta"):
    """Model audio as base64 (WebSocket only; over WebRTC it is on the track)."""

    response_id: str = ""


class OutputTranscriptDelta(ServerEvent, tag="response.output_audio_transcript.delta"):
    response_id: str
    item_id: str
    delta: str


class OutputTranscriptDone(ServerEvent, tag="response.output_audio_transcript.done"):
    response_id: str
    item_id: str
    transcript: str | None = None


class OutputAudioStarted(ServerEvent, tag="output_audio_buffer.started"):
    response_id: str


class OutputAudioStopped(ServerEvent, tag="output_audio_buffer.stopped"):
    response_id: str


class OutputAudioCleared(ServerEvent, tag="output_audio_buffer.cleared"):
    response_id: str = ""


class ResponseDone(ServerEvent, tag="response.done"):
    response: Response


class FunctionCallArgumentsDone(ServerEvent, tag="response.function_call_arguments.done"):
    """The model called a tool: its complete ``arguments`` (JSON text)."""

    response_id: str
    call_id: str
    name: str
    arguments: str = ""
    item_id: str = ""


class ServerError(ServerEvent, tag="error"):
    error: ErrorDetail


@dataclass(frozen=True)
class OtherEvent:
    """A server event the link records but does not act on."""

    type: str
    known: bool
    "False for a type the GA API does not document (a new event): counted."


AnyServerEvent = (
    SessionCreated | SessionUpdated | SpeechStarted | SpeechStopped | InputCommitted
    | InputTranscriptionCompleted | InputTranscriptionFailed | ResponseCreated | OutputItemAdded
    | OutputAudioDelta | OutputTranscriptDelta | OutputTranscriptDone | OutputAudioStarted
    | OutputAudioStopped | OutputAudioCleared | ResponseDone | FunctionCallArgumentsDone
    | ServerError
)

KNOWN_TYPES = frozenset({
    "conversation.created", "conversation.item.added", "conversation.item.created",
    "conversation.item.deleted", "conversation.item.done",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.segment", "conversation.item.retrieved",
    "conversation.item.truncated", "input_audio_buffer.cleared",
    "input_audio_buffer.dtmf_event_received", "input_audio_buffer.timeout_triggered",
    "mcp_list_tools.completed", "mcp_list_tools.failed", "mcp_list_tools.in_progress",
    "rate_limits.updated", "response.content_part.added", "response.content_part.done",
    "response.function_call_arguments.delta",
    "response.mcp_call.completed", "response.mcp_call.failed", "response.mcp_call.in_progress",
    "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
    "response.output_audio.done", "response.output_item.done", "response.output_text.delta",
    "response.output_text.done",
})
"GA server events without a Struct here (from the official SDK's catalog): recorded only."


class MalformedEvent(ValueError):
    """Text from the Realtime API that is not a usable server event."""


class _Envelope(msgspec.Struct):
    type: str


_decoder = msgspec.json.Decoder(AnyServerEvent)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_TAGS = frozenset(cls.__struct_config__.tag for cls in AnyServerEvent.__args__)  # type: ignore[attr-defined]


def decode(text: str | bytes) -> AnyServerEvent | OtherEvent:
    try:
        return _decoder.decode(text)
    except msgspec.ValidationError as e:
        kind = _type_of(text)
        if kind in _TAGS:
            raise MalformedEvent(f"{kind}: {e}") from e
        return OtherEvent(kind, known=kind in KNOWN_TYPES)
    except msgspec.DecodeError as e:
        raise MalformedEvent(f"not JSON: {e}") from e


def _type_of(text: str | bytes) -> str:
    try:
        return _envelope_decoder.decode(text).type
    except msgspec.DecodeError as e:  # ValidationError is a DecodeError
        raise MalformedEvent(f"no event type: {e}") from e
