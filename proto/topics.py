"""Bus topics, general to specific. Build them only here; parse them only here.

    aud/in/<session>/<client>   an edge's decoded microphone frames
    aud/mix/<session>           the mixer's uplink mix, one frame per 20 ms
    aud/model/<session>         the model's voice, paced at real time by the link
    evt/<kind>/<session>        events (kind is the event tag, e.g. turn.start)
    sys/hb/<instance>           service heartbeats
"""

from __future__ import annotations

from dataclasses import dataclass

from .ids import check_id

AUD_IN = b"aud/in/"
AUD_MIX = b"aud/mix/"
AUD_MODEL = b"aud/model/"
EVT = b"evt/"
SYS_HB = b"sys/hb/"


def aud_in(session_id: str, client_id: str) -> bytes:
    return AUD_IN + f"{check_id(session_id, 'session_id')}/{check_id(client_id, 'client_id')}".encode()


def aud_in_session(session_id: str) -> bytes:
    """Prefix of every client's uplink in one session (for SUBSCRIBE)."""
    return AUD_IN + check_id(session_id, "session_id").encode() + b"/"


def aud_mix(session_id: str) -> bytes:
    return AUD_MIX + check_id(session_id, "session_id").encode()


def aud_model(session_id: str) -> bytes:
    return AUD_MODEL + check_id(session_id, "session_id").encode()


def evt(kind: str, session_id: str) -> bytes:
    return EVT + f"{kind}/{check_id(session_id, 'session_id')}".encode()


def sys_hb(instance: str) -> bytes:
    return SYS_HB + instance.encode()


@dataclass(frozen=True)
class Topic:
    channel: str
    "'aud/in', 'aud/mix', 'aud/model', 'evt' or 'sys/hb'."
    session_id: str | None = None
    client_id: str | None = None
    kind: str | None = None
    "Event kind for 'evt', instance for 'sys/hb'."


class TopicError(ValueError):
    pass


def parse(topic: bytes) -> Topic:
    try:
        text = topic.decode("ascii")
    except UnicodeDecodeError as e:
        raise TopicError(f"topic is not ASCII: {topic[:40]!r}") from e
    parts = text.split("/")
    try:
        match parts:
            case ["aud", "in", session, client]:
                return Topic("aud/in", check_id(session), check_id(client))
            case ["aud", ("mix" | "model") as which, session]:
                return Topic(f"aud/{which}", check_id(session))
            case ["evt", kind, session] if kind:
                return Topic("evt", check_id(session), kind=kind)
            case ["sys", "hb", instance] if instance:
                return Topic("sys/hb", kind=instance)
    except ValueError as e:
        raise TopicError(f"bad topic {text!r}: {e}") from e
    raise TopicError(f"unknown topic {text!r}")
