"""Events: a tagged union with stable tags, msgpack on the bus, JSON to browsers.

Every event names its session, its producer (a service instance id), the producer's
sequence number and when it was produced. Decode once at the boundary
(:func:`decode`), then ``match`` on the class. New fields only with defaults;
unknown fields are ignored, so older services keep working.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec

Role = Literal["user", "assistant"]
AiStateName = Literal["idle", "listening", "thinking", "speaking"]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    session_id: str
    producer: str = ""
    "Instance id of the service that produced the event (e.g. 'openai_link-1')."
    seq: int = 0
    "The producer's sequence number: per producer, increasing by one."
    epoch: int = 0
    """The producer's stream: ``time.time_ns()`` when its publisher started (0: unknown).

    A restarted producer keeps its instance id but starts ``seq`` at 1 again under a new
    epoch, so ``(producer, epoch, seq)`` names one event for good."""
    ts: float = 0.0
    "Unix time in seconds when the event was produced."


class SessionStarted(Event, tag="session.started"):
    name: str = ""
    instructions: str = ""
    voice: str = ""
    tenant_id: str = "default"
    "Whose session it is (signaling's access control; every row recorded for it)."


class SessionEnded(Event, tag="session.ended"):
    reason: str = ""


class ClientJoined(Event, tag="client.joined"):
    client_id: str
    name: str = ""
    role: str = "speaker"
    transport: str = "track"
    edge: str = ""


class ClientLeft(Event, tag="client.left"):
    client_id: str
    reason: str = ""


class ClientMuted(Event, tag="client.muted"):
    """A client muted or unmuted its microphone (its edge publishes none of it while muted)."""

    client_id: str
    muted: bool = True


class VoiceActivity(Event, tag="voice.activity"):
    """A client started or stopped speaking, as its mixer hears it (after echo gating).

    Published on transitions only. ``at`` is the capture time (unix seconds) of the first
    speech frame (``active``) or the end of the last one (not ``active``).
    """

    client_id: str
    active: bool
    at: float = 0.0


class TurnStart(Event, tag="turn.start"):
    turn_id: str
    role: Role
    speaker: str = ""


class TurnEnd(Event, tag="turn.end"):
    turn_id: str
    role: Role
    status: str = "completed"
    "completed, cancelled (barge-in), failed or incomplete."


class AiState(Event, tag="ai.state"):
    state: AiStateName


class AiInterrupted(Event, tag="ai.interrupted"):
    """The user spoke over the AI: every edge drops queued model audio at once."""

    response_id: str = ""
    played_ms: int = 0


class TranscriptDelta(Event, tag="transcript.delta"):
    turn_id: str
    role: Role
    delta: str


class TranscriptDone(Event, tag="transcript.done"):
    turn_id: str
    role: Role
    text: str
    speaker: str = ""
    "The client's name for user turns (joined with '+' when several spoke); 'assistant'."
    started_at: float = 0.0
    ended_at: float = 0.0


class ErrorEvent(Event, tag="error"):
    code: str
    message: str
    source: str = ""


class LatencyPing(Event, tag="latency.ping"):
    ping_id: str
    client_id: str = ""
    sent_at: float = 0.0
    rtt_ms: float | None = None


class TurnHeard(Event, tag="turn.heard"):
    """A client began hearing the AI's reply: the voice-to-voice latency, at its edge.

    ``voice_to_voice_s`` runs from the end of the user's speech (its capture time, from
    ``voice.activity``) to the reply's first audio frame handed to this client's encoder.
    """

    client_id: str
    voice_to_voice_s: float
    speech_ended_at: float = 0.0


class TurnSummary(Event, tag="turn.summary"):
    """Where one exchange's time went: published by the link when the AI's turn ends.

    Times are seconds; 0.0 or an empty map means not measured (no user speech before a
    reply, a reply without audio, no client heard it).
    """

    turn_id: str
    "The assistant turn (as in its turn.start/turn.end)."
    status: str = "completed"
    user_turn_id: str = ""
    speaker: str = ""
    "Who spoke in the user turn it answers."
    speech_ended_at: float = 0.0
    "Capture time (unix seconds) at the edge of the user's last speech frame."
    time_to_first_audio_s: float = 0.0
    "Realtime API: speech stopped (or response.create) → the first model audio at the link."
    uplink_age_s: float = 0.0
    "Median age of the microphone mix when it reached the model during the user turn."
    voice_to_voice_s: dict[str, float] = {}
    "Per client name: speech end → first reply audio handed to that client (from turn.heard)."


class RealtimeEvent(Event, tag="realtime.event"):
    """A Realtime API server event as received (audio deltas excluded), for the record."""

    event_type: str
    data: str
    "The event's JSON text."


class QuestionReady(Event, tag="question.ready"):
    """The interviewer moves to a question (the ``interview`` profile): clients show it."""

    idx: int
    "0-based position in the session's question list."
    domain: str
    difficulty_tier: str = msgspec.field(name="difficultyTier")
    text: str


class ToolCall(Event, tag="tool.call"):
    """The model called a tool; the link runs it."""

    call_id: str
    name: str
    arguments: str
    "As the model sent it (JSON text)."
    response_id: str = ""


class ToolResult(Event, tag="tool.result"):
    """A tool call's outcome, as returned to the model (``function_call_output``)."""

    call_id: str
    name: str
    status: str
    "ok, error (the tool failed or was called wrongly), timeout, cancelled (barge-in), unknown."
    output: str
    "The output text the model was given."
    duration_s: float = 0.0


AnyEvent = (
    SessionStarted | SessionEnded | ClientJoined | ClientLeft | ClientMuted | VoiceActivity
    | TurnStart | TurnEnd | AiState | AiInterrupted | TranscriptDelta | TranscriptDone
    | ErrorEvent | LatencyPing | TurnHeard | TurnSummary | RealtimeEvent | QuestionReady
    | ToolCall | ToolResult
)

CLIENT_FACING = frozenset({
    "client.joined", "client.left", "client.muted", "voice.activity", "turn.start", "turn.end",
    "ai.state", "ai.interrupted", "transcript.delta", "transcript.done", "error", "latency.ping",
    "question.ready",
})
"Tags forwarded to browsers on the ``events`` DataChannel."

_BASE_FIELDS = ("session_id", "producer", "seq", "epoch")


class EventError(ValueError):
    """Bytes that are not a known event (dropped and counted by the receiver)."""


_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_decoder = msgspec.msgpack.Decoder(AnyEvent)
_json_encoder = msgspec.json.Encoder()


def tag(event: Event) -> str:
    return type(event).__struct_config__.tag  # type: ignore[return-value]


def encode(event: Event) -> bytes:
    return _msgpack_encoder.encode(event)


def decode(data: bytes) -> AnyEvent:
    try:
        return _msgpack_decoder.decode(data)
    except msgspec.DecodeError as e:
        raise EventError(str(e)) from e


def to_client_json(event: Event) -> str:
    """The browser shape: ``{"type", "ts", "payload"}`` (payload: the event's own fields,
    by their wire names)."""
    fields = msgspec.to_builtins(event)
    payload = {k: v for k, v in fields.items() if k not in _BASE_FIELDS and k not in ("ts", "type")}
    return _json_encoder.encode({"type": tag(event), "ts": event.ts, "payload": payload}).decode()


def to_json(event: Event) -> str:
    """The record shape: the event's fields flat, with its ``type`` (one JSON line)."""
    return _json_encoder.encode(event).decode()


class Stamper:
    """Fills producer, epoch, per-producer seq and ts on events a service emits."""

    def __init__(self, producer: str, epoch: int | None = None) -> None:
        self.producer = producer
        self.epoch = time.time_ns() if epoch is None else epoch
        self._seq = 0

    @property
    def last_seq(self) -> int:
        "The seq of the last event stamped (0: none yet)."
        return self._seq

    def stamp(self, event: Event) -> Event:
        self._seq += 1
        return msgspec.structs.replace(event, producer=self.producer, epoch=self.epoch,
                                       seq=self._seq, ts=time.time())


def describe(event: Any) -> str:
    return f"{tag(event)}#{event.seq}@{event.producer}"
