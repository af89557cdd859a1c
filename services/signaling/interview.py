"""The interview profile at the API: the question list, and the transcript per question.

``POST /v1/sessions`` with ``"profile": "interview"`` takes ``questions`` — a list of
``{domain, difficulty_tier, text}`` (``difficultyTier`` is accepted too) — or, without
it, the list in the file named by ``VOXRELAY_INTERVIEW_QUESTIONS`` (JSON: that list or
``{"questions": [...]}``; TOML: ``[[question]]`` tables). The link asks them in order
(``services.tools.interview``).

``GET /v1/sessions/{sid}/interview`` answers with every question asked so far (its
``question.ready`` in the record) and the transcript entries that began while it was
the current question: what was said about each.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from proto import rpc

from .conductor import ApiError

PROFILE = "interview"
PROFILES = ("", PROFILE)
MAX_QUESTIONS = 100
MAX_FIELD = 64
MAX_QUESTION_TEXT = 2000


class QuestionsError(ValueError):
    """A question list that is not one (the message says where)."""


def parse_questions(raw: Any, where: str = "'questions'") -> tuple[rpc.Question, ...]:
    if not isinstance(raw, list) or not raw:
        raise QuestionsError(f"{where} must be a non-empty list of "
                             "{domain, difficulty_tier, text}")
    if len(raw) > MAX_QUESTIONS:
        raise QuestionsError(f"{where} has more than {MAX_QUESTIONS} questions")
    return tuple(_question(item, f"{where}[{i}]") for i, item in enumerate(raw))


def _question(item: Any, where: str) -> rpc.Question:
    if not isinstance(item, dict):
        raise QuestionsError(f"{where} must be an object")
    tier = item.get("difficulty_tier", item.get("difficultyTier", ""))
    fields = {"domain": item.get("domain", ""), "difficulty_tier": tier,
              "text": item.get("text")}
    for key, value in fields.items():
        limit = MAX_QUESTION_TEXT if key == "text" else MAX_FIELD
        if not isinstance(value, str) or len(value) > limit or (key == "text" and not
                                                                value.strip()):
            raise QuestionsError(f"{where}.{key} must be a string of at most {limit} "
                                 "characters" + (" (not empty)" if key == "text" else ""))
    return rpc.Question(**fields)


def load_questions(path: str) -> tuple[rpc.Question, ...]:
    """The question file (JSON or TOML); raises QuestionsError naming what is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        raw: Any = tomllib.loads(text).get("question") if path.endswith(".toml") \
            else json.loads(text)
    except (OSError, ValueError) as e:
        raise QuestionsError(f"{path}: {e}") from e
    if isinstance(raw, dict):
        raw = raw.get("questions")
    return parse_questions(raw, path)


def session_questions(body: dict[str, Any], profile: str,
                      default: tuple[rpc.Question, ...]) -> tuple[rpc.Question, ...]:
    """The questions of a session being created (400 when the profile needs some)."""
    raw = body.get("questions")
    if profile != PROFILE:
        if raw is not None:
            raise ApiError(400, "invalid_field", "'questions' needs \"profile\": \"interview\"")
        return ()
    if raw is None:
        if not default:
            raise ApiError(400, "invalid_field", "an interview needs 'questions' (or a server "
                           "question file, VOXRELAY_INTERVIEW_QUESTIONS)")
        return default
    try:
        return parse_questions(raw)
    except QuestionsError as e:
        raise ApiError(400, "invalid_field", str(e)) from e


def per_question(recorded: Iterable[dict[str, Any]],
                 transcript: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each question asked (in order) with the transcript entries said while it was current.

    Entries before the first question (the greeting) are left out; the model asking a
    question belongs to it, as does the answer.
    """
    asked = sorted((e for e in recorded if e.get("type") == "question.ready"),
                   key=lambda e: e["ts"])
    questions = [{"idx": e["idx"], "domain": e["domain"], "difficulty_tier": e["difficultyTier"],
                  "text": e["text"], "asked_at": e["ts"], "transcript": []} for e in asked]
    for entry in transcript:
        current = None
        for question in questions:
            if question["asked_at"] <= entry["started_at"]:
                current = question
        if current is not None:
            current["transcript"].append(entry)
    return questions
