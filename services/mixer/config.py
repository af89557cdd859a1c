"""mixer configuration: the common service settings and ``VOXRELAY_MIXER_*``.

``VOXRELAY_MIXER_JITTER_FRAMES``     frames buffered per client before playout (default 2)
``VOXRELAY_MIXER_PROMPT_LONE``       mix a lone client's frames as they arrive (default 1)
``VOXRELAY_MIXER_MAX_DEPTH_FRAMES``  frames a client's buffer holds at most (default 6)
``VOXRELAY_MIXER_STALE_MS``          drop frames captured this long before the client's
                                     newest (default 150)
``VOXRELAY_MIXER_ECHO_GATE``         duck microphones that carry the AI's own voice
                                     (default true)
``VOXRELAY_MIXER_ECHO_DUCK_DB``      how much an echo frame is attenuated (default 30)
``VOXRELAY_MIXER_ECHO_MAX_LAG_MS``   the longest echo delay looked for (default 1000)
``VOXRELAY_MIXER_VAD_DBFS``          level from which a frame counts as voice (default -45)
``VOXRELAY_MIXER_VAD_HANGOVER_MS``   silence after which a client stops speaking (default 300)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proto.audio import FRAME_MS
from services.runtime.config import ConfigError, env_bool, env_float, env_int
from services.runtime.service import ServiceConfig, service_config

from .activity import ActivitySettings
from .echo import EchoSettings
from .jitter import MAX_FRAMES, STALE_AFTER_NS, TARGET_FRAMES, JitterSettings
from .session import SessionSettings

MAX_JITTER_FRAMES = 25
"Half a second: more is a queue, not a jitter buffer."


@dataclass(frozen=True)
class MixerConfig:
    service: ServiceConfig
    session: SessionSettings

    @property
    def jitter(self) -> JitterSettings:
        return self.session.jitter


def from_env(env: Mapping[str, str] | None = None) -> MixerConfig:
    service = service_config("mixer", env)
    return MixerConfig(
        service=service,
        session=SessionSettings(jitter=_jitter(env), echo=_echo(env), activity=_activity(env),
                                prompt_lone=env_bool("VOXRELAY_MIXER_PROMPT_LONE", True, env),
                                rest_when_quiet=service.skip_silence),
    )


def _jitter(env: Mapping[str, str] | None) -> JitterSettings:
    target = env_int("VOXRELAY_MIXER_JITTER_FRAMES", TARGET_FRAMES, env,
                     minimum=1, maximum=MAX_JITTER_FRAMES)
    depth = env_int("VOXRELAY_MIXER_MAX_DEPTH_FRAMES", max(MAX_FRAMES, target), env,
                    minimum=1, maximum=MAX_JITTER_FRAMES)
    if depth < target:
        raise ConfigError("VOXRELAY_MIXER_MAX_DEPTH_FRAMES",
                          f"must be >= VOXRELAY_MIXER_JITTER_FRAMES ({target}) (got {depth})")
    stale_ms = env_int("VOXRELAY_MIXER_STALE_MS", STALE_AFTER_NS // 1_000_000, env,
                       minimum=20, maximum=2000)
    return JitterSettings(target_frames=target, max_frames=depth,
                          stale_after_ns=stale_ms * 1_000_000)


def _echo(env: Mapping[str, str] | None) -> EchoSettings:
    default = EchoSettings()
    max_lag_ms = env_int("VOXRELAY_MIXER_ECHO_MAX_LAG_MS", default.max_lag_ms, env,
                         minimum=FRAME_MS, maximum=2000)
    if max_lag_ms % FRAME_MS:
        raise ConfigError("VOXRELAY_MIXER_ECHO_MAX_LAG_MS",
                          f"must be a multiple of {FRAME_MS} (got {max_lag_ms})")
    return EchoSettings(
        enabled=env_bool("VOXRELAY_MIXER_ECHO_GATE", default.enabled, env),
        duck_db=env_float("VOXRELAY_MIXER_ECHO_DUCK_DB", default.duck_db, env, minimum=0.0),
        max_lag_ms=max_lag_ms,
    )


def _activity(env: Mapping[str, str] | None) -> ActivitySettings:
    default = ActivitySettings()
    threshold = env_float("VOXRELAY_MIXER_VAD_DBFS", default.threshold_dbfs, env, minimum=-90.0)
    if threshold > 0:
        raise ConfigError("VOXRELAY_MIXER_VAD_DBFS", f"must be <= 0 (got {threshold})")
    hangover_ms = env_int("VOXRELAY_MIXER_VAD_HANGOVER_MS",
                          default.hangover_frames * FRAME_MS, env, minimum=FRAME_MS, maximum=5000)
    return ActivitySettings(threshold_dbfs=threshold,
                            hangover_frames=max(1, hangover_ms // FRAME_MS))
