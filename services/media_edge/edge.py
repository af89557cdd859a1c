"""The media edge service: browsers' peer connections, bridged to the bus.

RPC (from signaling): ``AddClient`` answers a browser's offer and subscribes to the
session's model audio at ``link_audio``; ``StartSession`` moves that subscription to a
new ``link_audio`` (the session's link was restarted or replaced); ``RemoveClient`` and
``StopSession`` close peers; ``Ping`` answers. Audio: every speaker's microphone goes out on the edge's own
``aud/in`` publisher; ``aud/model`` frames go to every local client of their session.
Events: ``client.joined``/``client.left`` are published as peers come and go, and
``client.muted`` when a client (un)mutes itself on its ``events`` channel; the
client-facing events of a session are forwarded to its clients' ``events`` channels,
and ``ai.interrupted`` empties their playout queues at once. Voice to voice: after a
``voice.activity`` speech end in a session it carries (from whichever edge the speaker
is on), the edge times the first audible reply frame handed to each of its clients'
encoders (``voice_to_voice.py``), observes it and publishes ``turn.heard``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import assert_never

import zmq

from proto import events, rpc
from services.runtime import configure_ice_hosts, prompt_triggered_checks
from services.runtime.bus import EventSubscriber
from services.runtime.media import audible
from services.runtime.service import Service
from services.runtime.sockets import Role, bind, make_socket
from services.runtime.tasks import TaskOwner
from services.runtime.voice_codec import VoiceEncoder
from services.runtime.voice_rtp import install_voice_rtp
from services.runtime.zmq_loop import send_nowait

from .config import EdgeConfig
from .downlink import Downlink
from .metrics import CLIENTS, PEER_REBUILDS, VOICE_TO_VOICE
from .peer import ClientInfo, ClientPeer, InvalidOffer
from .tracks import FrameWatch
from .voice_to_voice import ReplyClock

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 3.0
"How long RemoveClient, StopSession and shutdown wait for peers to close."


class MediaEdge:
    """Sessions → clients → peers, with the sockets that carry their audio and events."""

    def __init__(self, config: EdgeConfig, service: Service) -> None:
        self.config = config
        self.service = service
        self.instance = config.instance
        self.audio_pub = make_socket(service.ctx, Role.AUDIO_PUB)
        service.audio_endpoint = bind(self.audio_pub, config.service.audio_bind)
        service.tend_publisher(self.audio_pub)
        self.downlink = Downlink(service.ctx, self._on_model_frame, self.instance)
        self.subscriber = EventSubscriber(service.ctx, config.service.bus, self.instance,
                                          on_event=self._on_event)
        self.owner = TaskOwner(f"{self.instance}-clients")
        self._sessions: dict[str, dict[str, ClientPeer]] = {}
        self._voices: dict[str, VoiceEncoder] = {}
        "Each session's model audio is encoded once, here, for all of its clients."
        self._runs: dict[ClientPeer, asyncio.Task[None]] = {}
        self._replies: dict[str, ReplyClock] = {}
        "Per session carried here: the wait for the AI's reply (voice to voice)."
        self._ready = asyncio.Event()
        self._closing = False
        CLIENTS.set_function(self.load)

    def load(self) -> int:
        """Connected clients (the heartbeat's ``load``)."""
        return sum(p.connected and not p.ended for p in self._peers())

    async def run(self) -> None:
        """Serve until cancelled; then end every peer and close the sockets."""
        await self.owner.start()
        try:
            self.subscriber.start()
            self.downlink.start()
            self._ready.set()
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            await self._shutdown()

    async def handle(self, request: rpc.AnyRequest) -> rpc.Reply:
        match request:
            case rpc.Ping():
                return rpc.Ok()
            case rpc.AddClient():
                return await self._add_client(request)
            case rpc.RemoveClient(session_id=sid, client_id=cid):
                await self._end(self._find(sid, cid), "removed")
                return rpc.Ok()
            case rpc.StopSession(session_id=sid):
                await self._end(list(self._sessions.get(sid, {}).values()), "session_stopped")
                return rpc.Ok()
            case rpc.StartSession(session_id=sid, link_audio=link_audio):
                return self._follow_link(sid, link_audio)
            case (rpc.GetTranscript() | rpc.GetEvents() | rpc.ListSessions()
                  | rpc.MintClientSecret() | rpc.DirectCall()):
                raise rpc.RpcError("bad_request",
                                   f"{self.instance} (media_edge) does not serve "
                                   f"{type(request).__name__}")
            case _:
                assert_never(request)

    def _follow_link(self, session_id: str, link_audio: str) -> rpc.Reply:
        """The session's model audio now comes from ``link_audio`` (its link was replaced
        or restarted); nothing to do for a session without clients here."""
        if session_id in self._sessions and link_audio:
            try:
                self.downlink.attach(session_id, link_audio)
            except zmq.ZMQError as e:
                raise rpc.RpcError("bad_request", f"cannot connect to link_audio "
                                   f"{link_audio!r}: {e}") from e
            logger.info("MediaEdge(%s) follows %s for session %s", self.instance, link_audio,
                        session_id[:8])
        return rpc.Ok()

    # -- clients ----------------------------------------------------------------------

    async def _add_client(self, request: rpc.AddClient) -> rpc.Answer:
        if self._closing:
            raise rpc.RpcError("unavailable", f"{self.instance} is shutting down")
        await self._ready.wait()
        try:
            info = ClientInfo(request.session_id, request.client_id, request.name,
                              request.role, request.transport)
        except ValueError as e:
            raise rpc.RpcError("bad_request", f"AddClient: {e}") from e
        peer = ClientPeer(info, self.config, self._publish_uplink, self._on_joined,
                          on_mute=self._on_mute)
        try:
            answer = await self._answer(peer, request)
        except BaseException:
            await peer.close()
            raise
        self._register(peer)
        logger.info("MediaEdge(%s) answered %s (%s, %s)", self.instance, peer.name,
                    info.role, info.transport)
        return rpc.Answer(sdp=answer, edge=self.instance)

    async def _answer(self, peer: ClientPeer, request: rpc.AddClient) -> str:
        label = peer.name
        try:
            answer = await peer.answer(request.sdp)
        except InvalidOffer as e:
            raise rpc.RpcError("bad_request", f"AddClient({label}): bad SDP offer: {e}") from e
        if self._closing:
            raise rpc.RpcError("unavailable", f"{self.instance} is shutting down")
        if request.link_audio:
            try:
                self.downlink.attach(request.session_id, request.link_audio)
            except zmq.ZMQError as e:
                raise rpc.RpcError("bad_request", f"AddClient({label}): cannot connect to "
                                   f"link_audio {request.link_audio!r}: {e}") from e
        return answer

    def _register(self, peer: ClientPeer) -> None:
        """Make ``peer`` the client's connection; a previous one (a reconnect) is ended."""
        info = peer.info
        clients = self._sessions.setdefault(info.session_id, {})
        old = clients.get(info.client_id)
        if old is not None:
            old.end("replaced")  # stops its uplink: the seq below is final
            peer.uplink.next_seq = old.uplink.next_seq  # one aud/in stream per client
            peer.uplink.muted = old.uplink.muted
            peer.relay_counted = old.relay_counted
            PEER_REBUILDS.inc()
        clients[info.client_id] = peer
        replies = self._replies.get(info.session_id)
        if replies is not None and replies.armed:
            peer.downlink.watch = self._reply_watch(peer)
        self._runs[peer] = self.owner.spawn(self._run_client(peer), f"client-{peer.name}")

    async def _run_client(self, peer: ClientPeer) -> None:
        info = peer.info
        reason = "error"
        try:
            reason = await peer.run()
        finally:
            self._runs.pop(peer, None)
            clients = self._sessions.get(info.session_id, {})
            if clients.get(info.client_id) is peer:
                del clients[info.client_id]
            if not clients:
                self._sessions.pop(info.session_id, None)
                self._replies.pop(info.session_id, None)
                self._voices.pop(info.session_id, None)
                self.downlink.detach(info.session_id)
            self.service.events.publish(events.ClientLeft(
                session_id=info.session_id, client_id=info.client_id, reason=reason))

    def _on_joined(self, peer: ClientPeer) -> None:
        info = peer.info
        logger.info("MediaEdge(%s) client %s connected", self.instance, peer.name)
        self.service.events.publish(events.ClientJoined(
            session_id=info.session_id, client_id=info.client_id, name=info.name,
            role=info.role, transport=info.transport, edge=self.instance))

    def _on_mute(self, peer: ClientPeer, muted: bool) -> None:
        info = peer.info
        self.service.events.publish(events.ClientMuted(
            session_id=info.session_id, client_id=info.client_id, muted=muted))

    def _find(self, session_id: str, client_id: str) -> list[ClientPeer]:
        peer = self._sessions.get(session_id, {}).get(client_id)
        return [] if peer is None else [peer]

    def _peers(self) -> list[ClientPeer]:
        return [p for clients in self._sessions.values() for p in clients.values()]

    async def _end(self, peers: list[ClientPeer], reason: str) -> None:
        """End ``peers`` and wait (bounded) until they have closed."""
        for peer in peers:
            peer.end(reason)
        runs = [self._runs[p] for p in peers if p in self._runs]
        if runs:
            await asyncio.wait(runs, timeout=CLOSE_TIMEOUT_S)

    async def _shutdown(self) -> None:
        self._closing = True
        await self._end(self._peers(), "shutdown")
        await self.owner.aclose()
        self.subscriber.close()
        self.downlink.close()
        self.audio_pub.close()
        logger.info("MediaEdge(%s) closed", self.instance)

    # -- audio and events ---------------------------------------------------------------

    def _publish_uplink(self, parts: list[bytes]) -> bool:
        return send_nowait(self.audio_pub, parts)

    def _on_model_frame(self, session_id: str, pcm: bytes, capture_ns: int) -> None:
        clients = self._sessions.get(session_id)
        if not clients:
            return
        packet = b""
        if any(p.info.transport == "track" for p in clients.values()):
            voice = self._voices.get(session_id)
            if voice is None:
                voice = self._voices[session_id] = VoiceEncoder()
            packet = voice.encode(pcm)  # once for all of the session's track clients
        for peer in clients.values():
            peer.play(pcm, packet, capture_ns)

    def _on_event(self, event: events.AnyEvent) -> None:
        match event:
            case events.AiInterrupted(session_id=sid):
                dropped = sum(p.interrupt() for p in self._sessions.get(sid, {}).values())
                logger.debug("MediaEdge(%s) interrupted %s: %d frames dropped",
                             self.instance, sid[:8], dropped)
            case events.VoiceActivity(session_id=sid, active=active, at=at):
                self._on_voice_activity(sid, active, at)
            case _:
                pass
        if events.tag(event) not in events.CLIENT_FACING:
            return
        clients = self._sessions.get(event.session_id)
        if clients:
            text = events.to_client_json(event)
            for peer in clients.values():
                peer.send_event(text)

    # -- voice to voice ------------------------------------------------------------------

    def _on_voice_activity(self, session_id: str, active: bool, at: float) -> None:
        """Arm (speech end) or disarm (speech start) the session's wait for a reply."""
        clients = self._sessions.get(session_id)
        if not clients:
            return
        replies = self._replies.get(session_id)
        if replies is None:
            replies = self._replies[session_id] = ReplyClock()
        armed = replies.voice_activity(active, at)
        if armed or active:
            for peer in clients.values():
                peer.downlink.watch = self._reply_watch(peer) if armed else None

    def _reply_watch(self, peer: ClientPeer) -> FrameWatch:
        """Shown each model frame handed to ``peer``'s encoder until the reply is heard."""
        session_id, client_id = peer.info.session_id, peer.info.client_id

        def watch(pcm: bytes) -> bool:
            replies = self._replies.get(session_id)
            if replies is None or not replies.waiting(client_id):
                return True
            if not audible(pcm):
                return False
            ended_at = replies.speech_ended_at
            latency = replies.heard(client_id)
            if latency is not None and ended_at is not None:
                self._heard(peer, latency, ended_at)
            return True

        return watch

    def _heard(self, peer: ClientPeer, latency: float, speech_ended_at: float) -> None:
        VOICE_TO_VOICE.observe(latency)
        logger.info("MediaEdge(%s) %s heard the reply %.0f ms after the speech ended",
                    self.instance, peer.name, latency * 1000)
        self.service.events.publish(events.TurnHeard(
            session_id=peer.info.session_id, client_id=peer.info.client_id,
            voice_to_voice_s=latency, speech_ended_at=speech_ended_at))


async def main(config: EdgeConfig) -> None:
    """The media_edge process: one Service, one MediaEdge, until cancelled."""
    configure_ice_hosts(config.ice_hosts)
    prompt_triggered_checks()
    install_voice_rtp()
    service = Service(config.service)
    try:
        edge = MediaEdge(config, service)
    except BaseException:
        await service.close()
        raise
    await service.run(edge.handle, load=edge.load, tasks=(edge.run,))

