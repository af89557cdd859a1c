"""Session lifecycle across the services: create, join, leave, end.

Every step is a handshake: signaling answers the HTTP request only after each
service involved acknowledged its RPC (no sleeps, no hoping).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from proto import events, ids, rpc
from proto.heartbeat import Heartbeat
from services.runtime.bus import EventPublisher

from .config import SignalingConfig
from .direct import IssuedKey, IssuedKeys
from .placement import Placement
from .sessions import Client, Session
from .tokens import TokenSigner

logger = logging.getLogger(__name__)

JOIN_GRACE_S = 30.0
"A joined client holds its place this long while it connects (the edges' connect timeout)."


ENDED_KEPT_S = 3600.0
ENDED_KEPT_MAX = 1000
"""An ended session stays held (its state, for ``GET /v1/sessions/{sid}`` and its links'
409 ``session_ended``) until it has been ended an hour and another session ends, or a
thousand more have ended; then it is forgotten: its links answer 404
``session_not_found``, and its record stays readable through the recorder. Without a
bound, signaling grew about 1 KB for every session ever ended."""

CREATE_ATTEMPTS = 2
RETRIED_CODES = frozenset({"timeout", "unavailable"})
"RPC failures after which a new session is placed again (the instance may have died)."


class ApiError(Exception):
    """Becomes an HTTP error ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class EndedSessions:
    """The ended sessions signaling still holds, oldest first: each is let go when a
    later one ends ``keep_s`` or more after it, or once ``max_kept`` ended after it."""

    def __init__(self, keep_s: float = ENDED_KEPT_S, max_kept: int = ENDED_KEPT_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keep_s = keep_s
        self.max_kept = max_kept
        self._clock = clock
        self._ended: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._ended)

    def add(self, session_id: str) -> list[str]:
        """``session_id`` just ended; returns the sessions to let go now."""
        now = self._clock()
        self._ended[session_id] = now
        self._ended.move_to_end(session_id)
        gone = []
        for oldest, at in self._ended.items():
            if now - at < self.keep_s and len(self._ended) - len(gone) <= self.max_kept:
                break
            gone.append(oldest)
        for oldest in gone:
            del self._ended[oldest]
        return gone


@dataclass(frozen=True)
class JoinRequest:
    sdp: str
    name: str
    role: str
    transport: str
    client_id: str = ""
    "A client of the session reconnecting with a fresh offer (it keeps its id and place)."


class Conductor:
    def __init__(self, config: SignalingConfig, placement: Placement,
                 publisher: EventPublisher, signer: TokenSigner) -> None:
        self.config = config
        self.placement = placement
        self.publisher = publisher
        self.signer = signer
        self.sessions: dict[str, Session] = {}
        self._joining: collections.Counter[str] = collections.Counter()
        "Session id → joins in progress (they hold a place until answered or refused)."
        self.issued_keys = IssuedKeys()
        "The ephemeral keys handed out for direct calls, and their sessions."
        self._ended = EndedSessions()

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id) if ids.is_id(session_id) else None
        if session is None:
            raise ApiError(404, "session_not_found", f"no session {session_id!r}")
        return session

    def active_sessions(self, tenant_id: str) -> int:
        return sum(1 for s in self.sessions.values()
                   if s.tenant_id == tenant_id and s.state == "active")

    async def create_session(self, name: str, instructions: str, voice: str,
                             record: bool, tenant_id: str = "default", profile: str = "",
                             questions: tuple[rpc.Question, ...] = ()) -> Session:
        """Place the session on a mixer, a link and a recorder and start it on all three.

        An instance killed a moment ago still beats fresh for up to a second and a half
        and is picked, then times out; the session is then placed again (same id: a
        ``StartSession`` twice is harmless) once, on instances alive after the wait. The
        recorder's answer is not waited for past its timeout (:meth:`_start_recording`).
        """
        session: Session | None = None
        for attempt in range(CREATE_ATTEMPTS):
            mixer, link, recorder = await asyncio.gather(
                self.placement.place("mixer"), self.placement.place("openai_link"),
                self.placement.place("recorder"))
            fields = {"mixer": mixer.instance, "link": link.instance,
                      "recorder": recorder.instance}
            if session is None:
                session_id = ids.new_id()
                token, _ = self.signer.mint("session", tenant_id, session_id,
                                            self.config.token_ttl_s)
                session = Session(session_id=session_id, tenant_id=tenant_id, token=token,
                                  name=name, instructions=instructions, voice=voice,
                                  record=record, profile=profile, questions=questions,
                                  **fields)
            else:
                session = dataclasses.replace(session, **fields)
            start = rpc.StartSession(session_id=session.session_id, tenant_id=tenant_id,
                                     name=name,
                                     instructions=instructions, voice=voice, record=record,
                                     mixer_audio=mixer.audio, link_audio=link.audio,
                                     profile=profile, questions=list(questions))
            try:
                await asyncio.gather(self._all(start, mixer, link),
                                     self._start_recording(start, recorder))
                break
            except ApiError as e:
                if e.code not in RETRIED_CODES or attempt + 1 == CREATE_ATTEMPTS:
                    raise
                logger.warning("session %s: %s; placing it again", session.session_id, e.message)
        assert session is not None
        self.sessions[session.session_id] = session
        self.publisher.publish(events.SessionStarted(
            session_id=session.session_id, name=name, instructions=instructions, voice=voice,
            tenant_id=tenant_id))
        logger.info("session %s started on %s, %s", session.session_id, session.mixer,
                    session.link)
        return session

    async def _start_recording(self, start: rpc.StartSession, recorder: Heartbeat) -> None:
        """The recorder's ``StartSession``: a recorder that is slow to answer (just
        restarted, filling the gaps its crash left) does not hold the conversation up —
        it records the session from its ``session.started`` event and every event after
        it, which its producers keep until it has them. Any other refusal is an error."""
        try:
            await self._all(start, recorder)
        except ApiError as e:
            if e.code not in RETRIED_CODES:
                raise
            logger.warning("session %s starts without the recorder's answer: %s",
                           start.session_id, e.message)

    async def join(self, session: Session, request: JoinRequest) -> tuple[Client, str]:
        if session.state != "active":
            raise ApiError(409, "session_ended", "the session has ended")
        if request.client_id in session.clients:
            return await self._rejoin(session, session.clients[request.client_id], request)
        with self._place(session):
            return await self._join(session, request)

    @contextlib.contextmanager
    def _place(self, session: Session) -> Iterator[None]:
        """Count a join against the session's limit while it is made; 409
        ``session_full`` beyond the limit.

        A client holds a place while connected, and while it may still be connecting;
        one that left (its peer closed or failed) frees its place.
        """
        limit = self.config.max_clients_per_session
        now = time.time()
        present = sum(1 for c in session.clients.values()
                      if c.connected or now - c.joined_at < JOIN_GRACE_S)
        if present + self._joining[session.session_id] >= limit:
            raise ApiError(409, "session_full", f"the session already has {limit} clients "
                           "(VOXRELAY_MAX_CLIENTS_PER_SESSION)")
        self._joining[session.session_id] += 1
        try:
            yield
        finally:
            self._joining[session.session_id] -= 1
            if self._joining[session.session_id] <= 0:
                del self._joining[session.session_id]

    async def _join(self, session: Session, request: JoinRequest) -> tuple[Client, str]:
        edge = await self.placement.place("media_edge")
        mixer = self.placement.instance(session.mixer)
        link = self.placement.instance(session.link)
        client = Client(ids.new_id(), request.name or "guest", request.role, request.transport,
                        edge.instance)
        add = rpc.AddClient(session_id=session.session_id, client_id=client.client_id,
                            sdp=request.sdp, name=client.name, role=client.role,
                            transport=client.transport, edge_audio=edge.audio,
                            link_audio=link.audio)
        timeout = self.config.join_timeout_s
        replies = await self._all(add, mixer, link, edge, timeout=timeout)
        answer = replies[-1]
        if not isinstance(answer, rpc.Answer):
            raise ApiError(502, "bad_answer", f"{edge.instance} did not answer with SDP")
        session.clients[client.client_id] = client
        return client, answer.sdp

    async def _rejoin(self, session: Session, client: Client,
                      request: JoinRequest) -> tuple[Client, str]:
        """The client lost its connection and offers a new one: same id, name and role,
        on its edge if that is alive (the edge replaces the old peer), else on another
        (the old edge is told to drop it). The mixer and link carry on as they were."""
        registry = self.placement.registry
        edge = registry.fresh(client.edge) or await self.placement.place("media_edge")
        if edge.instance != client.edge and registry.fresh(client.edge) is not None:
            await self.best_effort(rpc.RemoveClient(session_id=session.session_id,
                                                     client_id=client.client_id), client.edge)
        mixer = self.placement.instance(session.mixer)
        link = self.placement.instance(session.link)
        add = rpc.AddClient(session_id=session.session_id, client_id=client.client_id,
                            sdp=request.sdp, name=client.name, role=client.role,
                            transport=request.transport, edge_audio=edge.audio,
                            link_audio=link.audio)
        replies = await self._all(add, mixer, link, edge, timeout=self.config.join_timeout_s)
        answer = replies[-1]
        if not isinstance(answer, rpc.Answer):
            raise ApiError(502, "bad_answer", f"{edge.instance} did not answer with SDP")
        client.edge, client.transport, client.connected = edge.instance, request.transport, False
        client.joined_at = time.time()
        logger.info("session %s: client %s reconnected through %s", session.session_id,
                    client.client_id, edge.instance)
        return client, answer.sdp

    async def join_local(self, session: Session, name: str, client_id: str, instance: str,
                         audio: str) -> Client:
        """A client whose audio signaling carries itself (the browser's WebSocket fallback):
        the mixer hears it at ``audio``, the link opens its Realtime connection if needed,
        no edge is involved. With the id of a client of the session (its WebRTC connection
        could not be made), that client moves here: same id, name and role, and the edge
        that held it is told to drop it first."""
        if session.state != "active":
            raise ApiError(409, "session_ended", "the session has ended")
        client = session.clients.get(client_id) if client_id else None
        if client_id and client is None:
            raise ApiError(404, "client_not_found", f"no client {client_id!r} in this session "
                           "to reconnect as")
        with self._place(session) if client is None else contextlib.nullcontext():
            if client is None:
                client = Client(ids.new_id(), name or "guest", "speaker", "websocket", instance)
            elif client.edge != instance:
                await self.best_effort(rpc.RemoveClient(session_id=session.session_id,
                                                         client_id=client.client_id),
                                        client.edge)
            link = self.placement.instance(session.link)
            add = rpc.AddClient(session_id=session.session_id, client_id=client.client_id,
                                sdp="", name=client.name, role=client.role,
                                transport="websocket", edge_audio=audio, link_audio=link.audio)
            await self._all(add, self.placement.instance(session.mixer), link,
                            timeout=self.config.join_timeout_s)
        client.edge, client.transport, client.joined_at = instance, "websocket", time.time()
        session.clients[client.client_id] = client
        return client

    async def leave(self, session: Session, client_id: str) -> None:
        client = session.clients.pop(client_id, None)
        if client is None:
            raise ApiError(404, "client_not_found", f"no client {client_id!r} in this session")
        remove = rpc.RemoveClient(session_id=session.session_id, client_id=client_id)
        await self.best_effort(remove, session.mixer, client.edge)

    async def end(self, session: Session, reason: str = "ended") -> None:
        if session.state == "ended":
            return
        session.state = "ended"
        stop = rpc.StopSession(session_id=session.session_id, reason=reason)
        edges = {c.edge for c in session.clients.values()}
        await self.best_effort(stop, *edges, session.link, session.mixer)
        self.publisher.publish(events.SessionEnded(session_id=session.session_id, reason=reason))
        await self.best_effort(stop, session.recorder)
        session.clients.clear()
        for gone in self._ended.add(session.session_id):
            held = self.sessions.get(gone)
            if held is not None and held.state == "ended":
                del self.sessions[gone]

    async def transcript(self, session_id: str, tenant_id: str = ""
                         ) -> list[rpc.TranscriptEntry]:
        reply = await self._recorder_call(rpc.GetTranscript(session_id=session_id,
                                                            tenant_id=tenant_id))
        assert isinstance(reply, rpc.Transcript)
        return reply.entries

    async def event_log(self, session_id: str, after: int, limit: int, tenant_id: str = ""
                        ) -> tuple[list[events.AnyEvent], int]:
        """A page of the recorded events and the cursor for the next page."""
        reply = await self._recorder_call(rpc.GetEvents(
            session_id=session_id, after_seq=after, limit=limit, tenant_id=tenant_id))
        assert isinstance(reply, rpc.EventLog)
        return reply.events, reply.next_after_seq

    async def history(self, limit: int, before: float | None, tenant_id: str = "",
                      session_id: str = "") -> list[rpc.SessionSummary]:
        """Recorded sessions, newest first, created before ``before`` (if given), only
        ``tenant_id``'s and only ``session_id`` if given."""
        reply = await self._recorder_call(rpc.ListSessions(
            limit=limit, before=before, tenant_id=tenant_id, session_id=session_id))
        assert isinstance(reply, rpc.SessionList)
        return reply.sessions

    async def owner(self, session_id: str) -> str | None:
        """The tenant of a recorded session (None: never recorded)."""
        if not ids.is_id(session_id):
            return None
        found = await self.history(1, None, session_id=session_id)
        return found[0].tenant_id if found else None

    async def mint_client_secret(self, session: Session, ttl_s: int,
                                 name: str = "") -> rpc.ClientSecret:
        """An ephemeral Realtime key for ``session``, minted by its link (which holds the
        standard key; signaling never does), remembered for one direct call by ``name``."""
        if session.state != "active":
            raise ApiError(409, "session_ended", "the session has ended")
        link = self.placement.instance(session.link)
        [reply] = await self._all(rpc.MintClientSecret(session_id=session.session_id,
                                                       ttl_s=ttl_s), link,
                                  timeout=self.config.join_timeout_s)
        assert isinstance(reply, rpc.ClientSecret)
        self.issued_keys.issue(reply.value, IssuedKey(session.session_id, name,
                                                      float(reply.expires_at)))
        return reply

    async def direct_call(self, session: Session, sdp: str, client_secret: str,
                          name: str) -> tuple[Client, rpc.Answer]:
        """A browser's own call to the Realtime API, placed through the session's link
        (which follows its sideband); the browser is a client of the session (transport
        ``direct``, held by the link) until it leaves."""
        if session.state != "active":
            raise ApiError(409, "session_ended", "the session has ended")
        link = self.placement.instance(session.link)
        client = Client(ids.new_id(), name or "guest", "speaker", "direct", link.instance,
                        connected=True)
        call = rpc.DirectCall(session_id=session.session_id, client_id=client.client_id,
                              sdp=sdp, client_secret=client_secret, name=client.name)
        with self._place(session):
            [answer] = await self._all(call, link, timeout=self.config.join_timeout_s)
        if not isinstance(answer, rpc.Answer):
            raise ApiError(502, "bad_answer", f"{link.instance} did not answer with SDP")
        session.clients[client.client_id] = client
        return client, answer

    async def _recorder_call(self, request: rpc.Request) -> rpc.AnyReply:
        session = self.sessions.get(getattr(request, "session_id", ""))
        recorder = (self.placement.instance(session.recorder) if session
                    else self.placement.pick("recorder"))
        try:
            return await self.placement.client(recorder).call(request, self.config.rpc_timeout_s)
        except rpc.RpcError as e:
            raise _api_error(e, recorder.instance) from e

    async def _all(self, request: rpc.Request, *targets, timeout: float | None = None
                   ) -> list[rpc.AnyReply]:
        """Send ``request`` to every target at once; all must acknowledge."""
        timeout = timeout or self.config.rpc_timeout_s
        calls = [self.placement.client(t).call(request, timeout) for t in targets]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for target, result in zip(targets, results, strict=True):
            if isinstance(result, rpc.RpcError):
                raise _api_error(result, target.instance) from result
            if isinstance(result, BaseException):
                raise result
        return list(results)  # type: ignore[arg-type]

    async def best_effort(self, request: rpc.Request, *instances: str) -> None:
        """Tell each instance; a dead or failing one is logged (it holds nothing now)."""
        for name in instances:
            beat = self.placement.registry.get(name)
            if beat is None:
                continue
            try:
                await self.placement.client(beat).call(request, self.config.rpc_timeout_s)
            except rpc.RpcError as e:
                logger.warning("%s to %s failed: %s", type(request).__name__, name, e)


def _api_error(error: rpc.RpcError, instance: str) -> ApiError:
    status = {"not_found": 404, "bad_request": 400, "timeout": 504, "exists": 409}.get(error.code, 502)
    return ApiError(status, error.code, f"{instance}: {error.message}")
