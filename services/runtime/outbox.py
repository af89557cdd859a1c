"""A publisher's bounded outbox: the last events it published, by seq, for gap fills.

PUB/SUB drops without telling anyone (a subscriber restarting, a full queue), so every
:class:`~.bus.EventPublisher` keeps what it published and every service answers
``GetOutbox`` from it (zguide's Clone pattern): a consumer that sees a gap in a
producer's ``seq`` asks for what it missed. The outbox is bounded twice, by events
(``VOXRELAY_OUTBOX_EVENTS``, 4096) and by bytes (``VOXRELAY_OUTBOX_BYTES``, 8 MiB),
whichever is reached first; the oldest events go first, and ``first_seq`` in a reply
tells the caller exactly how many it can no longer get.
"""

from __future__ import annotations

from collections import deque

from proto import rpc

DEFAULT_MAX_EVENTS = 4096
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
MAX_EVENTS_PER_REPLY = 1000
MAX_REPLY_BYTES = 1024 * 1024
"A reply carries at most this many bytes of events (at least one event if any is due)."


class EventOutbox:
    """The last events of one producer stream, oldest first, with consecutive seqs."""

    def __init__(self, producer: str = "", epoch: int = 0, *,
                 max_events: int = DEFAULT_MAX_EVENTS, max_bytes: int = DEFAULT_MAX_BYTES
                 ) -> None:
        if max_events < 1:
            raise ValueError(f"'max_events' must be >= 1 (got {max_events})")
        if max_bytes < 1:
            raise ValueError(f"'max_bytes' must be >= 1 (got {max_bytes})")
        self.producer = producer
        self.epoch = epoch
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: deque[bytes] = deque()
        self._first_seq = 1
        self._bytes = 0

    @property
    def first_seq(self) -> int:
        "The oldest seq held (``next_seq`` when empty)."
        return self._first_seq

    @property
    def next_seq(self) -> int:
        return self._first_seq + len(self._events)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._events)

    def add(self, seq: int, body: bytes) -> None:
        """Keep ``body`` as event ``seq`` (the next one), evicting the oldest over the bounds."""
        if seq != self.next_seq:
            if self._events:
                raise ValueError(f"seq {seq} does not follow {self.next_seq - 1}")
            self._first_seq = seq  # the first event held: seqs may start anywhere
        self._events.append(body)
        self._bytes += len(body)
        while len(self._events) > self.max_events or (
                self._bytes > self.max_bytes and len(self._events) > 1):
            self._bytes -= len(self._events.popleft())
            self._first_seq += 1

    def read(self, after_seq: int, limit: int) -> list[bytes]:
        """Consecutive events from ``max(after_seq + 1, first_seq)``: at most ``limit`` and
        :data:`MAX_REPLY_BYTES` (but at least one if any is due and ``limit`` > 0)."""
        start = max(after_seq + 1, self._first_seq) - self._first_seq
        found: list[bytes] = []
        size = 0
        for index in range(start, min(len(self._events), start + max(0, limit))):
            body = self._events[index]
            if found and size + len(body) > MAX_REPLY_BYTES:
                break
            found.append(body)
            size += len(body)
        return found

    def answer(self, request: rpc.GetOutbox) -> rpc.Outbox:
        """The ``GetOutbox`` reply (raises ``RpcError`` on bad arguments)."""
        if request.after_seq < 0 or not 0 <= request.limit <= MAX_EVENTS_PER_REPLY:
            raise rpc.RpcError("bad_request", f"'after_seq' must be >= 0 (got "
                               f"{request.after_seq}) and 'limit' in 0..{MAX_EVENTS_PER_REPLY} "
                               f"(got {request.limit})")
        return rpc.Outbox(events=self.read(request.after_seq, request.limit),
                          first_seq=self._first_seq, next_seq=self.next_seq,
                          producer=self.producer, epoch=self.epoch)
