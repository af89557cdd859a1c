"""What ``voxrelay up`` starts: ports, data directory, number of edges, simulator or not."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.runtime.config import env_bool, env_int, env_str
from services.runtime.curve import cluster_key_from_env

DEFAULT_HTTP_PORT = 8080
DEFAULT_SIM_PORT = 8765
DEFAULT_BUS_PUBLISH_PORT = 7701
DEFAULT_BUS_SUBSCRIBE_PORT = 7702
DEFAULT_METRICS_PORT = 9470


@dataclass(frozen=True)
class UpConfig:
    host: str
    http_port: int
    data_dir: Path
    edges: int
    bus_publish: str
    bus_subscribe: str
    use_simulator: bool
    sim_port: int
    ice_hosts: str | None
    "Comma-separated ICE host addresses for every aiortc peer (None: all interfaces)."
    metrics_base_port: int
    "0: no per-service metrics ports; else the layout of supervisor.metrics_port from here."
    tls: bool = False
    "Signaling serves HTTPS (a self-signed certificate in DATA_DIR/tls unless given)."

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.http_port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="HTTP address (default 127.0.0.1; VOXRELAY_HTTP_HOST)")
    parser.add_argument("--port", type=int, help=f"HTTP port (default {DEFAULT_HTTP_PORT}; "
                        "VOXRELAY_HTTP_PORT)")
    parser.add_argument("--data-dir", help="where recordings live (default ./data; VOXRELAY_DATA_DIR)")
    parser.add_argument("--edges", type=int, help="media edges (default: one per core; VOXRELAY_EDGES)")
    parser.add_argument("--sim-port", type=int, help=f"simulator port (default {DEFAULT_SIM_PORT})")
    parser.add_argument("--loopback", action="store_true",
                        help="WebRTC on 127.0.0.1 only (this machine's browsers only)")
    parser.add_argument("--metrics-port", type=int,
                        help=f"first of the per-service /metrics ports (default "
                        f"{DEFAULT_METRICS_PORT}; 0: off; VOXRELAY_METRICS_BASE_PORT)")
    parser.add_argument("--tls", action="store_true",
                        help="serve HTTPS, as phones need for the microphone (VOXRELAY_TLS; "
                        "certificate: VOXRELAY_TLS_CERT/VOXRELAY_TLS_KEY or DATA_DIR/tls)")


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> UpConfig:
    source = os.environ if env is None else env
    data_dir = Path(args.data_dir or env_str("VOXRELAY_DATA_DIR", "./data", env))
    http_port = args.port if args.port is not None else env_int(
        "VOXRELAY_HTTP_PORT", DEFAULT_HTTP_PORT, env, minimum=0, maximum=65535)
    edges = args.edges if args.edges is not None else env_int(
        "VOXRELAY_EDGES", os.cpu_count() or 1, env, minimum=1, maximum=64)
    ice_hosts = "127.0.0.1" if args.loopback else source.get("VOXRELAY_ICE_HOSTS")
    bus_publish = env_str("VOXRELAY_BUS_PUBLISH", f"tcp://127.0.0.1:{DEFAULT_BUS_PUBLISH_PORT}",
                          env)
    bus_subscribe = env_str("VOXRELAY_BUS_SUBSCRIBE",
                            f"tcp://127.0.0.1:{DEFAULT_BUS_SUBSCRIBE_PORT}", env)
    # A bad CURVE key or an exposed bus fails here, once, not in every child at each restart.
    cluster_key_from_env({"VOXRELAY_BUS_PUBLISH": bus_publish,
                          "VOXRELAY_BUS_SUBSCRIBE": bus_subscribe}, env)
    return UpConfig(
        host=args.host or env_str("VOXRELAY_HTTP_HOST", "127.0.0.1", env),
        http_port=http_port,
        data_dir=data_dir,
        edges=edges,
        bus_publish=bus_publish,
        bus_subscribe=bus_subscribe,
        use_simulator=not source.get("OPENAI_API_KEY"),
        sim_port=args.sim_port if args.sim_port is not None else env_int(
            "VOXRELAY_SIM_PORT", DEFAULT_SIM_PORT, env, minimum=0, maximum=65535),
        ice_hosts=ice_hosts,
        metrics_base_port=args.metrics_port if args.metrics_port is not None else env_int(
            "VOXRELAY_METRICS_BASE_PORT", DEFAULT_METRICS_PORT, env, minimum=0, maximum=65535),
        tls=args.tls or env_bool("VOXRELAY_TLS", False, env),
    )
