"""The conversation so far, kept by the link so a new Realtime connection can carry it on.

A Realtime session's memory is its conversation, and it dies with the call. When the
link has to open a new call under the same conversation (the old one dropped), it gives
the model the conversation back: one ``conversation.item.create`` per completed
transcript entry, oldest first, before the new call is used — user turns as
``message`` items of role ``user`` with ``input_text`` content, the assistant's replies
as role ``assistant`` with ``output_text`` (assistant audio cannot be injected; the GA
API takes its text). Instructions and voice are the call's settings and need no replay.

Entries are the ``transcript.done`` events the translator produces, ordered by when
their turn began (a user's transcription may complete after the reply to it has
begun), and bounded: the newest ``max_entries`` and at most ``max_chars`` of text, so a
long conversation replays its recent part in a bounded number of events.

:class:`ConversationHistory` is pure: fed events, asked for the events to send.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from proto import events

MAX_ENTRIES = 50
MAX_CHARS = 20_000
"Text kept in all (about 5 000 tokens)."
MAX_ENTRY_CHARS = 4_000
"""One entry's text at most (a longer one keeps its beginning): its event, JSON-escaped,
stays well within a data channel message (64 KiB)."""

Role = Literal["user", "assistant"]
CONTENT_TYPE: dict[Role, str] = {"user": "input_text", "assistant": "output_text"}


@dataclass(frozen=True)
class Entry:
    role: Role
    text: str
    started_at: float
    "When the turn began (unix seconds): the entry's place in the conversation."


class ConversationHistory:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_chars: int = MAX_CHARS,
                 max_entry_chars: int = MAX_ENTRY_CHARS) -> None:
        if min(max_entries, max_chars, max_entry_chars) < 1:
            raise ValueError(f"'max_entries', 'max_chars' and 'max_entry_chars' must be >= 1 "
                             f"(got {max_entries}, {max_chars}, {max_entry_chars})")
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.max_entry_chars = min(max_entry_chars, max_chars)
        self._entries: list[Entry] = []
        self._chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries)

    @property
    def chars(self) -> int:
        return self._chars

    def observe(self, event: events.Event) -> None:
        """Keep a completed transcript (user or assistant); ignore every other event."""
        match event:
            case events.TranscriptDone(role="user" | "assistant" as role, text=text,
                                       started_at=started_at) if text.strip():
                self.add(Entry(role, text.strip()[: self.max_entry_chars], started_at))
            case _:
                pass

    def seed(self, entries: Iterable[tuple[str, str, float]]) -> None:
        """Take the conversation so far as recorded — (role, text, started_at) each — when
        a session comes to this link from one that was lost."""
        for role, text, started_at in entries:
            if role in CONTENT_TYPE and text.strip():
                self.add(Entry(role, text.strip()[: self.max_entry_chars], started_at))

    def add(self, entry: Entry) -> None:
        bisect.insort_right(self._entries, entry, key=lambda e: e.started_at)
        self._chars += len(entry.text)
        while len(self._entries) > self.max_entries or self._chars > self.max_chars:
            self._chars -= len(self._entries.pop(0).text)

    def replay(self) -> list[dict[str, Any]]:
        """The client events that give a new Realtime session this conversation, in order
        (without ``event_id``: the sender names each)."""
        return [{"type": "conversation.item.create",
                 "item": {"type": "message", "role": entry.role,
                          "content": [{"type": CONTENT_TYPE[entry.role], "text": entry.text}]}}
                for entry in self._entries]
