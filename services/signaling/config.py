"""signaling configuration: ``VOXRELAY_HTTP_*`` and the session limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import ifaddr

from services.runtime import recordings
from services.runtime.config import ConfigError, env_bool, env_float, env_int, env_str

REQUIRED_SERVICES = ("media_edge", "mixer", "openai_link", "recorder")


@dataclass(frozen=True)
class SignalingConfig:
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_url: str = ""
    "Base of join links; default http://<host>:<port>."
    rpc_timeout_s: float = 5.0
    placement_wait_s: float = 10.0
    "New work waits this long for a surely-alive instance (one may be restarting)."
    join_timeout_s: float = 12.0
    "A join waits for the edge's answer and the link's Realtime connection (8 s budget)."
    max_clients_per_session: int = 8
    "``VOXRELAY_MAX_CLIENTS_PER_SESSION``: a join beyond it is refused (409 session_full)."
    max_body_bytes: int = 256 * 1024
    tls: bool = False
    "Serve HTTPS (tls.py: a certificate kept in <data_dir>/tls/, or tls_cert/tls_key)."
    tls_cert: str = ""
    tls_key: str = ""
    data_dir: str = "./data"
    recordings_dir: Path = Path("./data") / recordings.RECORDINGS_SUBDIR
    "``VOXRELAY_RECORDINGS_DIR``: where the recorder keeps sessions' audio (served read-only)."

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.http_host
        if host in ("0.0.0.0", "", "::"):
            # Listening everywhere: a join link must reach this machine from a phone.
            host = lan_address() or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.http_port}"


def lan_address() -> str | None:
    """This machine's first non-loopback IPv4 address (None when it has none)."""
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith(("127.", "169.254.")):
                return ip.ip
    return None


def from_env(env: Mapping[str, str] | None = None) -> SignalingConfig:
    return SignalingConfig(
        http_host=env_str("VOXRELAY_HTTP_HOST", "127.0.0.1", env),
        http_port=env_int("VOXRELAY_HTTP_PORT", 8080, env, minimum=0, maximum=65535),
        public_url=env_str("VOXRELAY_PUBLIC_URL", "", env),
        rpc_timeout_s=env_float("VOXRELAY_RPC_TIMEOUT_S", 5.0, env, minimum=0.1),
        placement_wait_s=env_float("VOXRELAY_PLACEMENT_WAIT_S", 10.0, env, minimum=0.0),
        join_timeout_s=env_float("VOXRELAY_JOIN_TIMEOUT_S", 12.0, env, minimum=1.0),
        max_clients_per_session=env_int("VOXRELAY_MAX_CLIENTS_PER_SESSION", 8, env,
                                        minimum=1, maximum=1000),
        tls=env_bool("VOXRELAY_TLS", False, env),
        tls_cert=_tls_path("VOXRELAY_TLS_CERT", "VOXRELAY_TLS_KEY", env),
        tls_key=_tls_path("VOXRELAY_TLS_KEY", "VOXRELAY_TLS_CERT", env),
        data_dir=env_str("VOXRELAY_DATA_DIR", "./data", env),
        recordings_dir=recordings.recordings_dir(env),
    )


def _tls_path(key: str, partner: str, env: Mapping[str, str] | None) -> str:
    """A certificate or key path; the two are given together or not at all."""
    value, other = env_str(key, "", env), env_str(partner, "", env)
    if other and not value:
        raise ConfigError(key, f"must be set together with {partner}")
    return value
