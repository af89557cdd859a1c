"""Where the event bus is: ``VOXRELAY_BUS_PUBLISH`` / ``VOXRELAY_BUS_SUBSCRIBE``."""

from __future__ import annotations

from collections.abc import Mapping

from .bus import BusEndpoints
from .config import env_str

DEFAULT_PUBLISH = "tcp://127.0.0.1:7701"
DEFAULT_SUBSCRIBE = "tcp://127.0.0.1:7702"


def bus_from_env(env: Mapping[str, str] | None = None) -> BusEndpoints:
    return BusEndpoints(
        publish=env_str("VOXRELAY_BUS_PUBLISH", DEFAULT_PUBLISH, env),
        subscribe=env_str("VOXRELAY_BUS_SUBSCRIBE", DEFAULT_SUBSCRIBE, env),
    )
