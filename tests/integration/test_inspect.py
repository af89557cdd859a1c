"""Looking back at a recorded conversation: ``voxrelay sessions show`` and ``export``.

A real ``voxrelay up`` stack, two aiortc clients taking turns; then the commands run as
a user would run them (``python -m services.cli``), against the running stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.support.converse import converse
from tests.support.up import Up, running_up

pytestmark = pytest.mark.timeout(240)

TURNS = (("kitchen", "what is the weather like today"),
         ("hall", "please turn on the lights"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("inspect"), edges=1) as up:
        yield up


@pytest.fixture(scope="module")
def conversation(stack: Up) -> dict:
    """A finished two-device conversation: two user turns, two replies."""
    return asyncio.run(converse(stack.url, TURNS, "kitchen and hall"))


def voxrelay(stack: Up, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args, "--url", stack.url],
                          capture_output=True, text=True, timeout=60, check=False)


def test_show_prints_each_turn_with_its_speaker_and_the_replies_latency(stack: Up,
                                                                         conversation: dict):
    done = voxrelay(stack, "sessions", "show", conversation["session_id"])
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    lines = done.stdout.splitlines()
    assert "'kitchen and hall'" in lines[0]
    assert "ended by request" in lines[1]
    said = [line.split()[2] for line in lines if line.strip() and line.split()[0][0].isdigit()]
    assert said == ["kitchen", "assistant", "hall", "assistant"]
    assert sum("first audio" in line and "voice to voice" in line for line in lines) == 2

    as_json = json.loads(voxrelay(stack, "sessions", "show", conversation["session_id"],
                                  "--json").stdout)
    assert [t["speaker"] for t in as_json["turns"]] == ["kitchen", "assistant", "hall",
                                                        "assistant"]
    replies = [t for t in as_json["turns"] if t["role"] == "assistant"]
    assert all(t["status"] == "completed" and t["time_to_first_audio_s"] > 0 for t in replies)


def test_export_writes_the_event_log_a_transcript_and_reports_a_person_can_open(
        stack: Up, conversation: dict, tmp_path: Path):
    out = tmp_path / "export"
    done = voxrelay(stack, "export", conversation["session_id"], "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = (out / "events.jsonl").read_text().splitlines()
    types = [json.loads(line)["type"] for line in lines]
    assert types[0] == "session.started" and "session.ended" in types
    assert types.count("transcript.done") >= 4
    transcript = json.loads((out / "transcript.json").read_text())
    users = [t for t in transcript["turns"] if t["role"] == "user"]
    assert [t["speaker"] for t in users] == [name for name, _ in TURNS]
    replies = [t["text"] for t in transcript["turns"] if t["role"] == "assistant"]
    report = (out / "report.md").read_text()
    assert f"| kitchen | {users[0]['text']} |" in report  # the simulator's "[speech 2.0 s]"
    page = _Text()
    page.feed((out / "report.html").read_text())
    assert replies[1] in page.text and "kitchen and hall" in page.title


def test_an_unknown_session_and_an_unreachable_server_are_explained(stack: Up):
    done = voxrelay(stack, "sessions", "show", "0" * 32)
    assert done.returncode == 1 and "no events recorded" in done.stderr
    done = subprocess.run([sys.executable, "-m", "services.cli", "export", "0" * 32, "--out",
                           "/nonexistent", "--url", "http://127.0.0.1:1"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "is the stack running?" in done.stderr


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text, self.title, self._in_title = "", "", False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        self.text += data
        if self._in_title:
            self.title += data


def test_events_only_replay_prints_the_recorded_events_and_can_feed_the_bus(
        stack: Up, conversation: dict, tmp_path: Path):
    sid = conversation["session_id"]
    printed = voxrelay(stack, "replay", sid, "--events-only", "--speed", "0")
    assert printed.returncode == 0, printed.stderr
    exported = voxrelay(stack, "export", sid, "--out", str(tmp_path))
    assert exported.returncode == 0, exported.stderr
    assert printed.stdout.splitlines() == (tmp_path / "events.jsonl").read_text().splitlines()

    env = {**os.environ, "VOXRELAY_BUS_PUBLISH": stack.env["VOXRELAY_BUS_PUBLISH"]}
    fed = subprocess.run([sys.executable, "-m", "services.cli", "replay", sid, "--events-only",
                          "--to", "bus", "--speed", "0", "--url", stack.url],
                         capture_output=True, text=True, timeout=60, check=False, env=env)
    assert fed.returncode == 0, fed.stderr
    copy = re.search(r"as session ([0-9a-f]{32})", fed.stderr).group(1)
    assert copy != sid
    original = json.loads(voxrelay(stack, "sessions", "show", sid, "--json").stdout)
    for _ in range(50):  # the recorder stores what the bus carried within moments
        shown = voxrelay(stack, "sessions", "show", copy, "--json")
        if shown.returncode == 0 and len(json.loads(shown.stdout)["turns"]) == 4:
            break
        time.sleep(0.2)
    replayed = json.loads(shown.stdout)
    assert [(t["speaker"], t["text"]) for t in replayed["turns"]] == [
        (t["speaker"], t["text"]) for t in original["turns"]]
