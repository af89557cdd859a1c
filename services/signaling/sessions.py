"""The session registry: what signaling knows of each conversation and who holds it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from proto import rpc


@dataclass
class Client:
    client_id: str
    name: str
    role: str
    transport: str
    edge: str
    joined_at: float = field(default_factory=time.time)
    connected: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "name": self.name, "role": self.role,
                "transport": self.transport, "edge": self.edge, "connected": self.connected,
                "joined_at": self.joined_at}


@dataclass
class Session:
    session_id: str
    tenant_id: str
    token: str
    "The session token of the join link (``tokens.py``; ``auth.py`` says what it opens)."
    name: str
    instructions: str
    voice: str
    record: bool
    mixer: str
    link: str
    recorder: str
    created_at: float = field(default_factory=time.time)
    profile: str = ""
    "'' (a conversation) or 'interview'."
    questions: tuple[rpc.Question, ...] = ()
    state: str = "active"
    clients: dict[str, Client] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "tenant_id": self.tenant_id,
            "name": self.name,
            "state": self.state,
            "created_at": self.created_at,
            "voice": self.voice,
            "record": self.record,
            "profile": self.profile,
            "questions": [{"domain": q.domain, "difficulty_tier": q.difficulty_tier,
                           "text": q.text} for q in self.questions],
            "clients": [c.to_json() for c in self.clients.values()],
            "mixer": self.mixer,
            "link": self.link,
            "recorder": self.recorder,
            "edges": sorted({c.edge for c in self.clients.values()}),
        }
