"""signaling's session limits from the environment (services/signaling/config.py)."""

from __future__ import annotations

import pytest

from services.runtime import ConfigError
from services.signaling.config import from_env


def test_a_session_holds_eight_clients_unless_configured():
    assert from_env({}).max_clients_per_session == 8
    assert from_env({"VOXRELAY_MAX_CLIENTS_PER_SESSION": "3"}).max_clients_per_session == 3


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_bad_client_limit_names_its_variable(value):
    with pytest.raises(ConfigError, match="VOXRELAY_MAX_CLIENTS_PER_SESSION"):
        from_env({"VOXRELAY_MAX_CLIENTS_PER_SESSION": value})
