"""An interview in a real headless Chromium: three questions, shown on the page as the
interviewer reaches them, and the transcript per question at the end.

The stack runs the simulator with a script in which each user turn makes the model call
``next_question`` and then ask what it returned (``{output.text}``); Chromium's fake
microphone answers every question with the same looped phrase.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import expect

from services.client.voxrelay import create_session
from tests.support.up import Up, running_up

from .test_web_client import CONNECT_TIMEOUT_MS, api, page_in

pytestmark = pytest.mark.browser

QUESTIONS = [
    {"domain": "python", "difficulty_tier": "easy", "text": "What is a list?"},
    {"domain": "networks", "difficulty_tier": "medium", "text": "What does a router do?"},
    {"domain": "audio", "difficulty_tier": "hard", "text": "Why resample audio?"},
]
SCRIPT = """
[[turn]]
user = "ready"
reply = "Let us begin. {output.text}"
function_call = { name = "next_question" }

[[turn]]
user = "first answer"
reply = "Thank you. {output.text}"
function_call = { name = "next_question" }

[[turn]]
user = "second answer"
reply = "Thank you. {output.text}"
function_call = { name = "next_question" }

[[turn]]
user = "third answer"
reply = "That was the last question. Thank you."
function_call = { name = "next_question" }
"""
QUESTION_TIMEOUT_MS = 45_000
"One turn of the looped microphone (phrase and 5 s of silence) and the spoken question."
UI_UPDATE_MS = 150
"The page shows what a DataChannel event says within this of receiving it."


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    folder = tmp_path_factory.mktemp("interview")
    script = folder / "script.toml"
    script.write_text(SCRIPT)
    with running_up(folder, "--tls", edges=1,
                    env_extra={"VOXRELAY_SIM_REPLY_MODE": "script",
                               "VOXRELAY_SIM_SCRIPT": str(script)}) as stack:
        yield stack


async def test_an_interview_shows_each_question_and_keeps_a_transcript_per_question(
        up: Up, browser: Any, trusted: ssl.SSLContext) -> None:
    async with api(trusted) as http:
        session = await create_session(http, up.url, name="Interview", profile="interview",
                                       questions=QUESTIONS)
    async with page_in(browser) as page:
        await page.goto(session["join_url"])
        await page.get_by_role("button", name="Join", exact=True).click()
        await expect(page.get_by_role("status")).to_have_text("Connected",
                                                               timeout=CONNECT_TIMEOUT_MS)
        for idx, question in enumerate(QUESTIONS):
            await expect(page.locator("#question")).to_have_attribute(
                "data-idx", str(idx), timeout=QUESTION_TIMEOUT_MS)
            await expect(page.locator("#question-text")).to_have_text(question["text"])
            await expect(page.locator("#question-meta")).to_have_text(
                f"Question {idx + 1} · {question['domain']} · {question['difficulty_tier']}")
        shown = [u for u in await page.evaluate("window.voxrelay.uiLatency")
                 if u["type"] == "question.ready"]
        print("question.ready → painted (ms):", [round(u["ms"], 1) for u in shown])
        assert len(shown) == len(QUESTIONS)
        assert max(u["ms"] for u in shown) <= UI_UPDATE_MS
        # the last answer: the interviewer hears it, finds no question left and closes
        await expect(page.get_by_role("log").locator(".turn.assistant .text").last).to_have_text(
            "That was the last question. Thank you.", timeout=QUESTION_TIMEOUT_MS)
        await page.get_by_role("button", name="Leave").click()

    async with api(trusted) as http:
        async with http.get(f"{up.url}/v1/sessions/{session['session_id']}/interview",
                            headers={"Authorization": f"Bearer {session['token']}"}) as resp:
            assert resp.status == 200
            asked = (await resp.json())["questions"]
        async with http.get(f"{up.url}/v1/sessions/{session['session_id']}") as resp:
            assert (await resp.json())["profile"] == "interview"
    print(json.dumps(asked, indent=1)[:3000])
    assert [(q["idx"], q["domain"], q["difficulty_tier"], q["text"]) for q in asked] == [
        (i, q["domain"], q["difficulty_tier"], q["text"]) for i, q in enumerate(QUESTIONS)]
    for idx, question in enumerate(asked):
        said = [(e["role"], e["text"]) for e in question["transcript"]]
        # the interviewer asks it, the candidate answers it
        assert said[0] == ("assistant", ("Let us begin. " if idx == 0 else "Thank you. ")
                           + QUESTIONS[idx]["text"]), said
        assert any(role == "user" for role, _ in said[1:]), said
