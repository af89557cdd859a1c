"""Control-plane RPC: DEALER → ROUTER, every request answered ``Ok``-like or ``Err``.

Wire: ``[PROTOCOL, body]`` from the client; the ROUTER sees ``[identity, PROTOCOL,
body]`` and replies ``[identity, PROTOCOL, body]``. ``body`` is msgpack of a
tagged union. Clients time out every call and retry only idempotent ones.
"""

from __future__ import annotations

import msgspec

from .events import AnyEvent

PROTOCOL = b"voxrelay.rpc/1"


class Request(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    request_id: str = ""


class Ping(Request, tag="ping"):
    pass


class TranscriptEntry(msgspec.Struct, frozen=True):
    speaker: str
    text: str
    started_at: float
    ended_at: float
    role: str = "user"
    turn_id: str = ""


class Question(msgspec.Struct, frozen=True):
    """One question of an interview (the ``interview`` profile)."""

    domain: str
    difficulty_tier: str
    text: str


class StartSession(Request, tag="start_session"):
    session_id: str
    tenant_id: str = "default"
    name: str = ""
    instructions: str = ""
    voice: str = ""
    record: bool = False
    mixer_audio: str = ""
    "For the link: the endpoint where the session's mixer publishes ``aud/mix``."
    link_audio: str = ""
    "For the mixer: the endpoint where the session's link publishes ``aud/model`` (echo gating)."
    context: list[TranscriptEntry] = []
    """For the link: the conversation so far, oldest first, when a session is resumed on a
    link that does not know it (the one that held it was restarted or died)."""
    profile: str = ""
    "For the link: what kind of conversation ('' the default, 'interview')."
    questions: list[Question] = []
    "For the link, with the interview profile: what to ask, in order."


class StopSession(Request, tag="stop_session"):
    session_id: str
    reason: str = ""


class AddClient(Request, tag="add_client"):
    """Edge: answer a browser's SDP offer. Mixer: start mixing this client's uplink."""

    session_id: str
    client_id: str
    sdp: str = ""
    name: str = ""
    role: str = "speaker"
    transport: str = "track"
    edge_audio: str = ""
    "For the mixer: the endpoint where the edge publishes this client's ``aud/in``."
    link_audio: str = ""
    "For the edge: the endpoint where the session's link publishes ``aud/model``."


class RemoveClient(Request, tag="remove_client"):
    session_id: str
    client_id: str


class GetTranscript(Request, tag="get_transcript"):
    session_id: str
    tenant_id: str = ""
    "Only if the session is this tenant's (``not_found`` otherwise); empty: any tenant."


class GetEvents(Request, tag="get_events"):
    session_id: str
    after_seq: int = 0
    limit: int = 10_000
    tenant_id: str = ""
    "Only if the session is this tenant's (no events otherwise); empty: any tenant."


class ListSessions(Request, tag="list_sessions"):
    """The recorder: the sessions it recorded, newest first (by ``created_at``)."""

    limit: int = 50
    "At most this many (1..500)."
    before: float | None = None
    """Only sessions created strictly before this (unix seconds): the next page after one
    whose last session was created at ``before``."""
    tenant_id: str = ""
    "Only this tenant's sessions; empty: every tenant's."
    session_id: str = ""
    "Only this session (the one summary, or none); empty: any."


class GetOutbox(Request, tag="get_outbox"):
    """Every bus-connected service: the events it published after ``after_seq`` that it
    still holds (its bounded outbox), so a consumer that missed some can fill the gap.

    Answered by the runtime (``services/runtime``) before the service's own handler, so
    it is not part of :data:`AnyRequest`: service handlers never see it."""

    after_seq: int = 0
    limit: int = 1000
    "At most this many events (0: none, only the bounds)."


class MintClientSecret(Request, tag="mint_client_secret"):
    """Link: an ephemeral Realtime key for the session's configuration (direct mode: the
    browser talks to the Realtime API itself; the standard key stays in the link)."""

    session_id: str
    ttl_s: int = 600


class DirectCall(Request, tag="direct_call"):
    """Link: a browser's own WebRTC call to the Realtime API (direct mode). The link posts
    ``sdp`` to the API with ``client_secret`` (the ephemeral key the browser was given),
    attaches the call's sideband WebSocket with the standard key (so the session's events
    are translated, recorded and its tools run here), and answers with the API's SDP
    answer and the call id. ``RemoveClient`` of ``client_id`` hangs the call up."""

    session_id: str
    client_id: str
    sdp: str
    client_secret: str
    name: str = ""


AnyRequest = (
    Ping | StartSession | StopSession | AddClient | RemoveClient | GetTranscript | GetEvents
    | ListSessions | MintClientSecret | DirectCall
)
"What a service's own handler is asked."

RuntimeRequest = GetOutbox
"What the runtime answers for every service."

IDEMPOTENT = (Ping, StopSession, RemoveClient, GetTranscript, GetEvents, ListSessions,
              GetOutbox)


class Reply(msgspec.Struct, frozen=True, kw_only=True, tag_field="result"):
    request_id: str = ""


class Ok(Reply, tag="ok"):
    pass


class Answer(Reply, tag="answer"):
    sdp: str
    edge: str = ""
    call_id: str = ""
    "For ``DirectCall``: the Realtime API's id of the browser's call."


class Transcript(Reply, tag="transcript"):
    entries: list[TranscriptEntry]


class EventLog(Reply, tag="event_log"):
    events: list[AnyEvent]
    next_after_seq: int = 0
    "The cursor for the next page: pass it as ``GetEvents.after_seq``."


class SessionSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded session: its settings, how it ended, and what it holds."""

    session_id: str
    tenant_id: str = "default"
    name: str = ""
    voice: str = ""
    record: bool = False
    created_at: float = 0.0
    ended_at: float | None = None
    end_reason: str | None = None
    user_turns: int = 0
    "Finished user turns in its transcript."
    assistant_turns: int = 0
    speakers: list[str] = []
    "The names heard in its user turns, each once, in the order they first spoke."
    events: int = 0
    "Events recorded for it."


class SessionList(Reply, tag="session_list"):
    sessions: list[SessionSummary]


class Outbox(Reply, tag="outbox"):
    """Events of one producer stream in seq order, each as published (msgpack bytes)."""

    events: list[bytes]
    "Seqs ``max(after_seq + 1, first_seq)`` onwards, consecutive, at most ``limit``."
    first_seq: int
    "The oldest seq still held (``next_seq`` when none): below it, evicted for good."
    next_seq: int
    "The seq the producer's next event will get."
    producer: str = ""
    epoch: int = 0
    "The stream these seqs belong to (``Event.epoch``): another one means a restart."


class Err(Reply, tag="err"):
    code: str
    message: str


class ClientSecret(Reply, tag="client_secret"):
    value: str
    "The ephemeral key (``ek_…``): a browser may hold it, until ``expires_at``."
    expires_at: int
    model: str = ""


AnyReply = Ok | Answer | Transcript | EventLog | SessionList | Outbox | ClientSecret | Err


class RpcError(Exception):
    """A call that came back ``Err`` (or timed out: code 'timeout')."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(AnyRequest | RuntimeRequest)
_reply_decoder = msgspec.msgpack.Decoder(AnyReply)


def encode(message: Request | Reply) -> bytes:
    return _encoder.encode(message)


def decode_request(data: bytes) -> AnyRequest | RuntimeRequest:
    return _request_decoder.decode(data)


def decode_reply(data: bytes) -> AnyReply:
    return _reply_decoder.decode(data)
