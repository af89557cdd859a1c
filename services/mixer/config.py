"""mixer configuration: the common service settings and ``VOXRELAY_MIXER_*``.

``VOXRELAY_MIXER_JITTER_FRAMES``     frames buffered per client before playout (default 2)
``VOXRELAY_MIXER_MAX_DEPTH_FRAMES``  frames a client's buffer holds at most (default 6)
``VOXRELAY_MIXER_STALE_MS``          drop frames captured this long before the client's
                                     newest (default 150)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.runtime.config import ConfigError, env_int
from services.runtime.service import ServiceConfig, service_config

from .jitter import MAX_FRAMES, STALE_AFTER_NS, TARGET_FRAMES, JitterSettings

MAX_JITTER_FRAMES = 25
"Half a second: more is a queue, not a jitter buffer."


@dataclass(frozen=True)
class MixerConfig:
    service: ServiceConfig
    jitter: JitterSettings


def from_env(env: Mapping[str, str] | None = None) -> MixerConfig:
    target = env_int("VOXRELAY_MIXER_JITTER_FRAMES", TARGET_FRAMES, env,
                     minimum=1, maximum=MAX_JITTER_FRAMES)
    depth = env_int("VOXRELAY_MIXER_MAX_DEPTH_FRAMES", max(MAX_FRAMES, target), env,
                    minimum=1, maximum=MAX_JITTER_FRAMES)
    if depth < target:
        raise ConfigError("VOXRELAY_MIXER_MAX_DEPTH_FRAMES",
                          f"must be >= VOXRELAY_MIXER_JITTER_FRAMES ({target}) (got {depth})")
    stale_ms = env_int("VOXRELAY_MIXER_STALE_MS", STALE_AFTER_NS // 1_000_000, env,
                       minimum=20, maximum=2000)
    return MixerConfig(
        service=service_config("mixer", env),
        jitter=JitterSettings(target_frames=target, max_frames=depth,
                              stale_after_ns=stale_ms * 1_000_000),
    )
