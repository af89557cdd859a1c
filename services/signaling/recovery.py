"""Sessions outlive a crashed mixer or link: signaling resumes them on a live instance.

Signaling knows every session's state (its clients, their edges, which mixer and link
hold it), so when one of those processes is lost it can rebuild what the process held:

- a *restart* — the same instance name beating with another pid or start time (the
  supervisor restarted it) — is resumed on that instance;
- a *death* — no heartbeat for ``DEAD_AFTER_S`` — is re-placed on another live instance
  of the kind, if there is one (else it waits for one to come).

Resuming a mixer: ``StartSession`` (with the link's ``aud/model`` endpoint) and an
``AddClient`` per speaker, then ``StartSession`` to the link with the new ``aud/mix``
endpoint (the link follows it). Resuming a link: ``StartSession`` with the recorded
transcript as ``context`` (the model is given the conversation so far) and an
``AddClient`` per client (the first one opens the Realtime connection), then
``StartSession`` to the mixer and to every edge holding clients with the new
``aud/model`` endpoint. Every call is bounded; a session whose resumption fails is tried
again on the next check.

Edges are not resumed here: their clients' peer connections died with them, and it is
the clients that reconnect.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from proto import rpc
from proto.heartbeat import Heartbeat

from .conductor import ApiError, Conductor
from .placement import NoInstance
from .sessions import Session

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.5
CONTEXT_ENTRIES = 50
"Recorded transcript entries a resumed link is given (the link bounds them again)."
RESUMED_KINDS = ("mixer", "openai_link")


class Recovery:
    def __init__(self, conductor: Conductor) -> None:
        self.conductor = conductor
        self._seen: dict[str, tuple[int, float]] = {}
        "Instance name → (pid, started_at) of the process last seen beating under it."
        self._stale: set[tuple[str, str]] = set()
        "(session id, kind) whose holder restarted or died and is not yet resumed."
        self.resumed = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            self.check()
            await self.resume_stale()

    def check(self) -> None:
        """Note the sessions whose mixer or link restarted or died since the last check."""
        registry = self.conductor.placement.registry
        restarted = set()
        for beat in registry.alive():
            ident = (beat.pid, beat.started_at)
            previous = self._seen.get(beat.instance)
            self._seen[beat.instance] = ident
            if previous is not None and previous != ident:
                logger.warning("%s restarted (pid %d → %d)", beat.instance, previous[0],
                               beat.pid)
                restarted.add(beat.instance)
        for session in self.conductor.sessions.values():
            if session.state != "active":
                continue
            for kind in RESUMED_KINDS:
                holder = _holder(session, kind)
                if holder in restarted or registry.get(holder) is None:
                    self._stale.add((session.session_id, kind))

    async def resume_stale(self) -> None:
        for session_id, kind in sorted(self._stale):
            session = self.conductor.sessions.get(session_id)
            if session is None or session.state != "active":
                self._stale.discard((session_id, kind))
                continue
            try:
                if kind == "mixer":
                    await self._resume_mixer(session)
                else:
                    await self._resume_link(session)
            except (rpc.RpcError, NoInstance, TimeoutError) as e:
                logger.warning("session %s: resuming its %s failed (%s); trying again",
                               session_id, kind, e)
                continue
            self._stale.discard((session_id, kind))
            self.resumed += 1

    # -- resuming ---------------------------------------------------------------------------

    def _live(self, name: str, kind: str) -> Heartbeat:
        """The instance ``name`` if it is alive (restarted), else another of its kind."""
        placement = self.conductor.placement
        return placement.registry.get(name) or placement.pick(kind)

    async def _resume_mixer(self, session: Session) -> None:
        mixer = self._live(session.mixer, "mixer")
        link = self.conductor.placement.instance(session.link)
        await self._call(mixer, self._start(session, mixer, link))
        for client in session.clients.values():
            edge = self.conductor.placement.registry.get(client.edge)
            if edge is not None:
                await self._call(mixer, self._add(session, client.client_id, edge, link))
        await self._call(link, self._start(session, mixer, link))
        session.mixer = mixer.instance
        logger.info("session %s resumed on %s", session.session_id, mixer.instance)

    async def _resume_link(self, session: Session) -> None:
        link = self._live(session.link, "openai_link")
        mixer = self.conductor.placement.instance(session.mixer)
        start = self._start(session, mixer, link)
        context = await self._recorded(session)
        await self._call(link, msgspec.structs.replace(start, context=context))
        for client in session.clients.values():
            edge = self.conductor.placement.registry.get(client.edge)
            if edge is not None:
                await self._call(link, self._add(session, client.client_id, edge, link),
                                 self.conductor.config.join_timeout_s)
        await self._call(mixer, start)
        for name in {c.edge for c in session.clients.values()}:
            edge = self.conductor.placement.registry.get(name)
            if edge is not None:
                await self._call(edge, start)
        session.link = link.instance
        logger.info("session %s resumed on %s", session.session_id, link.instance)

    async def _recorded(self, session: Session) -> list[rpc.TranscriptEntry]:
        """The conversation so far, as recorded (the new link gives it to the model);
        without the recorder, none: the conversation carries on, forgetting."""
        try:
            entries = await self.conductor.transcript(session.session_id)
        except (ApiError, NoInstance) as e:  # the recorder is not there now
            logger.warning("session %s: no recorded transcript for its new link (%s)",
                           session.session_id, e)
            return []
        return entries[-CONTEXT_ENTRIES:]

    def _start(self, session: Session, mixer: Heartbeat, link: Heartbeat) -> rpc.StartSession:
        return rpc.StartSession(session_id=session.session_id, tenant_id=session.tenant_id,
                                name=session.name,
                                instructions=session.instructions, voice=session.voice,
                                record=session.record, mixer_audio=mixer.audio,
                                link_audio=link.audio, profile=session.profile,
                                questions=list(session.questions))

    def _add(self, session: Session, client_id: str, edge: Heartbeat,
             link: Heartbeat) -> rpc.AddClient:
        client = session.clients[client_id]
        return rpc.AddClient(session_id=session.session_id, client_id=client_id, sdp="",
                             name=client.name, role=client.role, transport=client.transport,
                             edge_audio=edge.audio, link_audio=link.audio)

    async def _call(self, target: Heartbeat, request: rpc.Request,
                    timeout: float | None = None) -> None:
        client = self.conductor.placement.client(target)
        await client.call(request, timeout or self.conductor.config.rpc_timeout_s)


def _holder(session: Session, kind: str) -> str:
    return session.mixer if kind == "mixer" else session.link
