"""media_edge configuration: the service shell's settings plus ``VOXRELAY_EDGE_*`` and ICE."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.runtime import ConfigError, env_bool, env_float, env_int, env_list
from services.runtime.ratelimit import CLIENT_MESSAGE_BURST, CLIENT_MESSAGES_PER_S
from services.runtime.service import ServiceConfig, service_config

SERVICE = "media_edge"
DEFAULT_QUEUE_FRAMES = 10
"Model audio a client's outbound track holds (20 ms frames): 200 ms, then the oldest go."
DEFAULT_CONNECT_TIMEOUT_S = 30.0
"A peer that has not connected this long after its answer is given up."


@dataclass(frozen=True)
class EdgeConfig:
    service: ServiceConfig
    ice_hosts: tuple[str, ...] | None = None
    "ICE host addresses (``VOXRELAY_ICE_HOSTS``); None = every interface."
    ice_servers: tuple[str, ...] = ()
    "STUN/TURN URLs (``VOXRELAY_ICE_SERVERS``); empty = none."
    queue_frames: int = DEFAULT_QUEUE_FRAMES
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    channel_rate: float = CLIENT_MESSAGES_PER_S
    "Messages a second a client may send on its ``events`` channel, sustained..."
    channel_burst: float = CLIENT_MESSAGE_BURST
    "...and at once; beyond that they are dropped unread (counted ``rate``)."
    dtx: bool = True
    """Opus DTX with browsers, both ways (``VOXRELAY_EDGE_DTX``): ``usedtx=1`` in the
    answer, so a quiet microphone sends ~5 packets a second, not 50; and the model's
    pauses sent as DTX to a client whose offer said ``usedtx=1``. On by default when
    silence stays off the bus (``VOXRELAY_BUS_SKIP_SILENCE``), which is what the slots a
    browser leaves out become; with every frame on the bus they would read as losses."""

    def __post_init__(self) -> None:
        if self.queue_frames < 1:
            raise ConfigError("VOXRELAY_EDGE_QUEUE_FRAMES",
                              f"must be >= 1 (got {self.queue_frames})")
        if self.connect_timeout_s <= 0:
            raise ConfigError("VOXRELAY_EDGE_CONNECT_TIMEOUT_S",
                              f"must be > 0 (got {self.connect_timeout_s})")
        if self.channel_rate <= 0:
            raise ConfigError("VOXRELAY_EDGE_CHANNEL_RATE",
                              f"must be > 0 (got {self.channel_rate})")
        if self.channel_burst < 1:
            raise ConfigError("VOXRELAY_EDGE_CHANNEL_BURST",
                              f"must be >= 1 (got {self.channel_burst})")

    @property
    def instance(self) -> str:
        return self.service.instance


def from_env(env: Mapping[str, str] | None = None) -> EdgeConfig:
    service = service_config(SERVICE, env)
    return EdgeConfig(
        service=service,
        ice_hosts=env_list("VOXRELAY_ICE_HOSTS", env),
        ice_servers=env_list("VOXRELAY_ICE_SERVERS", env) or (),
        queue_frames=env_int("VOXRELAY_EDGE_QUEUE_FRAMES", DEFAULT_QUEUE_FRAMES, env,
                             minimum=1, maximum=500),
        connect_timeout_s=env_float("VOXRELAY_EDGE_CONNECT_TIMEOUT_S",
                                    DEFAULT_CONNECT_TIMEOUT_S, env, minimum=0.1),
        channel_rate=env_float("VOXRELAY_EDGE_CHANNEL_RATE", CLIENT_MESSAGES_PER_S, env),
        channel_burst=env_float("VOXRELAY_EDGE_CHANNEL_BURST", CLIENT_MESSAGE_BURST, env),
        dtx=env_bool("VOXRELAY_EDGE_DTX", service.skip_silence, env),
    )
