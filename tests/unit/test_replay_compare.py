"""What ``voxrelay replay --compare`` counts as the same conversation."""

from __future__ import annotations

from proto import events
from services.inspect.replay import compare, conversation_steps

SID = "1" * 32
A, B = "a" * 32, "b" * 32


def conversation(*, leave_order: tuple[str, str] = (A, B), reply: str = "Sunny.",
                 reply_status: str = "completed") -> list[events.AnyEvent]:
    return [
        events.ClientJoined(session_id=SID, client_id=A, name="kitchen", ts=1.0),
        events.ClientJoined(session_id=SID, client_id=B, name="hall", ts=1.1),
        events.TranscriptDone(session_id=SID, turn_id="u1", role="user", text="weather?",
                              speaker="kitchen", ts=3.0),
        events.TurnEnd(session_id=SID, turn_id="u1", role="user", ts=3.0),
        events.VoiceActivity(session_id=SID, client_id=A, active=False, at=3.0, ts=3.0),
        events.TranscriptDone(session_id=SID, turn_id="r1", role="assistant", text=reply,
                              speaker="assistant", ts=5.0),
        events.TurnEnd(session_id=SID, turn_id="r1", role="assistant", status=reply_status,
                       ts=5.0),
        *(events.ClientLeft(session_id=SID, client_id=c, ts=9.0) for c in leave_order),
    ]


def test_steps_name_speakers_and_words_and_leave_out_timing_and_ids():
    assert conversation_steps(conversation()) == [
        "client.joined hall", "client.joined kitchen",
        "transcript.done user kitchen: weather?", "turn.end user completed",
        "transcript.done assistant assistant: Sunny.", "turn.end assistant completed",
        "client.left hall", "client.left kitchen"]


def test_clients_leaving_together_in_another_order_is_the_same_conversation():
    same, report = compare(conversation(), conversation(leave_order=(B, A)), "x", "y")
    assert same, report
    assert "the same" in report.splitlines()[0]


def test_other_words_or_a_cut_off_reply_are_differences_shown_as_a_diff():
    for changed in (conversation(reply="Rainy."), conversation(reply_status="cancelled")):
        same, report = compare(conversation(), changed, "x", "y")
        assert not same
        assert "they differ" in report.splitlines()[0]
        assert any(line.startswith("+") and not line.startswith("+++")
                   for line in report.splitlines())


def test_a_join_after_something_was_said_keeps_its_place():
    early = conversation()
    late = [early[0], early[2], early[3], early[1], *early[4:]]
    steps = conversation_steps(late)
    assert steps.index("client.joined hall") > steps.index("turn.end user completed")
    assert not compare(early, late, "x", "y")[0]
