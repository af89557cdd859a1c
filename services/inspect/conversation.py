"""A recorded conversation as a person reads it, rebuilt from its event log alone.

The event log is the whole record: ``session.started`` / ``session.ended`` frame it,
``client.joined`` / ``client.left`` say who was there, every ``transcript.done`` is a
turn (the user's with the speaker the link attributed it to), ``turn.end`` says whether
a reply completed or was cut off, and ``turn.summary`` where its time went. Nothing
here asks a live service, so a conversation recorded months ago reads the same.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from proto import events


@dataclass
class Turn:
    turn_id: str
    role: str
    speaker: str
    text: str
    started_at: float
    ended_at: float
    status: str = ""
    "For replies: completed, cancelled (interrupted), failed..."
    summary: events.TurnSummary | None = None


@dataclass
class Conversation:
    session_id: str
    name: str = ""
    voice: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    end_reason: str = ""
    clients: dict[str, str] = field(default_factory=dict)
    "client_id → name, in the order they first joined."
    turns: list[Turn] = field(default_factory=list)
    errors: list[events.ErrorEvent] = field(default_factory=list)
    events: int = 0

    @classmethod
    def from_events(cls, session_id: str, log: list[events.AnyEvent]) -> Conversation:
        conv = cls(session_id, events=len(log))
        turns: dict[str, Turn] = {}
        statuses: dict[str, str] = {}
        summaries: dict[str, events.TurnSummary] = {}
        for event in log:
            match event:
                case events.SessionStarted():
                    conv.name, conv.voice = event.name, event.voice
                    conv.started_at = _earliest(conv.started_at, event.ts)
                case events.SessionEnded():
                    conv.ended_at, conv.end_reason = event.ts, event.reason
                case events.ClientJoined():
                    conv.clients.setdefault(event.client_id, event.name or event.client_id[:8])
                case events.TranscriptDone():
                    turns[event.turn_id] = Turn(event.turn_id, event.role, event.speaker,
                                                event.text, event.started_at, event.ended_at)
                case events.TurnEnd() if event.role == "assistant":
                    statuses[event.turn_id] = event.status
                case events.TurnSummary():
                    summaries[event.turn_id] = event
                case events.ErrorEvent():
                    conv.errors.append(event)
                case _:
                    pass
            if event.ts and conv.started_at is None:
                conv.started_at = event.ts
        for turn in turns.values():
            turn.status = statuses.get(turn.turn_id, "")
            turn.summary = summaries.get(turn.turn_id)
        conv.turns = sorted(turns.values(), key=lambda t: (t.started_at, t.ended_at))
        return conv

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def offset(self, at: float) -> float:
        """Seconds since the conversation started."""
        return at - (self.started_at or at)


def _earliest(a: float | None, b: float) -> float:
    return b if a is None or (b and b < a) else a


def clock(at: float | None) -> str:
    """Local wall-clock time of a unix timestamp, to the second."""
    if at is None:
        return "-"
    return dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


def latency(turn: Turn) -> str:
    """Where a reply's time went, in a few words ('' when not measured)."""
    summary = turn.summary
    if summary is None:
        return ""
    parts = []
    if summary.time_to_first_audio_s:
        parts.append(f"first audio {summary.time_to_first_audio_s * 1000:.0f} ms")
    if summary.voice_to_voice_s:
        heard = ", ".join(f"{name} {s * 1000:.0f} ms"
                          for name, s in sorted(summary.voice_to_voice_s.items()))
        parts.append(f"voice to voice: {heard}")
    return " · ".join(parts)


def render_text(conv: Conversation) -> str:
    """``voxrelay sessions show``: the header, then one line per turn."""
    lines = [f"session {conv.session_id}  {conv.name!r}  voice {conv.voice or '-'}",
             f"  started {clock(conv.started_at)}  ended {clock(conv.ended_at)}"
             + (f" ({conv.end_reason})" if conv.end_reason else "")
             + f"  lasted {duration(conv.duration_s)}  {conv.events} events",
             f"  clients: {', '.join(conv.clients.values()) or '-'}", ""]
    width = max((len(t.speaker or t.role) for t in conv.turns), default=9)
    for turn in conv.turns:
        who = turn.speaker or turn.role
        mark = " [interrupted]" if turn.status == "cancelled" else ""
        lines.append(f"{conv.offset(turn.started_at):8.1f} s  {who:<{width}}  {turn.text}{mark}")
        if detail := latency(turn):
            lines.append(f"{'':10}  {'':<{width}}  ({detail})")
    for error in conv.errors:
        lines.append(f"{conv.offset(error.ts):8.1f} s  error {error.code}: {error.message}")
    if not conv.turns:
        lines.append("  (no turns recorded)")
    return "\n".join(lines) + "\n"
