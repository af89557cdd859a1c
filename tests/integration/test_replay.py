"""``voxrelay replay SID``: a recorded two-device conversation, driven again through the
stack from its recorded microphones, comes out as the same conversation.

A real ``voxrelay up`` stack with the simulator in script mode (the n-th user turn of a
Realtime call is the script's n-th phrase, so the transcript does not depend on how long
an utterance measured); two aiortc clients take turns in a recorded session; then the
command runs as a user would run it (``python -m services.cli``), joins as the recorded
clients, plays what their microphones sent, and compares.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from services.client.voxrelay import create_session
from tests.support.converse import converse
from tests.support.up import Up, running_up

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TURNS = (("kitchen", "what is the weather like today", "It is sunny and warm."),
         ("hall", "please turn on the lights", "The hall lights are on now."))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    folder = tmp_path_factory.mktemp("replay")
    script = folder / "script.json"
    script.write_text(json.dumps([{"user": phrase, "reply": reply}
                                  for _, phrase, reply in TURNS]))
    with running_up(folder, edges=2, env_extra={"VOXRELAY_SIM_REPLY_MODE": "script",
                                                "VOXRELAY_SIM_SCRIPT": str(script)}) as up:
        yield up


def voxrelay(stack: Up, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VOXRELAY_ICE_HOSTS"}
    return subprocess.run([sys.executable, "-m", "services.cli", *args, "--url", stack.url],
                          capture_output=True, text=True, timeout=timeout, check=False, env=env)


def shown(stack: Up, sid: str) -> dict:
    done = voxrelay(stack, "sessions", "show", sid, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_replayed_conversation_has_the_original_turns_speakers_and_words(stack: Up):
    session = asyncio.run(converse(stack.url, [(n, p) for n, p, _ in TURNS], "kitchen and hall", record=True))
    sid = session["session_id"]
    original = shown(stack, sid)
    expected = []
    for name, phrase, reply in TURNS:
        expected += [(name, phrase), ("assistant", reply)]
    assert [(t["speaker"], t["text"]) for t in original["turns"]] == expected

    done = voxrelay(stack, "replay", sid, "--compare", timeout=180)
    print(done.stderr, done.stdout, sep="\n")
    assert done.returncode == 0, (done.stdout, done.stderr)
    copy = done.stdout.splitlines()[0]
    assert re.fullmatch(r"[0-9a-f]{32}", copy) and copy != sid
    assert "the same" in done.stdout.splitlines()[1]
    assert len(re.findall(r"^\s+\d\s+\d+ → \d+ \([+-]\d+\)", done.stdout, re.M)) == len(TURNS)

    # The replay is a recorded session of its own, with the original's clients and words.
    replayed = shown(stack, copy)
    assert [(t["speaker"], t["text"], t["status"]) for t in replayed["turns"]] == [
        (t["speaker"], t["text"], t["status"]) for t in original["turns"]]
    assert "(replay)" in replayed["name"]
    recordings = Path(stack.data_dir) / "recordings" / copy / "index.json"
    kinds = sorted(s["kind"] for s in json.loads(recordings.read_text())["streams"])
    assert kinds == ["client", "client", "mix", "model"]


def test_a_replay_of_a_session_without_audio_says_what_to_do_instead(stack: Up):
    async def unrecorded() -> str:
        async with aiohttp.ClientSession() as http:
            session = await create_session(http, stack.url, name="not kept")
            async with http.delete(f"{stack.url}/v1/sessions/{session['session_id']}",
                                   headers={"Authorization": f"Bearer {session['token']}"}):
                pass
            return session["session_id"]

    done = voxrelay(stack, "replay", asyncio.run(unrecorded()))
    assert done.returncode == 1
    assert "recorded no audio" in done.stderr and "--events-only" in done.stderr
