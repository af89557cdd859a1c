"""Reconnecting a dropped Realtime call: when to retry (services/openai_link/backoff.py) and
what the new call is told of the conversation (services/openai_link/history.py)."""

from __future__ import annotations

import json
import random

import pytest
from openai.types.realtime import ConversationItemCreateEvent

from proto import events
from services.openai_link.backoff import Backoff
from services.openai_link.history import ConversationHistory, Entry

SID = "0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


# -- backoff -------------------------------------------------------------------------


def delays(backoff: Backoff, rng, clock=None, limit: int = 100) -> list[float]:
    outage = backoff.outage(rng, clock or Clock())
    out = []
    while (delay := outage.next_delay()) is not None and len(out) < limit:
        out.append(delay)
    return out


def test_ceilings_double_from_a_quarter_second_up_to_eight():
    assert delays(Backoff(), rng=lambda: 1.0)[:8] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_full_jitter_waits_anywhere_between_zero_and_the_ceiling():
    backoff = Backoff()
    assert set(delays(backoff, rng=lambda: 0.0)) == {0.0}
    assert delays(backoff, rng=lambda: 0.5)[:4] == [0.125, 0.25, 0.5, 1.0]
    seeded = random.Random(7)
    waits = delays(backoff, rng=seeded.random)
    assert all(0 <= w <= backoff.ceiling(n) for n, w in enumerate(waits))
    assert len(set(waits)) == len(waits)  # jittered: no two the same


def test_waits_grow_on_average():
    seeded = random.Random(11)
    runs = [delays(Backoff(), rng=seeded.random)[:6] for _ in range(400)]
    means = [sum(run[n] for run in runs) / len(runs) for n in range(6)]
    assert means == sorted(means)
    assert means[0] < 0.2 and 3.0 < means[5] < 5.0


def test_an_outage_is_given_up_after_its_time_limit():
    clock = Clock()
    outage = Backoff(give_up_after_s=60.0).outage(lambda: 1.0, clock)
    waited = 0.0
    while (delay := outage.next_delay()) is not None:
        clock.now += delay + 3.0  # each attempt also takes 3 s to fail
        waited += delay
        assert outage.elapsed_s < 60.0 + 8.0 + 3.0
    assert 60.0 <= outage.elapsed_s
    assert 5 <= outage.attempts < 20
    assert waited <= 60.0


def test_an_outage_is_given_up_after_its_attempts_and_never_waits_past_its_limit():
    assert len(delays(Backoff(max_attempts=5), rng=lambda: 1.0)) == 5
    clock = Clock()
    outage = Backoff(give_up_after_s=1.0).outage(lambda: 1.0, clock)
    assert outage.next_delay() == 0.25
    clock.now += 0.9
    assert outage.next_delay() == pytest.approx(0.1)  # only what is left of the limit
    clock.now += 0.1
    assert outage.next_delay() is None


def test_a_random_source_outside_zero_to_one_is_clamped():
    assert delays(Backoff(max_attempts=3), rng=lambda: 7.0) == [0.25, 0.5, 1.0]
    assert delays(Backoff(max_attempts=3), rng=lambda: -1.0) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("kwargs, key", [
    ({"base_s": 0}, "base_s"), ({"base_s": 9, "cap_s": 8}, "base_s"),
    ({"give_up_after_s": 0}, "give_up_after_s"), ({"max_attempts": 0}, "max_attempts"),
])
def test_a_backoff_that_could_not_work_is_refused(kwargs, key):
    with pytest.raises(ValueError, match=key):
        Backoff(**kwargs)


# -- history -------------------------------------------------------------------------


def done(role: str, text: str, started_at: float) -> events.TranscriptDone:
    return events.TranscriptDone(session_id=SID, turn_id=f"item_{started_at}", role=role,
                                 text=text, speaker="Ada" if role == "user" else "assistant",
                                 started_at=started_at, ended_at=started_at + 1)


def test_the_conversation_replays_as_ga_message_items_in_order():
    history = ConversationHistory()
    history.observe(done("user", "What is the weather like today?", 10.0))
    history.observe(events.AiState(session_id=SID, state="speaking"))  # not a transcript
    history.observe(done("assistant", "Sunny, and 21 degrees.", 11.0))
    replay = history.replay()
    assert replay == [
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": "What is the weather like today?"}]}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "assistant",
                  "content": [{"type": "output_text", "text": "Sunny, and 21 degrees."}]}},
    ]
    for event in replay:  # the official SDK's GA model of the client event takes them
        parsed = ConversationItemCreateEvent.model_validate({**event, "event_id": "event_1"})
        assert parsed.item.type == "message"


def test_a_user_transcript_that_completes_late_keeps_its_place():
    history = ConversationHistory()
    history.observe(done("user", "one", 10.0))
    history.observe(done("assistant", "reply to one", 11.0))
    history.observe(done("assistant", "reply to two", 21.0))
    history.observe(done("user", "two", 20.0))  # transcription finished after the reply
    assert [e.text for e in history.entries] == ["one", "reply to one", "two", "reply to two"]


def test_empty_transcripts_are_not_kept():
    history = ConversationHistory()
    history.observe(done("user", "   ", 1.0))
    history.observe(done("assistant", "", 2.0))
    assert len(history) == 0 and history.replay() == []


def test_the_history_keeps_the_newest_entries():
    history = ConversationHistory(max_entries=50)
    for n in range(120):
        history.observe(done("user" if n % 2 == 0 else "assistant", f"turn {n}", float(n)))
    assert len(history) == 50
    assert [e.text for e in history.entries] == [f"turn {n}" for n in range(70, 120)]
    assert history.chars == sum(len(e.text) for e in history.entries)


def test_the_history_keeps_at_most_its_characters():
    history = ConversationHistory(max_entries=50, max_chars=20_000)
    for n in range(30):
        history.observe(done("assistant", f"{n:02d}" + "x" * 998, float(n)))  # 1 000 each
    assert history.chars <= 20_000 and len(history) == 20
    assert history.entries[0].text.startswith("10") and history.entries[-1].text.startswith("29")
    history.observe(done("user", "y" * 50_000, 100.0))  # one huge entry keeps its beginning
    assert history.entries[-1].text == "y" * 4_000 and history.chars <= 20_000
    assert [len(e.text) for e in history.entries[-2:]] == [1_000, 4_000]


def test_each_replayed_event_fits_a_data_channel_message():
    history = ConversationHistory()
    history.observe(done("assistant", "\u4f60\u597d" * 10_000, 1.0))  # 6 bytes each in JSON
    [event] = history.replay()
    assert len(json.dumps({**event, "event_id": "event_link_0123456789abcdef0123"})) < 64 * 1024


def test_an_entry_older_than_everything_kept_is_not_kept_when_full():
    history = ConversationHistory(max_entries=2)
    history.add(Entry("user", "b", 2.0))
    history.add(Entry("assistant", "c", 3.0))
    history.add(Entry("user", "a", 1.0))
    assert [e.text for e in history.entries] == ["b", "c"]


def test_a_history_that_could_keep_nothing_is_refused():
    with pytest.raises(ValueError, match="max_entries"):
        ConversationHistory(max_entries=0)


def test_a_recorded_conversation_seeds_the_history_of_a_link_that_takes_over():
    history = ConversationHistory()
    history.seed([("assistant", "Hello there.", 2.0), ("user", "  hi  ", 1.0),
                  ("user", "   ", 3.0), ("system", "not a turn", 4.0)])
    assert [(e.role, e.text) for e in history.entries] == [("user", "hi"),
                                                           ("assistant", "Hello there.")]
    assert [event["item"]["role"] for event in history.replay()] == ["user", "assistant"]
