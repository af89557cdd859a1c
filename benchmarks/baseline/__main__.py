"""``python -m benchmarks.baseline``: serve the baseline bridge until SIGINT or SIGTERM.

The Realtime API key is ``--api-key``, else ``OPENAI_API_KEY``, else the simulator's
``sk-voxrelay-simulator``. ICE host addresses and servers come from
``VOXRELAY_ICE_HOSTS`` and ``VOXRELAY_ICE_SERVERS``, as for every voxrelay peer
(``127.0.0.1`` keeps WebRTC on loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

import aiohttp
from aiohttp import web

from services.runtime import Secret, configure_ice_hosts, env_list

from .app import make_app
from .bridge import Bridge
from .realtime import DEFAULT_MODEL, RealtimeApi

logger = logging.getLogger("benchmarks.baseline")

SIMULATOR_KEY = "sk-voxrelay-simulator"
"The key used without one: the simulator accepts any sk- key, the real API none like it."


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.baseline",
        description="The baseline bridge: both aiortc legs in one asyncio process.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--openai-base-url", default="https://api.openai.com/v1")
    parser.add_argument("--api-key", help="default: OPENAI_API_KEY, else the simulator's key")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    configure_ice_hosts(env_list("VOXRELAY_ICE_HOSTS"))
    api = RealtimeApi(
        base_url=args.openai_base_url.rstrip("/"),
        api_key=Secret(args.api_key or os.environ.get("OPENAI_API_KEY") or SIMULATOR_KEY),
        model=args.model,
        ice_servers=env_list("VOXRELAY_ICE_SERVERS") or ())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with aiohttp.ClientSession() as http, asyncio.TaskGroup() as tasks:
        bridge = Bridge(api, http, tasks)
        runner = web.AppRunner(make_app(bridge), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port).start()
        logger.info("listening on http://%s:%s (Realtime API at %s)", args.host, args.port,
                    api.base_url)
        await stop.wait()
        logger.info("shutting down")
        await runner.cleanup()
        await bridge.close()


def main(argv: list[str]) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
