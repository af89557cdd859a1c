"""The signaling process: HTTP API + bus membership (events out, heartbeats in)."""

from __future__ import annotations

import dataclasses
import logging
import sys

from aiohttp import web

from proto import events, rpc
from services.runtime.bus import EventSubscriber
from services.runtime.heartbeat import Registry
from services.runtime.service import Service, ServiceConfig

from .api import create_api
from .auth import Authorizer
from .conductor import Conductor
from .config import SignalingConfig, with_secrets
from .placement import Placement
from .recovery import Recovery
from .tls import server_context
from .tokens import TokenSigner
from .ws_bridge import WsBridge

logger = logging.getLogger(__name__)


async def serve(config: SignalingConfig, service_config: ServiceConfig) -> None:
    config = with_secrets(config)
    ssl_context = server_context(config) if config.tls else None
    service = Service(service_config)
    registry = Registry()
    placement = Placement(service.ctx, registry, wait_s=config.placement_wait_s)
    signer = TokenSigner(config.token_secret.reveal().encode())
    conductor = Conductor(config, placement, service.events, signer)
    authorizer = Authorizer(config, conductor, signer)
    if config.dev_mode:
        logger.warning("no VOXRELAY_ADMIN_KEY: the API is open to this machine (dev mode)")
    bridge = WsBridge(conductor, authorizer, service.ctx, service_config.audio_bind,
                      service.instance)
    service.audio_endpoint = bridge.audio.endpoint  # the mixer hears WebSocket clients here
    service.tend_publisher(bridge.audio.pub)

    def on_event(event: events.AnyEvent) -> None:
        bridge.on_event(event)
        match event:
            case events.ClientJoined() | events.ClientLeft():
                session = conductor.sessions.get(event.session_id)
                client = session.clients.get(event.client_id) if session else None
                if client is None:
                    return
                if isinstance(event, events.ClientJoined):
                    client.connected = True
                elif event.reason != "replaced" and event.producer in ("", client.edge):
                    client.connected = False  # not the end of a connection it reconnected

    subscriber = EventSubscriber(service.ctx, service_config.bus, service.instance,
                                 on_event=on_event, on_heartbeat=registry.observe)
    subscriber.start()
    bridge.audio.start()
    app = create_api(conductor, authorizer)
    bridge.add_routes(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.http_host, config.http_port, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked for
    conductor.config = dataclasses.replace(config, http_port=port)  # join links use it
    scheme = "https" if ssl_context else "http"
    local = "127.0.0.1" if config.http_host in ("0.0.0.0", "::", "") else config.http_host
    service.metrics_url = f"{scheme}://{local}:{port}/metrics"
    sys.stdout.write(f"signaling listening on {scheme}://{config.http_host}:{port}\n")
    sys.stdout.flush()

    async def handle(request: rpc.AnyRequest) -> rpc.Reply:
        match request:
            case rpc.Ping():
                return rpc.Ok()
            case rpc.RemoveClient() | rpc.StopSession() | rpc.StartSession():
                return await bridge.handle(request)  # for its WebSocket clients
        raise rpc.RpcError("bad_request", f"signaling does not serve {type(request).__name__}")

    try:
        await service.run(handle, load=lambda: len(conductor.sessions),
                          tasks=(Recovery(conductor).run,))
    finally:
        await bridge.close()
        await runner.cleanup()  # stop intake first
        subscriber.close()
        bridge.audio.close()
        placement.close()
