"""The ``voxrelay sessions`` and ``voxrelay export`` commands (argument parsing, output).

Exit codes: 0 done, 1 the server said no (unknown session, nothing recorded), 2 it could
not be reached or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from services.runtime import ConfigError, env_int

from .api import Api, InspectError
from .conversation import Conversation, clock, duration, render_text
from .export import export, transcript_json

DEFAULT_HTTP_PORT = 8080


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="signaling URL (default http://127.0.0.1:"
                        "<VOXRELAY_HTTP_PORT or 8080>)")
    parser.add_argument("--cafile", help="CA certificate to trust (a --tls stack: DATA_DIR/tls/ca.pem)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")


def add_sessions(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--limit", type=int, default=20, help="how many, newest first (1..500)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="sessions_command")
    show = sub.add_parser("show", help="one session's transcript with speakers and latencies")
    show.add_argument("session_id")
    add_common(show)
    show.add_argument("--json", action="store_true", help="print JSON")


def add_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id")
    parser.add_argument("--out", required=True, help="folder to write (created if missing)")
    add_common(parser)


def add_replay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id")
    add_common(parser)
    parser.add_argument("--speed", type=float, default=1.0,
                        help="timeline speed: 2 takes half the time (events-only: 0 = no pauses)")
    parser.add_argument("--compare", action="store_true",
                        help="then print how the replay differs from the original (exit 1 if it does)")
    parser.add_argument("--events-only", action="store_true",
                        help="replay the recorded events alone, without audio or a stack")
    parser.add_argument("--to", choices=("stdout", "bus"), default="stdout",
                        help="--events-only: where the events go (bus: VOXRELAY_BUS_PUBLISH)")


def api_for(args: argparse.Namespace) -> Api:
    if args.timeout <= 0:
        raise InspectError(f"'--timeout' must be > 0 (got {args.timeout:g})")
    try:
        port = env_int("VOXRELAY_HTTP_PORT", DEFAULT_HTTP_PORT, minimum=1, maximum=65535)
    except ConfigError as e:
        raise InspectError(str(e)) from e
    return Api(args.url or f"http://127.0.0.1:{port}", args.timeout, args.cafile,
               key=os.environ.get("VOXRELAY_API_KEY") or os.environ.get("VOXRELAY_ADMIN_KEY", ""))


def run_sessions(args: argparse.Namespace) -> int:
    return _guarded("sessions", lambda: _sessions(args))


def run_export(args: argparse.Namespace) -> int:
    return _guarded("export", lambda: _export(args))


def run_replay(args: argparse.Namespace) -> int:
    return _guarded("replay", lambda: asyncio.run(_replay(args)))


def _guarded(command: str, body: Any) -> int:
    try:
        return int(body())
    except InspectError as e:
        sys.stderr.write(f"voxrelay {command}: {e}\n")
        return 2 if "cannot reach" in str(e) or "must be" in str(e) else 1


def _sessions(args: argparse.Namespace) -> int:
    api = api_for(args)
    if args.sessions_command == "show":
        conv = Conversation.from_events(args.session_id, api.event_log(args.session_id).events)
        if not conv.events:
            raise InspectError(f"no events recorded for session {args.session_id}")
        sys.stdout.write(json.dumps(transcript_json(conv), indent=2) + "\n" if args.json
                         else render_text(conv))
        return 0
    if not 1 <= args.limit <= 500:
        raise InspectError(f"'--limit' must be within 1..500 (got {args.limit})")
    sessions = api.history(limit=args.limit)
    if args.json:
        sys.stdout.write(json.dumps(sessions, indent=2) + "\n")
        return 0
    sys.stdout.write(render_list(sessions))
    return 0


def render_list(sessions: list[dict[str, Any]]) -> str:
    if not sessions:
        return "no sessions recorded yet\n"
    lines = [f"{'started':19}  {'session':32}  {'state':6}  {'lasted':>10}  {'turns':>5}  "
             "speakers  name"]
    for s in sessions:
        ended, created = s.get("ended_at"), s.get("created_at")
        lasted = duration(ended - created) if ended and created else "-"
        turns = (s.get("user_turns") or 0) + (s.get("assistant_turns") or 0)
        lines.append(f"{clock(created):19}  {s['session_id']:32}  {s.get('state', ''):6}  "
                     f"{lasted:>10}  {turns:>5}  {', '.join(s.get('speakers') or []) or '-'}  "
                     f"{s.get('name', '')}")
    return "\n".join(lines) + "\n"


async def _replay(args: argparse.Namespace) -> int:
    from . import event_replay, replay

    api = api_for(args)
    if args.events_only:
        if args.speed < 0:
            raise InspectError(f"'--speed' must be >= 0 (got {args.speed:g})")
        log = api.event_log(args.session_id).events
        if not log:
            raise InspectError(f"no events recorded for session {args.session_id}")
        if args.to == "bus":
            sid, count = await event_replay.to_bus(log, args.speed)
            sys.stderr.write(f"published {count} events on the bus as session {sid}\n")
        else:
            await event_replay.paced(log, args.speed, event_replay.to_stdout(sys.stdout.write))
        return 0
    _pin_ice_hosts(api.url)
    recorded = await asyncio.to_thread(replay.plan, api, args.session_id)
    done = await replay.replay(api.url, recorded, args.speed, headers=api.headers,
                               say=lambda line: sys.stderr.write(line + "\n"))
    sys.stdout.write(f"{done.session_id}\n")
    if not args.compare:
        return 0
    original = api.event_log(args.session_id).events
    replayed = api.event_log(done.session_id).events
    same, report = replay.compare(original, replayed, args.session_id, done.session_id)
    sys.stdout.write(report)
    return 0 if same else 1


def _pin_ice_hosts(url: str) -> None:
    """The replay's peers gather host candidates on ``VOXRELAY_ICE_HOSTS``, as the
    services do; unset, a stack on this machine's loopback is reached over loopback."""
    from urllib.parse import urlsplit

    from services.runtime import configure_ice_hosts, env_list

    hosts = env_list("VOXRELAY_ICE_HOSTS")
    if not hosts and urlsplit(url).hostname in ("127.0.0.1", "localhost"):
        hosts = ["127.0.0.1"]
    configure_ice_hosts(list(hosts) if hosts else None)


def _export(args: argparse.Namespace) -> int:
    done = export(api_for(args), args.session_id, Path(args.out))
    if not done.events:
        raise InspectError(f"no events recorded for session {args.session_id}")
    sys.stdout.write(f"exported {done.events} events, {done.turns} turns and "
                     f"{done.audio_files} audio files ({done.audio_bytes / 1e6:.1f} MB) to "
                     f"{done.folder} (open report.html)\n")
    return 0
