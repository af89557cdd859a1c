import json

import pytest

from services.openai_sim.replies import (
    DEFAULT_LINES,
    CallReply,
    Replier,
    ReplyContext,
    ReplyMode,
    ScriptError,
    SpeakReply,
    load_script,
)

TOOLS = [{"type": "function", "name": "get_time"}]


def context(tools=(), outputs=None, speech=None, tool_choice="auto") -> ReplyContext:
    return ReplyContext(tools=list(tools), tool_choice=tool_choice, last_user_speech=speech,
                        function_output=(outputs or {}).get)


@pytest.fixture
def script_file(tmp_path):
    path = tmp_path / "script.toml"
    path.write_text(
        '[[turn]]\nuser = "What time is it"\nreply = "It is {output}."\n'
        'function_call = { name = "get_time", arguments = { tz = "UTC" } }\n\n'
        '[[turn]]\nuser = "Thanks"\nreply = "You are welcome."\n'
    )
    return path


def test_script_turn_calls_its_function_then_speaks_the_output(script_file):
    replier = Replier(ReplyMode.SCRIPT, load_script(script_file))
    assert replier.user_turn(1200) == "What time is it"
    first = replier.next_reply(context(TOOLS))
    assert first == CallReply("get_time", json.dumps({"tz": "UTC"}))
    replier.call_made("call_1")
    second = replier.next_reply(context(TOOLS, {"call_1": "12:00"}))
    assert second == SpeakReply("It is 12:00.")
    assert replier.user_turn(800) == "Thanks"
    assert replier.next_reply(context(TOOLS)) == SpeakReply("You are welcome.")


def test_undeclared_tool_is_not_called(script_file):
    replier = Replier(ReplyMode.SCRIPT, load_script(script_file))
    replier.user_turn(1000)
    assert isinstance(replier.next_reply(context(tools=[])), SpeakReply)


def test_after_the_script_the_friendly_lines_continue(script_file):
    replier = Replier(ReplyMode.SCRIPT, load_script(script_file))
    for _ in range(2):
        replier.user_turn(500)
        while isinstance(replier.next_reply(context()), CallReply):
            pass
    assert replier.user_turn(700) == "[speech 0.7 s]"
    assert replier.next_reply(context()) == SpeakReply(DEFAULT_LINES[0])


def test_text_message_picks_the_matching_turn(script_file):
    replier = Replier(ReplyMode.SCRIPT, load_script(script_file))
    replier.user_text("thanks!")
    assert replier.next_reply(context()) == SpeakReply("You are welcome.")


def test_echo_plays_back_the_users_speech():
    speech = bytes(48_000)
    reply = Replier(ReplyMode.ECHO).next_reply(context(speech=speech))
    assert reply == SpeakReply("[echo 1.0 s]", speech)


def test_default_mode_cycles_and_transcribes_with_a_placeholder():
    replier = Replier(ReplyMode.DEFAULT)
    assert replier.user_turn(1400) == "[speech 1.4 s]"
    lines = [replier.next_reply(context()).text for _ in range(len(DEFAULT_LINES) + 1)]
    assert lines == [*DEFAULT_LINES, DEFAULT_LINES[0]]


def test_json_scripts_work_too(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"user": "hi", "reply": "hello"}]))
    assert load_script(path)[0].reply == "hello"


@pytest.mark.parametrize("text", ["", "[[turn]]\nuser = 'x'\n", "not toml ="])
def test_broken_scripts_are_refused_with_the_file_named(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScriptError, match="bad.toml"):
        load_script(path)
