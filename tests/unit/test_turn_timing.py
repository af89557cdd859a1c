"""The link's turn summary: what it measured for one exchange, with an injected clock."""

from __future__ import annotations

import numpy as np

from proto import events
from services.openai_link.turn_timing import FIRST_AUDIO_WITHIN_S, TurnTiming
from services.runtime.media import SILENCE

SID = "a" * 32
KITCHEN = "b" * 32
HALL = "c" * 32
VOICE = (np.sin(np.arange(480) / 3) * 8000).astype("<i2").tobytes()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def timing(clock: Clock) -> TurnTiming:
    names = {KITCHEN: "kitchen", HALL: "hall"}
    return TurnTiming(SID, name_of=lambda cid: names.get(cid, cid[:8]), clock=clock)


def user_turn(t: TurnTiming, turn_id: str = "item_user", speaker: str = "kitchen") -> None:
    t.translated(events.TurnStart(session_id=SID, turn_id=turn_id, role="user", speaker=speaker))
    for age in (0.030, 0.040, 0.050):
        t.uplink_age(age)
    t.bus_event(events.VoiceActivity(session_id=SID, client_id=KITCHEN, active=False,
                                     at=1_700_000_000.5))
    t.translated(events.TurnEnd(session_id=SID, turn_id=turn_id, role="user"))


def end_reply(t: TurnTiming, status: str = "completed") -> events.TurnSummary | None:
    t.translated(events.TurnStart(session_id=SID, turn_id="item_ai", role="assistant",
                                  speaker="assistant"))
    return t.translated(events.TurnEnd(session_id=SID, turn_id="item_ai", role="assistant",
                                       status=status))


def test_a_reply_is_summarised_with_every_latency_measured():
    clock = Clock()
    t = timing(clock)
    user_turn(t)
    t.speech_stopped()
    clock.now += 0.2
    t.model_frame(SILENCE)  # silence between replies is not the reply
    clock.now += 0.15
    t.model_frame(VOICE)
    t.bus_event(events.TurnHeard(session_id=SID, client_id=KITCHEN, voice_to_voice_s=0.91))
    t.bus_event(events.TurnHeard(session_id=SID, client_id=HALL, voice_to_voice_s=0.93))
    t.bus_event(events.TurnHeard(session_id=SID, client_id=HALL, voice_to_voice_s=5.0))
    summary = end_reply(t)
    assert summary is not None
    assert summary.turn_id == "item_ai" and summary.user_turn_id == "item_user"
    assert summary.speaker == "kitchen"
    assert summary.speech_ended_at == 1_700_000_000.5
    assert abs(summary.time_to_first_audio_s - 0.35) < 1e-6
    assert abs(summary.uplink_age_s - 0.040) < 1e-9  # the median
    assert summary.voice_to_voice_s == {"kitchen": 0.91, "hall": 0.93}  # the first report


def test_the_transcript_names_the_speaker_once_attribution_knows():
    t = timing(Clock())
    user_turn(t, speaker="kitchen")
    t.translated(events.TranscriptDone(session_id=SID, turn_id="item_user", role="user",
                                       text="hi", speaker="kitchen+hall"))
    summary = end_reply(t)
    assert summary is not None and summary.speaker == "kitchen+hall"


def test_a_reply_without_audio_or_user_speech_reports_nothing_measured():
    clock = Clock()
    t = timing(clock)
    t.response_requested()
    clock.now += FIRST_AUDIO_WITHIN_S + 1
    t.model_frame(VOICE)  # too late to belong to that request
    summary = end_reply(t, status="cancelled")
    assert summary is not None and summary.status == "cancelled"
    assert summary.time_to_first_audio_s == 0.0
    assert summary.user_turn_id == "" and summary.voice_to_voice_s == {}


def test_each_summary_starts_afresh():
    clock = Clock()
    t = timing(clock)
    user_turn(t)
    t.speech_stopped()
    clock.now += 0.3
    t.model_frame(VOICE)
    t.bus_event(events.TurnHeard(session_id=SID, client_id=KITCHEN, voice_to_voice_s=0.8))
    assert end_reply(t) is not None
    second = end_reply(t)
    assert second is not None
    assert second.time_to_first_audio_s == 0.0 and second.voice_to_voice_s == {}
    assert second.user_turn_id == "" and second.uplink_age_s == 0.0


def test_a_speech_end_reported_after_the_model_ended_the_turn_still_counts():
    # The mixer's voice activity holds on a little longer than the model's turn detection,
    # so its report of the end of speech can reach the link just after the user's turn.end.
    t = TurnTiming(SID, clock=Clock(), wall=lambda: 1_700_000_001.0)
    t.translated(events.TurnStart(session_id=SID, turn_id="item_user", role="user",
                                  speaker="kitchen"))
    t.translated(events.TurnEnd(session_id=SID, turn_id="item_user", role="user"))
    t.bus_event(events.VoiceActivity(session_id=SID, client_id=KITCHEN, active=False,
                                     at=1_700_000_000.7))
    t.bus_event(events.VoiceActivity(session_id=SID, client_id=HALL, active=False,
                                     at=1_700_000_002.0))  # later speech: not this turn's
    summary = end_reply(t)
    assert summary is not None and summary.speech_ended_at == 1_700_000_000.7
