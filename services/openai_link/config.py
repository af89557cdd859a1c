"""openai_link configuration: where the Realtime API is, with which key and model.

Read once at start from the environment:

- ``OPENAI_API_KEY``: the standard API key, held as a :class:`Secret` (never logged, never
  put in an event). When it is unset (or empty) the link uses ``sk-voxrelay-simulator``:
  the built-in simulator (``openai_sim``) accepts any ``sk-…`` key, so an offline install
  works with no key at all, and the real API refuses it with a clear 401 (reported as
  ``unavailable`` to ``AddClient``).
- ``VOXRELAY_OPENAI_BASE_URL``: the API base, default ``https://api.openai.com/v1``
  (``http://127.0.0.1:8765/v1`` for a local simulator).
- ``VOXRELAY_OPENAI_MODEL``: the Realtime model, default ``gpt-realtime``.
- ``VOXRELAY_OPENAI_CONNECT_TIMEOUT_S``: how long a Realtime connection may take to become
  usable (offer, answer, ICE/DTLS, ``session.updated``), default 8 s.
- ``VOXRELAY_OPENAI_TRANSPORT``: ``auto`` (default: WebRTC, and the WebSocket transport
  for a session whose WebRTC call is not usable in time or fails), ``webrtc`` or
  ``websocket`` (only that one; ``websocket`` where UDP to the API is blocked).
- ``VOXRELAY_OPENAI_WEBRTC_TIMEOUT_S``: with ``auto``, how long the WebRTC attempt may take
  before the session falls back to WebSocket; default the connect timeout.
- ``VOXRELAY_TOOLS``: the modules whose tools the model is offered, comma-separated
  (default ``services.tools.builtin,services.tools.interview``: ``get_time``, and
  ``next_question`` for interviews; empty: only the ``voxrelay.tools`` entry points'); see
  :mod:`services.tools`.
- ``VOXRELAY_ICE_HOSTS`` / ``VOXRELAY_ICE_SERVERS``: as for every aiortc peer in voxrelay.
- the common service settings (``VOXRELAY_INSTANCE``, ``VOXRELAY_RPC_BIND``,
  ``VOXRELAY_AUDIO_BIND``, the bus endpoints, …) through :func:`service_config`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.runtime import ConfigError, Secret, env_float, env_list, env_str
from services.runtime.service import ServiceConfig, service_config
from services.tools import DEFAULT_MODULES

SERVICE = "openai_link"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-realtime"
SIMULATOR_KEY = "sk-voxrelay-simulator"
"Used when OPENAI_API_KEY is unset: the simulator accepts any sk- key."
CONNECT_TIMEOUT_S = 8.0
ROLLOVER_AFTER_S = 55 * 60.0
"A call this old is replaced at its next quiet moment (the API ends calls at 60 minutes)."
ROLLOVER_GRACE_S = 4 * 60.0
"How long past that to wait for a quiet moment before replacing the call regardless."
TRANSPORTS = ("auto", "webrtc", "websocket")
"VOXRELAY_OPENAI_TRANSPORT's values: auto = WebRTC, falling back to WebSocket."


@dataclass(frozen=True)
class LinkConfig:
    service: ServiceConfig
    api_key: Secret
    base_url: str
    "The API base without a trailing slash, e.g. https://api.openai.com/v1."
    model: str = DEFAULT_MODEL
    ice_hosts: tuple[str, ...] | None = None
    "Host addresses for ICE candidates; None = the machine's interfaces."
    ice_servers: tuple[str, ...] = ()
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    key_from_env: bool = True
    "False when the simulator key stands in for an unset OPENAI_API_KEY."
    transport: str = "auto"
    "One of TRANSPORTS."
    webrtc_timeout_s: float | None = None
    "With 'auto': how long WebRTC may take before the fallback; None = connect_timeout_s."
    rollover_after_s: float = ROLLOVER_AFTER_S
    "Replace a call this old at a quiet moment (0: never); see session.py."
    rollover_grace_s: float = ROLLOVER_GRACE_S
    tool_modules: tuple[str, ...] = DEFAULT_MODULES
    "Modules that register the tools offered to the model (VOXRELAY_TOOLS)."

    def __post_init__(self) -> None:
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError("VOXRELAY_OPENAI_BASE_URL",
                              f"must be an http(s) URL such as {DEFAULT_BASE_URL} "
                              f"(got {self.base_url!r})")
        if self.base_url.endswith("/"):
            raise ConfigError("VOXRELAY_OPENAI_BASE_URL", "must not end with '/'")
        if not self.model:
            raise ConfigError("VOXRELAY_OPENAI_MODEL", "must not be empty")
        if self.connect_timeout_s <= 0:
            raise ConfigError("VOXRELAY_OPENAI_CONNECT_TIMEOUT_S",
                              f"must be > 0 (got {self.connect_timeout_s})")
        if self.transport not in TRANSPORTS:
            raise ConfigError("VOXRELAY_OPENAI_TRANSPORT",
                              f"must be one of {', '.join(TRANSPORTS)} (got {self.transport!r})")
        if self.rollover_after_s < 0 or self.rollover_grace_s < 0:
            raise ConfigError("VOXRELAY_OPENAI_ROLLOVER_AFTER_S",
                              "the roll-over times must be >= 0 (0: never roll over)")
        if self.webrtc_timeout_s is not None and self.webrtc_timeout_s <= 0:
            raise ConfigError("VOXRELAY_OPENAI_WEBRTC_TIMEOUT_S",
                              f"must be > 0 (got {self.webrtc_timeout_s})")

    @property
    def webrtc_attempt_s(self) -> float:
        """How long the WebRTC attempt of an 'auto' connection may take."""
        return self.connect_timeout_s if self.webrtc_timeout_s is None else self.webrtc_timeout_s


def from_env(env: Mapping[str, str] | None = None) -> LinkConfig:
    source = os.environ if env is None else env
    key = source.get("OPENAI_API_KEY", "").strip()
    return LinkConfig(
        service=service_config(SERVICE, env),
        api_key=Secret(key or SIMULATOR_KEY),
        base_url=env_str("VOXRELAY_OPENAI_BASE_URL", DEFAULT_BASE_URL, env).strip().rstrip("/"),
        model=env_str("VOXRELAY_OPENAI_MODEL", DEFAULT_MODEL, env).strip(),
        ice_hosts=env_list("VOXRELAY_ICE_HOSTS", env),
        ice_servers=env_list("VOXRELAY_ICE_SERVERS", env) or (),
        connect_timeout_s=env_float("VOXRELAY_OPENAI_CONNECT_TIMEOUT_S", CONNECT_TIMEOUT_S, env),
        key_from_env=bool(key),
        transport=env_str("VOXRELAY_OPENAI_TRANSPORT", "auto", env).strip().lower(),
        webrtc_timeout_s=(env_float("VOXRELAY_OPENAI_WEBRTC_TIMEOUT_S", 0.0, env)
                          if source.get("VOXRELAY_OPENAI_WEBRTC_TIMEOUT_S", "").strip()
                          else None),
        rollover_after_s=env_float("VOXRELAY_OPENAI_ROLLOVER_AFTER_S", ROLLOVER_AFTER_S, env),
        rollover_grace_s=env_float("VOXRELAY_OPENAI_ROLLOVER_GRACE_S", ROLLOVER_GRACE_S, env),
        tool_modules=_tool_modules(env),
    )


def _tool_modules(env: Mapping[str, str] | None) -> tuple[str, ...]:
    modules = env_list("VOXRELAY_TOOLS", env)
    return DEFAULT_MODULES if modules is None else modules
