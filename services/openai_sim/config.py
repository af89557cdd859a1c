"""openai_sim configuration: ``VOXRELAY_SIM_*`` variables, overridable by CLI flags."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from services.runtime import ConfigError, Secret, env_float, env_int, env_list, env_str

from .replies import ReplyMode, ScriptTurn, load_script

DEFAULT_PORT = 8765
DEFAULT_SESSION_CAP_S = 3600.0


@dataclass(frozen=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key: Secret | None = None
    "When set, the only standard key accepted; otherwise any ``sk-…`` bearer is."
    ice_hosts: tuple[str, ...] | None = None
    ice_servers: tuple[str, ...] = ()
    reply_mode: ReplyMode = ReplyMode.DEFAULT
    script: tuple[ScriptTurn, ...] = ()
    script_path: Path | None = None
    response_latency_s: float = 0.3
    "From speech stop (or response.create) to the first audio of the reply."
    ws_pace: float = 4.0
    "How many times faster than real time replies are produced over WebSocket."
    session_cap_s: float = DEFAULT_SESSION_CAP_S
    drop_after_s: float = 0.0
    "Fault switch: drop every call this long after it starts (0 = never)."
    espeak: str = "auto"
    "'auto' uses espeak-ng when installed; 'off' always uses the synthetic signal."

    def __post_init__(self) -> None:
        if self.reply_mode is ReplyMode.SCRIPT and not self.script:
            raise ConfigError("VOXRELAY_SIM_SCRIPT", "reply mode 'script' needs a script file")
        if self.response_latency_s < 0 or self.ws_pace <= 0 or self.session_cap_s <= 0:
            raise ConfigError("VOXRELAY_SIM_*", "latency must be >= 0; pace and cap > 0")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def from_env(env: Mapping[str, str] | None = None) -> SimConfig:
    key = env_str("VOXRELAY_SIM_API_KEY", "", env)
    mode_name = env_str("VOXRELAY_SIM_REPLY_MODE", "", env)
    script_name = env_str("VOXRELAY_SIM_SCRIPT", "", env)
    return _finish(
        SimConfig(
            host=env_str("VOXRELAY_SIM_HOST", "127.0.0.1", env),
            port=env_int("VOXRELAY_SIM_PORT", DEFAULT_PORT, env, minimum=0, maximum=65535),
            api_key=Secret(key) if key else None,
            ice_hosts=env_list("VOXRELAY_ICE_HOSTS", env),
            ice_servers=env_list("VOXRELAY_ICE_SERVERS", env) or (),
            response_latency_s=env_float("VOXRELAY_SIM_RESPONSE_LATENCY_MS", 300, env, minimum=0)
            / 1000,
            ws_pace=env_float("VOXRELAY_SIM_WS_PACE", 4.0, env, minimum=0.01),
            session_cap_s=env_float(
                "VOXRELAY_SIM_SESSION_CAP_S", DEFAULT_SESSION_CAP_S, env, minimum=0.1
            ),
            drop_after_s=env_float("VOXRELAY_SIM_DROP_AFTER_S", 0.0, env, minimum=0),
            espeak=env_str("VOXRELAY_SIM_VOICE", "auto", env),
        ),
        mode_name,
        script_name,
    )


def _finish(config: SimConfig, mode_name: str, script_name: str) -> SimConfig:
    script_path = Path(script_name) if script_name else None
    script = tuple(load_script(script_path)) if script_path else ()
    if mode_name:
        try:
            mode = ReplyMode(mode_name)
        except ValueError as e:
            choices = ", ".join(m.value for m in ReplyMode)
            raise ConfigError("VOXRELAY_SIM_REPLY_MODE", f"one of {choices} (got {mode_name!r})") from e
    else:
        mode = ReplyMode.SCRIPT if script else ReplyMode.DEFAULT
    return replace(config, reply_mode=mode, script=script, script_path=script_path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``voxrelay sim`` flags; each defaults to its environment variable."""
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"port to listen on (default {DEFAULT_PORT}; 0 = any)")
    parser.add_argument("--api-key", help="accept only this standard key (default: any sk-...)")
    parser.add_argument("--reply-mode", choices=[m.value for m in ReplyMode])
    parser.add_argument("--script", help="TOML or JSON file of scripted turns")
    parser.add_argument("--response-latency-ms", type=float, help="speech stop to first audio")
    parser.add_argument("--ws-pace", type=float, help="WebSocket reply speed, x real time")
    parser.add_argument("--session-cap-s", type=float, help="session length cap (default 3600)")
    parser.add_argument("--drop-after-s", type=float, help="fault: drop each call after N s")
    parser.add_argument("--ice-hosts", help="comma-separated ICE host addresses")
    parser.add_argument("--loopback", action="store_true", help="ICE on 127.0.0.1 only")
    parser.add_argument("--voice", choices=["auto", "off"], help="'off' = synthetic signal")


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> SimConfig:
    base = from_env(env)
    changes: dict[str, object] = {}
    for flag, field_name in (
        ("host", "host"), ("port", "port"), ("ws_pace", "ws_pace"),
        ("session_cap_s", "session_cap_s"), ("drop_after_s", "drop_after_s"),
        ("voice", "espeak"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            changes[field_name] = value
    if args.api_key:
        changes["api_key"] = Secret(args.api_key)
    if args.response_latency_ms is not None:
        changes["response_latency_s"] = args.response_latency_ms / 1000
    if args.loopback:
        changes["ice_hosts"] = ("127.0.0.1",)
    elif args.ice_hosts:
        changes["ice_hosts"] = _split(args.ice_hosts)
    config = replace(base, **changes)
    if args.reply_mode or args.script:
        mode = args.reply_mode or (ReplyMode.SCRIPT.value if args.script else "")
        script = args.script or (str(base.script_path) if base.script_path else "")
        config = _finish(config, mode, script)
    return config


def _split(value: str) -> Sequence[str]:
    return tuple(p.strip() for p in value.split(",") if p.strip())
