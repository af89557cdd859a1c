"""Run the simulator: bind, announce the URL, serve until cancelled."""

from __future__ import annotations

import asyncio
import logging
import sys

from aiohttp import web

from services.runtime import configure_ice_hosts
from services.runtime.reclaim import freeze_startup
from services.runtime.voice_codec import install_inline_decoding

from .app import create_app
from .config import SimConfig

logger = logging.getLogger(__name__)


async def serve(config: SimConfig) -> None:
    configure_ice_hosts(config.ice_hosts)
    install_inline_decoding()  # callers' audio decoded on the loop, not a thread per call
    runner = web.AppRunner(create_app(config), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked for
    url = SimConfig(host=config.host, port=port).url
    logger.info("openai_sim: mode=%s ice_hosts=%s", config.reply_mode.value,
                ",".join(config.ice_hosts or ()) or "all interfaces")
    sys.stdout.write(f"openai_sim listening on {url}\n")
    sys.stdout.flush()
    freeze_startup()  # closed calls are then collected quickly: see runtime.reclaim
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
