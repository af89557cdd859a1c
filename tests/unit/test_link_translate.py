"""Realtime server events → voxrelay events (services/openai_link/translate.py).

The sequences are the GA ones of the protocol reference §4.4: a server-VAD turn (B)
as it arrives over WebRTC (C: no audio deltas, ``output_audio_buffer.*`` instead) and a
barge-in over WebRTC (G), with input transcription on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY

from proto import events
from services.openai_link import realtime_events as rt
from services.openai_link.attribution import Attribution
from services.openai_link.translate import Translator

SID = "0123456789abcdef0123456789abcdef"
SECRET = "sk-test-SECRETVALUE"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ev(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, "event_id": f"event_{abs(hash((kind, str(fields))))}",
                       **fields})


def user_turn(item: str) -> list[str]:
    """§4.4 B, input side: VAD, commit, the user item, its transcription."""
    user_item = {"id": item, "type": "message", "status": "completed", "role": "user",
                 "content": [{"type": "input_audio", "transcript": None}]}
    return [
        ev("input_audio_buffer.speech_started", audio_start_ms=1236, item_id=item),
        ev("input_audio_buffer.speech_stopped", audio_end_ms=3808, item_id=item),
        ev("input_audio_buffer.committed", previous_item_id=None, item_id=item),
        ev("conversation.item.added", previous_item_id=None, item=user_item),
        ev("conversation.item.done", previous_item_id=None, item=user_item),
    ]


def transcription(item: str, text: str) -> list[str]:
    return [
        ev("conversation.item.input_audio_transcription.delta", item_id=item, content_index=0,
           delta=text),
        ev("conversation.item.input_audio_transcription.completed", item_id=item,
           content_index=0, transcript=text,
           usage={"type": "tokens", "total_tokens": 22, "input_tokens": 13, "output_tokens": 9}),
    ]


def reply_start(resp: str, item: str) -> list[str]:
    """§4.4 B/C, up to the first audio: created, output item, content part, audio starts."""
    assistant = {"id": item, "type": "message", "status": "in_progress", "role": "assistant",
                 "content": []}
    return [
        ev("response.created", response={"object": "realtime.response", "id": resp,
                                          "status": "in_progress", "output": []}),
        ev("response.output_item.added", response_id=resp, output_index=0, item=assistant),
        ev("conversation.item.added", previous_item_id="item_user", item=assistant),
        ev("response.content_part.added", response_id=resp, item_id=item, output_index=0,
           content_index=0, part={"type": "audio", "transcript": ""}),
        ev("output_audio_buffer.started", response_id=resp),
    ]


def delta(resp: str, item: str, text: str) -> str:
    return ev("response.output_audio_transcript.delta", response_id=resp, item_id=item,
              output_index=0, content_index=0, delta=text)


def reply_end(resp: str, item: str, text: str, status: str = "completed") -> list[str]:
    done_item = {"id": item, "type": "message", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_audio", "transcript": text}]}
    common = {"response_id": resp, "item_id": item, "output_index": 0, "content_index": 0}
    details = None if status == "completed" else {"type": status, "reason": "turn_detected"}
    return [
        ev("response.output_audio.done", **common),
        ev("response.output_audio_transcript.done", **common, transcript=text),
        ev("response.content_part.done", **common, part={"type": "audio", "transcript": text}),
        ev("response.output_item.done", response_id=resp, output_index=0, item=done_item),
        ev("conversation.item.done", previous_item_id="item_user", item=done_item),
        ev("response.done", response={"object": "realtime.response", "id": resp,
                                      "status": status, "status_details": details,
                                      "output": [done_item]}),
        ev("rate_limits.updated", rate_limits=[{"name": "tokens", "limit": 40000,
                                                "remaining": 38490, "reset_seconds": 2.265}]),
    ]


def feed(translator: Translator, clock: Clock, messages: list[str],
         step_s: float = 0.1) -> list[events.Event]:
    out: list[events.Event] = []
    for message in messages:
        clock.now += step_s
        out += translator.feed(message)
    return out


def brief(produced: list[events.Event]) -> list[tuple[Any, ...]]:
    """The voxrelay events other than records, as (tag, the fields that matter)."""
    rows: list[tuple[Any, ...]] = []
    for e in produced:
        match e:
            case events.TurnStart() | events.TurnEnd():
                extra = e.speaker if isinstance(e, events.TurnStart) else e.status
                rows.append((events.tag(e), e.role, e.turn_id, extra))
            case events.AiState():
                rows.append(("ai.state", e.state))
            case events.AiInterrupted():
                rows.append(("ai.interrupted", e.response_id, e.played_ms))
            case events.TranscriptDelta():
                rows.append(("transcript.delta", e.role, e.turn_id, e.delta))
            case events.TranscriptDone():
                rows.append(("transcript.done", e.role, e.turn_id, e.text, e.speaker))
            case events.ErrorEvent():
                rows.append(("error", e.code, e.message, e.source))
            case events.RealtimeEvent():
                pass
            case _:
                raise AssertionError(f"unexpected {e!r}")
    return rows


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def translator(clock: Clock) -> Translator:
    return Translator(SID, speaker=lambda start, end: "Ada", secret=SECRET, clock=clock)


def test_a_spoken_turn_over_webrtc_becomes_turns_states_and_transcripts(translator, clock):
    connect = [ev("session.created", session={"type": "realtime", "id": "sess_1"}),
               ev("session.updated", session={"type": "realtime", "id": "sess_1"})]
    produced = feed(translator, clock, [
        *connect, *user_turn("item_u1"), *transcription("item_u1", "Hey, can you hear me?"),
        *reply_start("resp_1", "item_a1"), delta("resp_1", "item_a1", "Sure"),
        delta("resp_1", "item_a1", " thing."), *reply_end("resp_1", "item_a1", "Sure thing."),
        ev("output_audio_buffer.stopped", response_id="resp_1"),
    ])
    assert brief(produced) == [
        ("turn.start", "user", "item_u1", "Ada"),
        ("ai.state", "listening"),
        ("turn.end", "user", "item_u1", "completed"),
        ("ai.state", "thinking"),
        ("transcript.done", "user", "item_u1", "Hey, can you hear me?", "Ada"),
        ("turn.start", "assistant", "item_a1", "assistant"),
        ("ai.state", "speaking"),
        ("transcript.delta", "assistant", "item_a1", "Sure"),
        ("transcript.delta", "assistant", "item_a1", " thing."),
        ("transcript.done", "assistant", "item_a1", "Sure thing.", "assistant"),
        ("turn.end", "assistant", "item_a1", "completed"),
        ("ai.state", "listening"),
    ]
    assert all(e.session_id == SID for e in produced)
    # The user transcript spans speech_started → committed; the reply's, audio start → done.
    by_role = {e.role: e for e in produced if isinstance(e, events.TranscriptDone)}
    assert by_role["user"].ended_at - by_role["user"].started_at == pytest.approx(0.2)
    # (message n arrives at 1000 + n/10: the audio started with the 14th, the transcript
    # was done with the 18th)
    assert by_role["assistant"].started_at == pytest.approx(1000.0 + 0.1 * 14)
    assert by_role["assistant"].ended_at == pytest.approx(1000.0 + 0.1 * 18)
    assert translator.ignored == {}


def test_barge_in_over_webrtc_interrupts_the_ai_and_cancels_its_turn(translator, clock):
    feed(translator, clock, [*user_turn("item_u1"), *reply_start("resp_1", "item_a1")])
    clock.now += 1.5  # the reply plays for 1.5 s, then the user talks over it
    produced = feed(translator, clock, [
        delta("resp_1", "item_a1", "Hello! This is"),
        ev("input_audio_buffer.speech_started", audio_start_ms=9000, item_id="item_u2"),
        *reply_end("resp_1", "item_a1", "Hello! This is", status="cancelled"),
        ev("output_audio_buffer.cleared", response_id="resp_1"),
        ev("input_audio_buffer.speech_stopped", audio_end_ms=11000, item_id="item_u2"),
        ev("input_audio_buffer.committed", previous_item_id="item_a1", item_id="item_u2"),
    ])
    assert brief(produced) == [
        ("transcript.delta", "assistant", "item_a1", "Hello! This is"),
        ("ai.interrupted", "resp_1", 1700),
        ("turn.start", "user", "item_u2", "Ada"),
        ("ai.state", "listening"),
        ("transcript.done", "assistant", "item_a1", "Hello! This is", "assistant"),
        ("turn.end", "assistant", "item_a1", "cancelled"),
        ("turn.end", "user", "item_u2", "completed"),
        ("ai.state", "thinking"),
    ]


def test_an_assistant_turn_starts_with_its_first_words_when_they_precede_its_audio(
        translator, clock):
    feed(translator, clock, user_turn("item_u1"))
    produced = feed(translator, clock, [
        *reply_start("resp_1", "item_a1")[:-1], delta("resp_1", "item_a1", "Hello"),
        ev("output_audio_buffer.started", response_id="resp_1"),
        *reply_end("resp_1", "item_a1", "Hello"),
    ])
    assert brief(produced) == [
        ("turn.start", "assistant", "item_a1", "assistant"),
        ("transcript.delta", "assistant", "item_a1", "Hello"),
        ("ai.state", "speaking"),
        ("transcript.done", "assistant", "item_a1", "Hello", "assistant"),
        ("turn.end", "assistant", "item_a1", "completed"),
    ]


def test_every_server_event_is_recorded_except_audio_deltas(translator, clock):
    messages = [*user_turn("item_u1"), *reply_start("resp_1", "item_a1"),
                ev("response.output_audio.delta", response_id="resp_1", item_id="item_a1",
                   output_index=0, content_index=0, delta="AAAA"),
                *reply_end("resp_1", "item_a1", "Hi.")]
    produced = feed(translator, clock, messages)
    records = [e for e in produced if isinstance(e, events.RealtimeEvent)]
    expected = [m for m in messages if json.loads(m)["type"] != "response.output_audio.delta"]
    assert [r.data for r in records] == expected
    assert [r.event_type for r in records] == [json.loads(m)["type"] for m in expected]
    assert "response.output_audio.delta" not in {r.event_type for r in records}


def test_unknown_event_types_are_counted_and_otherwise_ignored(translator, clock):
    def unknown_count() -> float:
        return REGISTRY.get_sample_value("voxrelay_link_realtime_events_ignored_total",
                                         {"reason": "unknown_type"}) or 0.0

    before = unknown_count()
    produced = feed(translator, clock, [
        ev("response.hologram.delta", response_id="resp_9", delta={"x": 1}),
        ev("session.teleported", to="mars"),
    ])
    # Recorded for the log (a new API event is worth seeing there), nothing else.
    assert brief(produced) == []
    assert [e.event_type for e in produced] == ["response.hologram.delta", "session.teleported"]
    assert translator.ignored["unknown_type"] == 2
    assert unknown_count() == before + 2
    # Known types the link does not act on are not "unknown".
    assert feed(translator, clock, [ev("conversation.item.truncated", item_id="i",
                                       content_index=0, audio_end_ms=10)])
    assert translator.ignored["unknown_type"] == 2


@pytest.mark.parametrize("message", [
    "not json at all",
    "[1, 2, 3]",
    json.dumps({"event_id": "event_1", "item_id": "item_1"}),
    json.dumps({"type": 42}),
    json.dumps({"type": "input_audio_buffer.speech_started", "event_id": "event_2"}),
    json.dumps({"type": "response.done", "response": "done"}),
])
def test_malformed_events_are_dropped_and_counted_and_translation_goes_on(
        translator, clock, message):
    assert translator.feed(message) == []
    assert translator.ignored["malformed"] == 1
    after = feed(translator, clock, user_turn("item_u1")[:1])
    assert ("turn.start", "user", "item_u1", "Ada") in brief(after)


def test_the_api_key_never_appears_in_a_produced_event(translator, clock):
    leaky = f"Incorrect API key provided: {SECRET}. You can find your API key at …"
    produced = feed(translator, clock, [
        ev("session.created", session={"type": "realtime", "instructions": f"key {SECRET}"}),
        ev("error", error={"type": "invalid_request_error", "code": "invalid_api_key",
                           "message": leaky, "param": None, "event_id": None}),
        *user_turn("item_u1"), *transcription("item_u1", f"my key is {SECRET}"),
        *reply_start("resp_1", "item_a1"), delta("resp_1", "item_a1", SECRET),
        *reply_end("resp_1", "item_a1", f"Your key is {SECRET}"),
    ])
    assert len(produced) > 20
    for event in produced:
        assert SECRET not in events.to_json(event), event
    errors = [e for e in produced if isinstance(e, events.ErrorEvent)]
    assert [(e.code, e.source) for e in errors] == [("invalid_api_key", "openai")]
    assert errors[0].message.startswith("Incorrect API key provided: ")


def test_an_error_without_a_code_is_a_realtime_error_from_openai(translator, clock):
    produced = feed(translator, clock, [
        ev("error", error={"type": "server_error", "code": None, "message": "boom"})])
    assert brief(produced) == [("error", "realtime_error", "boom", "openai")]


def test_a_reply_without_audio_still_opens_and_closes_its_turn(translator, clock):
    failed = {"type": "failed", "error": {"type": "invalid_request_error",
                                          "code": "insufficient_quota",
                                          "message": "You exceeded your current quota."}}
    produced = feed(translator, clock, [
        *user_turn("item_u1"),
        ev("response.created", response={"id": "resp_1", "status": "in_progress", "output": []}),
        ev("response.done", response={"id": "resp_1", "status": "failed",
                                      "status_details": failed, "output": []}),
    ])
    assert brief(produced)[-4:] == [
        ("turn.start", "assistant", "resp_1", "assistant"),
        ("turn.end", "assistant", "resp_1", "failed"),
        ("error", "insufficient_quota", "You exceeded your current quota.", "openai"),
        ("ai.state", "listening"),
    ]


def test_user_turns_name_the_clients_heard_within_them(clock):
    attribution = Attribution()
    attribution.add_client("c-ada", "Ada")
    attribution.add_client("c-bo", "Bo")
    translator = Translator(SID, speaker=attribution.speaker, clock=clock)
    # Bo speaks; the mixer hears it (capture times) a little before the API's VAD does.
    attribution.observe("c-bo", True, clock.now + 0.05)
    first = feed(translator, clock, user_turn("item_u1")[:1])
    attribution.observe("c-bo", False, clock.now + 0.6)
    first += feed(translator, clock, user_turn("item_u1")[1:], step_s=0.4)
    # Then both speak at once.
    attribution.observe("c-ada", True, clock.now + 1.0)
    attribution.observe("c-bo", True, clock.now + 1.6)
    clock.now += 1.1
    second = feed(translator, clock, user_turn("item_u2"), step_s=0.3)
    attribution.observe("c-ada", False, clock.now - 0.4)
    attribution.observe("c-bo", False, clock.now - 0.3)
    done = feed(translator, clock, [*transcription("item_u1", "one"),
                                    *transcription("item_u2", "two")])
    starts = {e.turn_id: e.speaker for e in first + second if isinstance(e, events.TurnStart)}
    transcripts = {e.turn_id: e.speaker for e in done if isinstance(e, events.TranscriptDone)}
    assert starts == {"item_u1": "Bo", "item_u2": "Ada"}  # who was speaking as it began
    assert transcripts == {"item_u1": "Bo", "item_u2": "Ada+Bo"}  # join order


def test_decoding_tells_known_unknown_and_malformed_apart():
    assert isinstance(rt.decode(ev("input_audio_buffer.committed", item_id="i")), rt.InputCommitted)
    assert rt.decode(ev("rate_limits.updated", rate_limits=[])) == rt.OtherEvent(
        "rate_limits.updated", known=True)
    assert rt.decode(ev("brand.new")) == rt.OtherEvent("brand.new", known=False)
    with pytest.raises(rt.MalformedEvent):
        rt.decode(json.dumps({"type": "output_audio_buffer.started"}))
