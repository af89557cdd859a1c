"""The mixer's settings from ``VOXRELAY_MIXER_*`` (services/mixer/config.py)."""

from __future__ import annotations

import pytest

from services.mixer.config import from_env
from services.runtime import ConfigError


def test_echo_gating_and_voice_activity_have_defaults_and_can_be_tuned():
    default = from_env({}).session
    assert (default.echo.enabled, default.echo.duck_db, default.echo.max_lag_ms) == (
        True, 30.0, 1000)
    assert (default.activity.threshold_dbfs, default.activity.hangover_frames) == (-45.0, 15)
    tuned = from_env({"VOXRELAY_MIXER_ECHO_GATE": "off", "VOXRELAY_MIXER_ECHO_DUCK_DB": "20",
                      "VOXRELAY_MIXER_ECHO_MAX_LAG_MS": "600", "VOXRELAY_MIXER_VAD_DBFS": "-50",
                      "VOXRELAY_MIXER_VAD_HANGOVER_MS": "500"}).session
    assert (tuned.echo.enabled, tuned.echo.duck_db, tuned.echo.max_lag_ms) == (False, 20.0, 600)
    assert (tuned.activity.threshold_dbfs, tuned.activity.hangover_frames) == (-50.0, 25)


@pytest.mark.parametrize(("key", "value"), [
    ("VOXRELAY_MIXER_ECHO_GATE", "sometimes"),
    ("VOXRELAY_MIXER_ECHO_DUCK_DB", "-10"),
    ("VOXRELAY_MIXER_ECHO_MAX_LAG_MS", "250"),
    ("VOXRELAY_MIXER_ECHO_MAX_LAG_MS", "5000"),
    ("VOXRELAY_MIXER_VAD_DBFS", "6"),
    ("VOXRELAY_MIXER_VAD_HANGOVER_MS", "0"),
])
def test_a_bad_mixer_setting_names_its_variable(key, value):
    with pytest.raises(ConfigError, match=key):
        from_env({key: value})
