"""The ``interview`` profile: the model interviews the user, one question at a time.

A session created with ``profile: "interview"`` and a question list (``[{domain,
difficulty_tier, text}]``, from the request or ``VOXRELAY_INTERVIEW_QUESTIONS``) is
offered :func:`next_question` and told, in :func:`instructions`, to ask the questions in
order through it. Each call moves the interview on: it publishes ``question.ready
{idx, domain, difficultyTier, text}`` (clients show the question) and gives the model
the question to ask, or ``{"done": true}`` once every question was asked. The
position is the session's tool state, so each session runs its own interview.
"""

from __future__ import annotations

from typing import Any

from proto import events

from . import ToolContext, tool

PROFILE = "interview"

INSTRUCTIONS = (
    "You are a friendly, concise interviewer. The interview is a fixed list of questions "
    "that you get one at a time by calling the next_question tool. Start by greeting the "
    "candidate in one sentence and calling next_question. Ask each question exactly as "
    "given, then listen to the whole answer without correcting or teaching. When the "
    "candidate has answered, acknowledge briefly and call next_question again. When it "
    "returns done, thank the candidate and say the interview is over."
)


def instructions(own: str) -> str:
    """The interviewer's instructions, followed by the session's own (if any)."""
    return f"{INSTRUCTIONS}\n\n{own}" if own else INSTRUCTIONS


@tool(description="The next interview question to ask (in order), or done when all were "
                  "asked.", profiles=(PROFILE,), timeout_s=2.0)
async def next_question(context: ToolContext) -> dict[str, Any]:
    questions = context.settings.get("questions", [])
    idx = context.state.get("next", 0)
    if idx >= len(questions):
        return {"done": True, "asked": len(questions)}
    context.state["next"] = idx + 1
    question = questions[idx]
    context.publish(events.QuestionReady(
        session_id=context.session_id, idx=idx, domain=question.domain,
        difficulty_tier=question.difficulty_tier, text=question.text))
    return {"idx": idx, "domain": question.domain, "difficulty_tier": question.difficulty_tier,
            "text": question.text, "remaining": len(questions) - idx - 1}
