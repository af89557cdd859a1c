"""The recorder's durable store: what it stores and the interface every backend offers.

:class:`Store` is the whole interface the rest of the recorder uses. Two backends
implement it on the same SQL (``sql_store.py``): SQLite (``sqlite_store.py``, the
default) and PostgreSQL (``postgres_store.py``, by ``VOXRELAY_DATABASE_URL``; see
``database.py``). A store is synchronous and not thread-safe: one thread owns it (see
``writer.py``). Writes arrive as batches of :data:`Write` items, applied in order in one
transaction:

- an event becomes a row of ``events`` (``body`` is ``events.to_json``), and
  ``transcript.done`` also upserts the ``transcript`` row of its (session, turn): the
  latest one for a turn wins. ``session.started`` / ``session.ended`` update ``sessions``.
  Events of sessions the recorder never heard of are stored all the same.
- :class:`OpenSession` / :class:`CloseSession` are the ``StartSession`` / ``StopSession``
  RPCs. Closing is idempotent: the first end time and reason stay.
- An event is stored once per ``(producer, epoch, seq)`` (when ``epoch`` is known): the
  same event from a gap fill and from the bus is kept once, and a duplicate has no side
  effects. :class:`StreamMark` records how far a producer stream is complete when events
  lost for good are skipped, so a restarted recorder does not look for them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from proto import events, rpc


@dataclass(frozen=True)
class OpenSession:
    """``StartSession``: insert or replace the session row (an ended session restarts)."""

    session_id: str
    name: str
    instructions: str
    voice: str
    record: bool
    at: float
    tenant_id: str = "default"


@dataclass(frozen=True)
class CloseSession:
    """``StopSession``: mark the session ended, once."""

    session_id: str
    reason: str
    at: float


@dataclass(frozen=True)
class StreamMark:
    """A producer stream's events up to ``contiguous`` are all stored or lost for good
    (``lost`` more of them evicted from its outbox before they could be fetched)."""

    producer: str
    epoch: int
    contiguous: int
    lost: int


Write = events.AnyEvent | OpenSession | CloseSession | StreamMark


class StoreError(RuntimeError):
    """A batch could not be written, or the database could not be opened (the cause is
    chained)."""


class Store(Protocol):
    open_sessions: int
    "Sessions started and not ended, as of the last commit."

    def write(self, writes: Sequence[Write]) -> None:
        """Apply every write in one transaction, or none (raises :class:`StoreError`)."""

    def write_each(self, writes: Sequence[Write]) -> list[int]:
        """Apply the writes one by one in one transaction, skipping any that fails;
        returns the indexes of those skipped (raises :class:`StoreError` if the commit fails)."""

    def transcript(self, session_id: str, tenant_id: str = ""
                   ) -> list[rpc.TranscriptEntry] | None:
        """Ordered by start time, then arrival; ``None`` for a session never heard of (or,
        with ``tenant_id``, not that tenant's)."""

    def events(self, session_id: str, after_id: int, limit: int, tenant_id: str = ""
               ) -> tuple[list[events.AnyEvent], int]:
        """The session's events in recorded order, with a row id above ``after_id``, and
        the last row id read (the cursor for the next page; ``after_id`` when none). With
        ``tenant_id``, only that tenant's."""

    def sessions(self, limit: int, before_created_at: float | None, tenant_id: str = "",
                 session_id: str = "") -> list[rpc.SessionSummary]:
        """At most ``limit`` sessions, newest first (by creation time), created strictly
        before ``before_created_at`` if given (the next page: the last one's creation time);
        only ``tenant_id``'s and only ``session_id`` when given."""

    def contiguous(self, producer: str, epoch: int) -> int:
        """The highest seq of the stream up to which every event is stored or marked lost."""

    def close(self) -> None: ...


def describe(write: Write) -> str:
    """A write, briefly, for a log line."""
    if isinstance(write, events.Event):
        return events.describe(write)
    if isinstance(write, StreamMark):
        return f"StreamMark({write.producer}, {write.epoch}, {write.contiguous})"
    return f"{type(write).__name__}({write.session_id})"
