"""The publisher's bounded outbox and the recorder's per-stream gap bookkeeping."""

from __future__ import annotations

import msgspec
import pytest

from proto import events, ids, rpc
from services.recorder.gaps import Gaps
from services.recorder.store import StreamMark
from services.runtime.outbox import MAX_REPLY_BYTES, EventOutbox
from tests.support.stores import StoreFactory

EPOCH = 1_700_000_000_000_000_000


def filled(outbox: EventOutbox, count: int, size: int = 10) -> EventOutbox:
    for seq in range(outbox.next_seq, outbox.next_seq + count):
        outbox.add(seq, seq.to_bytes(4, "big") * (size // 4))
    return outbox


def test_outbox_keeps_the_last_events_up_to_its_event_bound() -> None:
    outbox = filled(EventOutbox("p-1", EPOCH, max_events=100), 250)
    assert (len(outbox), outbox.first_seq, outbox.next_seq) == (100, 151, 251)
    reply = outbox.answer(rpc.GetOutbox(after_seq=10, limit=30))
    assert (reply.first_seq, reply.next_seq, reply.epoch, reply.producer) == (151, 251, EPOCH,
                                                                             "p-1")
    assert [int.from_bytes(b[:4], "big") for b in reply.events] == list(range(151, 181))
    tail = outbox.answer(rpc.GetOutbox(after_seq=240, limit=1000))
    assert [int.from_bytes(b[:4], "big") for b in tail.events] == list(range(241, 251))
    assert outbox.answer(rpc.GetOutbox(after_seq=250)).events == []


def test_outbox_evicts_by_bytes_first_when_events_are_big() -> None:
    outbox = filled(EventOutbox(max_events=1000, max_bytes=1000), 50, size=100)
    assert len(outbox) == 10 and outbox.size_bytes == 1000 and outbox.first_seq == 41
    huge = EventOutbox(max_bytes=10)
    huge.add(1, b"x" * 100)  # one event bigger than the bound is still kept alone
    huge.add(2, b"y" * 100)
    assert (len(huge), huge.first_seq) == (1, 2)


def test_outbox_reply_is_bounded_in_bytes_and_bounds_only_with_limit_zero() -> None:
    outbox = filled(EventOutbox(max_bytes=8 * MAX_REPLY_BYTES), 5, size=MAX_REPLY_BYTES // 2)
    assert len(outbox.answer(rpc.GetOutbox(after_seq=0, limit=1000)).events) == 2
    bounds = outbox.answer(rpc.GetOutbox(after_seq=0, limit=0))
    assert (bounds.events, bounds.first_seq, bounds.next_seq) == ([], 1, 6)
    with pytest.raises(rpc.RpcError):
        outbox.answer(rpc.GetOutbox(after_seq=-1))
    with pytest.raises(ValueError, match="does not follow"):
        outbox.add(9, b"")


def test_gaps_track_the_highest_contiguous_seq_per_stream() -> None:
    gaps = Gaps()
    for seq in (1, 2, 3):
        assert gaps.observe("p", EPOCH, seq).new
    stream = gaps.streams["p"]
    assert stream.contiguous == 3 and stream.complete
    assert not gaps.observe("p", EPOCH, 2).new  # a duplicate
    gaps.observe("p", EPOCH, 6)
    gaps.observe("p", EPOCH, 7)
    assert (stream.contiguous, stream.highest, stream.missing()) == (3, 7, 2)
    assert gaps.needing_fill() == ["p"]
    gaps.observe("p", EPOCH, 4)
    assert stream.advance(5) == 1  # seq 5 never came: lost; 6 and 7 are absorbed
    assert stream.contiguous == 7 and stream.complete and gaps.needing_fill() == []


def test_a_newer_epoch_starts_a_new_stream_and_an_older_one_is_not_tracked() -> None:
    gaps = Gaps()
    for seq in (1, 2, 5):
        gaps.observe("p", EPOCH, seq)
    observed = gaps.observe("p", EPOCH + 1, 1)
    assert observed.ended is not None and observed.ended.missing() == 2
    assert gaps.streams["p"].epoch == EPOCH + 1 and gaps.streams["p"].contiguous == 1
    late = gaps.observe("p", EPOCH, 3)
    assert late.new and late.stream is None
    assert gaps.observe("q", 0, 7).stream is None  # no epoch: never tracked


def test_a_stream_first_seen_mid_way_waits_for_the_store() -> None:
    gaps = Gaps()
    gaps.observe("p", EPOCH, 41)
    gaps.observe("p", EPOCH, 42)
    stream = gaps.streams["p"]
    assert stream.contiguous is None and gaps.needing_fill() == ["p"]
    stream.load(39)
    assert (stream.contiguous, stream.missing()) == (39, 1)
    gaps.observe("p", EPOCH, 40)
    assert stream.contiguous == 42 and stream.complete


def stamped(session_id: str, seq: int, epoch: int = EPOCH) -> events.AnyEvent:
    event = events.TranscriptDone(session_id=session_id, turn_id="t1", role="user",
                                  text=f"v{seq}", started_at=1.0, ended_at=2.0)
    return msgspec.structs.replace(event, producer="p-1", epoch=epoch, seq=seq, ts=1.0)


def test_store_keeps_one_row_per_stream_seq_and_knows_where_it_is_complete(
        store_factory: StoreFactory) -> None:
    store = store_factory()
    sid = ids.new_id()
    try:
        store.write([stamped(sid, seq) for seq in (1, 2, 3, 5, 6)])
        store.write([stamped(sid, 3), stamped(sid, 2)])  # a fill overlapping the live stream
        assert [e.seq for e in store.events(sid, 0, 100)[0]] == [1, 2, 3, 5, 6]
        assert store.transcript(sid)[0].text == "v6"  # a duplicate has no side effects
        assert store.contiguous("p-1", EPOCH) == 3
        store.write([StreamMark("p-1", EPOCH, 4, 1)])  # seq 4 lost for good
        assert store.contiguous("p-1", EPOCH) == 6
        store.write([StreamMark("p-1", EPOCH, 2, 1)])  # an older mark never moves it back
        assert store.contiguous("p-1", EPOCH) == 6
        assert store_factory.query("SELECT contiguous, lost FROM streams") == [(4, 2)]
        assert store.contiguous("p-1", EPOCH + 1) == 0
        store.write([stamped(sid, 1, epoch=EPOCH + 1)])  # the producer restarted
        assert store.contiguous("p-1", EPOCH + 1) == 1
        assert len(store.events(sid, 0, 100)[0]) == 6
    finally:
        store.close()
