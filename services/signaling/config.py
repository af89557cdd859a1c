"""signaling configuration: ``VOXRELAY_HTTP_*``, access (``auth.py``) and the limits."""

from __future__ import annotations

from collections.abc import Mapping
import ipaddress
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

import ifaddr

from proto import rpc
from services.runtime import recordings
from services.runtime.config import (
    ConfigError,
    Secret,
    env_bool,
    env_float,
    env_int,
    env_str,
)

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
    admin_key: Secret = field(default_factory=lambda: Secret(""))
    """``VOXRELAY_ADMIN_KEY``. Unset on loopback: dev mode. Unset on any other address:
    one is made and kept in ``<data_dir>/admin-key`` (:func:`with_secrets`)."""
    token_secret: Secret = field(default_factory=lambda: Secret(""))
    "``VOXRELAY_TOKEN_SECRET`` (≥ 32 characters), else kept in ``<data_dir>/token-secret``."
    token_ttl_s: float = 24 * 3600.0
    "``VOXRELAY_TOKEN_TTL_S``: how long a session or tenant token stays valid."
    max_sessions_per_tenant: int = 100
    "``VOXRELAY_MAX_SESSIONS_PER_TENANT``: active sessions; one more gets 429."
    session_rate_per_min: float = 30.0
    "``VOXRELAY_SESSION_RATE_PER_MIN``: sessions one IP address may create per minute."
    session_rate_burst: int = 10
    max_sdp_lines: int = 1000
    max_candidates: int = 64
    "Candidates one offer may carry (Chromium offers a handful per interface)."
    cors_origins: tuple[str, ...] = ()
    "``VOXRELAY_CORS_ORIGINS`` (comma-separated): origins whose pages may call the API."
    tls: bool = False
    "Serve HTTPS (tls.py: a certificate kept in <data_dir>/tls/, or tls_cert/tls_key)."
    tls_cert: str = ""
    tls_key: str = ""
    data_dir: str = "./data"
    recordings_dir: Path = Path("./data") / recordings.RECORDINGS_SUBDIR
    "``VOXRELAY_RECORDINGS_DIR``: where the recorder keeps sessions' audio (served read-only)."
    interview_questions: tuple[rpc.Question, ...] = ()
    "``VOXRELAY_INTERVIEW_QUESTIONS`` (a JSON or TOML file): an interview's default questions."

    @property
    def loopback_only(self) -> bool:
        try:
            return ipaddress.ip_address(self.http_host).is_loopback
        except ValueError:
            return self.http_host == "localhost"

    @property
    def dev_mode(self) -> bool:
        """No admin key and nothing but this machine can reach the API: open."""
        return not self.admin_key and self.loopback_only

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
        admin_key=Secret(env_str("VOXRELAY_ADMIN_KEY", "", env)),
        token_secret=_token_secret(env),
        token_ttl_s=env_float("VOXRELAY_TOKEN_TTL_S", 24 * 3600.0, env, minimum=10.0),
        max_sessions_per_tenant=env_int("VOXRELAY_MAX_SESSIONS_PER_TENANT", 100, env,
                                        minimum=1),
        session_rate_per_min=env_float("VOXRELAY_SESSION_RATE_PER_MIN", 30.0, env,
                                       minimum=0.1),
        cors_origins=tuple(o.strip().rstrip("/") for o in
                           env_str("VOXRELAY_CORS_ORIGINS", "", env).split(",") if o.strip()),
        interview_questions=_interview_questions(env),
    )


def _interview_questions(env: Mapping[str, str] | None) -> tuple[rpc.Question, ...]:
    from .interview import QuestionsError, load_questions
    path = env_str("VOXRELAY_INTERVIEW_QUESTIONS", "", env).strip()
    if not path:
        return ()
    try:
        return load_questions(path)
    except QuestionsError as e:
        raise ConfigError("VOXRELAY_INTERVIEW_QUESTIONS", str(e)) from e


def _token_secret(env: Mapping[str, str] | None) -> Secret:
    value = env_str("VOXRELAY_TOKEN_SECRET", "", env)
    if value and len(value) < 32:
        raise ConfigError("VOXRELAY_TOKEN_SECRET", "must be at least 32 characters")
    return Secret(value)


def with_secrets(config: SignalingConfig) -> SignalingConfig:
    """Fill in the token secret, and the admin key off loopback, from files in the data
    dir (made on first start, readable by the owner only), unless the environment set them."""
    folder = Path(config.data_dir)
    token_secret = config.token_secret or Secret(_kept_secret(folder / "token-secret"))
    admin_key = config.admin_key
    if not admin_key and not config.loopback_only:
        admin_key = Secret(_kept_secret(folder / ADMIN_KEY_FILE))
    return replace(config, token_secret=token_secret, admin_key=admin_key)


ADMIN_KEY_FILE = "admin-key"


def _kept_secret(path: Path) -> str:
    """The secret in ``path``, made there (mode 0600) if it is not yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if len(value) < 32:
            raise ConfigError(str(path), "holds no usable secret; delete it to make a new one")
        return value
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _tls_path(key: str, partner: str, env: Mapping[str, str] | None) -> str:
    """A certificate or key path; the two are given together or not at all."""
    value, other = env_str(key, "", env), env_str(partner, "", env)
    if other and not value:
        raise ConfigError(key, f"must be set together with {partner}")
    return value
