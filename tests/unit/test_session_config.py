import pytest

from services.openai_sim.errors import RealtimeError
from services.openai_sim.session_config import (
    RESPONSE_SCHEMA,
    default_session,
    merge,
    validate,
    validate_session_update,
)


def refused(session) -> RealtimeError:
    with pytest.raises(RealtimeError) as info:
        validate_session_update(session)
    return info.value


def test_missing_session_type_is_refused_like_the_real_api():
    error = refused({"instructions": "hi"})
    assert (error.code, error.param) == ("missing_required_parameter", "session.type")


@pytest.mark.parametrize(
    "session, param",
    [
        ({"type": "realtime", "voice": "alloy"}, "session.voice"),
        ({"type": "realtime", "modalities": ["audio"]}, "session.modalities"),
        ({"type": "realtime", "input_audio_format": "pcm16"}, "session.input_audio_format"),
        ({"type": "realtime", "temperature": 0.8}, "session.temperature"),
        ({"type": "realtime", "audio": {"output": {"colour": 1}}}, "session.audio.output.colour"),
    ],
)
def test_beta_shaped_fields_reject_the_whole_update(session, param):
    error = refused(session)
    assert (error.code, error.param) == ("unknown_parameter", param)


def test_bad_values_name_their_path():
    error = refused({"type": "realtime", "output_modalities": ["audio", "text"]})
    assert error.code == "invalid_value" and error.param == "session.output_modalities"
    error = refused({"type": "realtime", "audio": {"input": {"turn_detection": {"threshold": 2.0}}}})
    assert error.param == "session.audio.input.turn_detection.threshold"
    error = refused({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}})
    assert error.code == "invalid_value"


def test_update_merges_and_turn_detection_gets_defaults():
    update = validate_session_update({
        "type": "realtime",
        "instructions": "Be brief.",
        "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 600}},
                  "output": {"voice": "marin"}},
    })
    merged = merge(default_session(), update)
    assert merged["instructions"] == "Be brief."
    assert merged["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000},
                                         "voice": "marin", "speed": 1.0}
    detection = merged["audio"]["input"]["turn_detection"]
    assert detection["silence_duration_ms"] == 600 and detection["threshold"] == 0.5
    assert default_session()["audio"]["output"]["voice"] == "alloy"  # defaults untouched


def test_turn_detection_null_disables_vad():
    merged = merge(default_session(), validate_session_update(
        {"type": "realtime", "audio": {"input": {"turn_detection": None}}}))
    assert merged["audio"]["input"]["turn_detection"] is None


def test_tools_need_a_name():
    error = refused({"type": "realtime", "tools": [{"type": "function", "description": "x"}]})
    assert error.param == "session.tools[0].name"


def test_response_overrides_are_validated():
    with pytest.raises(RealtimeError) as info:
        validate("response", {"temperature": 1}, RESPONSE_SCHEMA)
    assert info.value.param == "response.temperature"
    assert validate("response", {"conversation": "none", "instructions": "x"}, RESPONSE_SCHEMA)
