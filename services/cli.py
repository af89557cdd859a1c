"""The ``voxrelay`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from services.runtime import ConfigError, run_service, setup_logging


def _sim(args: argparse.Namespace) -> int:
    from services.openai_sim import config as sim_config
    from services.openai_sim.replies import ScriptError
    from services.openai_sim.server import serve

    try:
        config = sim_config.from_args(args)
    except (ConfigError, ScriptError) as e:
        sys.stderr.write(f"voxrelay sim: {e}\n")
        return 2
    return run_service(lambda: serve(config))


def _up(args: argparse.Namespace) -> int:
    import asyncio

    from services.supervisor import config as up_config
    from services.supervisor.supervisor import Supervisor

    try:
        config = up_config.from_args(args)
    except ConfigError as e:
        sys.stderr.write(f"voxrelay up: {e}\n")
        return 2
    try:
        import uvloop

        return uvloop.run(Supervisor(config).run())
    except ImportError:  # pragma: no cover
        return asyncio.run(Supervisor(config).run())


def _status(args: argparse.Namespace) -> int:
    from services.supervisor.status import run

    return run(args)


def _keygen(args: argparse.Namespace) -> int:
    from services.runtime.curve import SECRET_KEY_VAR, new_secret_key

    # Quoted: Z85 has $, # and & (never a quote), which shells and .env files would read.
    sys.stdout.write(f"{SECRET_KEY_VAR}='{new_secret_key()}'\n")
    return 0


def _inspect(command: str) -> Callable[[argparse.Namespace], int]:
    """``voxrelay sessions|export|replay``, imported only when run."""

    def run(args: argparse.Namespace) -> int:
        from services.inspect import commands

        return int(getattr(commands, f"run_{command}")(args))

    return run


def build_parser() -> argparse.ArgumentParser:
    from services.openai_sim import config as sim_config
    from services.supervisor import config as up_config
    from services.inspect import commands as inspect
    from services.supervisor import status

    parser = argparse.ArgumentParser(prog="voxrelay", description="Self-hosted realtime voice server")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (default: VOXRELAY_LOG_LEVEL or INFO)")
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("sim", help="run the local OpenAI Realtime simulator")
    sim_config.add_arguments(sim)
    sim.set_defaults(run=_sim)
    up = commands.add_parser("up", help="run the whole stack (simulator unless OPENAI_API_KEY)")
    up_config.add_arguments(up)
    up.set_defaults(run=_up)
    status_cmd = commands.add_parser("status", help="health and latencies of a running stack")
    status.add_arguments(status_cmd)
    status_cmd.set_defaults(run=_status)
    sessions = commands.add_parser("sessions", help="recorded sessions; 'sessions show SID'")
    inspect.add_sessions(sessions)
    sessions.set_defaults(run=_inspect("sessions"))
    export = commands.add_parser("export", help="a session's events, audio and a report")
    inspect.add_export(export)
    export.set_defaults(run=_inspect("export"))
    replay = commands.add_parser("replay", help="run a recorded conversation again")
    inspect.add_replay(replay)
    replay.set_defaults(run=_inspect("replay"))
    keygen = commands.add_parser("keygen", help="a CURVE key for a bus spanning hosts "
                                 "(set it on every service of the deployment)")
    keygen.set_defaults(run=_keygen)
    commands.add_parser("bench", add_help=False,
                        help="measure CPU, memory, delivery and latency per conversation, "
                        "against a baseline bridge (from a voxrelay checkout; --help)")
    return parser


def _bench(argv: Sequence[str]) -> int:
    """``benchmarks/`` is not installed with the package: it is found in the checkout the
    command runs from."""
    checkout = os.getcwd()
    if os.path.isfile(os.path.join(checkout, "benchmarks", "bench.py")) \
            and checkout not in sys.path:
        sys.path.insert(0, checkout)
    try:
        from benchmarks import bench
    except ImportError:
        sys.stderr.write("voxrelay bench: run it from a voxrelay checkout (benchmarks/)\n")
        return 2
    return bench.main(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own options, parsed by benchmarks/bench.py
        setup_logging(None)
        return _bench(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
