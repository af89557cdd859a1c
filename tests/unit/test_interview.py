"""The interview profile: question lists, the next_question tool, the transcript per question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proto import events, rpc
from services.openai_sim.replies import fill_reply
from services.signaling.conductor import ApiError
from services.signaling.interview import (
    QuestionsError,
    load_questions,
    parse_questions,
    per_question,
    session_questions,
)
from services.tools import ToolContext, load
from services.tools.interview import PROFILE, instructions

SID = "a" * 32
RAW = [{"domain": "python", "difficulty_tier": "easy", "text": "What is a list?"},
       {"domain": "audio", "difficultyTier": "hard", "text": "Why resample?"}]


def test_questions_come_from_the_request_or_a_file(tmp_path: Path):
    questions = parse_questions(RAW)
    assert questions == (rpc.Question("python", "easy", "What is a list?"),
                         rpc.Question("audio", "hard", "Why resample?"))
    (tmp_path / "q.json").write_text(json.dumps({"questions": RAW}))
    assert load_questions(str(tmp_path / "q.json")) == questions
    (tmp_path / "q.toml").write_text(
        '[[question]]\ndomain = "python"\ndifficulty_tier = "easy"\ntext = "What is a list?"\n')
    assert load_questions(str(tmp_path / "q.toml")) == questions[:1]
    with pytest.raises(QuestionsError, match="q.missing"):
        load_questions(str(tmp_path / "q.missing"))


@pytest.mark.parametrize(("raw", "error"), [
    ([], "non-empty list"),
    ("What is a list?", "non-empty list"),
    ([{"domain": "x", "difficulty_tier": "y"}], r"\[0\]\.text"),
    ([{"text": "   "}], "not empty"),
    ([{"text": "ok", "domain": 7}], r"\[0\]\.domain"),
    ([{"text": "x" * 3000}], "at most 2000"),
    ([{"text": "ok"}] * 101, "more than 100"),
])
def test_a_bad_question_list_is_refused_saying_what_is_wrong(raw, error):
    with pytest.raises(QuestionsError, match=error):
        parse_questions(raw)


def test_an_interview_needs_questions_and_only_an_interview_takes_them():
    default = parse_questions(RAW[:1])
    assert session_questions({}, PROFILE, default) == default
    assert session_questions({"questions": RAW}, PROFILE, default) == parse_questions(RAW)
    assert session_questions({}, "", default) == ()
    with pytest.raises(ApiError, match="needs 'questions'"):
        session_questions({}, PROFILE, ())
    with pytest.raises(ApiError, match="needs \"profile\""):
        session_questions({"questions": RAW}, "", ())
    with pytest.raises(ApiError) as refused:
        session_questions({"questions": [{"text": 1}]}, PROFILE, ())
    assert refused.value.status == 400


async def test_next_question_walks_the_list_announcing_each_then_says_done():
    registry = load()
    tool = registry.get("next_question")
    assert tool is not None and [t.name for t in registry.for_profile("")] == ["get_time"]
    assert {t.name for t in registry.for_profile(PROFILE)} == {"get_time", "next_question"}
    published: list[events.Event] = []
    context = ToolContext(SID, profile=PROFILE, settings={"questions": parse_questions(RAW)},
                          publish=published.append)
    first = await tool.function(context=context)
    second = await tool.function(context=context)
    assert (first["idx"], first["text"], first["remaining"]) == (0, "What is a list?", 1)
    assert (second["idx"], second["difficulty_tier"], second["remaining"]) == (1, "hard", 0)
    assert await tool.function(context=context) == {"done": True, "asked": 2}
    assert [(e.idx, e.domain, e.difficulty_tier) for e in published] == [
        (0, "python", "easy"), (1, "audio", "hard")]
    shown = json.loads(events.to_client_json(published[1]))
    assert shown["type"] == "question.ready"
    assert shown["payload"] == {"idx": 1, "domain": "audio", "difficultyTier": "hard",
                                "text": "Why resample?"}
    assert instructions("Be kind.").endswith("Be kind.") and "next_question" in instructions("")


def test_the_transcript_is_split_by_the_question_current_when_each_entry_began():
    recorded = [{"type": "question.ready", "ts": 10.0, "idx": 0, "domain": "python",
                 "difficultyTier": "easy", "text": "Q1"},
                {"type": "turn.start", "ts": 11.0},
                {"type": "question.ready", "ts": 20.0, "idx": 1, "domain": "audio",
                 "difficultyTier": "hard", "text": "Q2"}]
    transcript = [{"role": "assistant", "text": "Hello", "started_at": 5.0},
                  {"role": "assistant", "text": "Q1", "started_at": 10.5},
                  {"role": "user", "text": "A1", "started_at": 13.0},
                  {"role": "assistant", "text": "Q2", "started_at": 20.2},
                  {"role": "user", "text": "A2", "started_at": 24.0}]
    split = per_question(recorded, transcript)
    assert [(q["idx"], q["difficulty_tier"], [e["text"] for e in q["transcript"]])
            for q in split] == [(0, "easy", ["Q1", "A1"]), (1, "hard", ["Q2", "A2"])]


def test_a_scripted_reply_can_say_one_field_of_the_output():
    output = json.dumps({"idx": 0, "text": "What is a list?"})
    assert fill_reply("Next: {output.text}", output) == "Next: What is a list?"
    assert fill_reply("It is {output}.", "noon") == "It is noon."
    assert fill_reply("[{output.missing}]", "not json") == "[]"
