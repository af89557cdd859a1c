"""A whole stack with CURVE on every socket: conversations work, outsiders hear nothing.

``voxrelay up`` runs with ``VOXRELAY_BUS_CURVE_SECRET_KEY`` set, so every service's
sockets are CURVE servers and clients of one cluster keypair. A conversation gets its
reply; a subscriber holding the key hears the services' heartbeats on the bus, and one
without it hears nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from proto import heartbeat, topics
from services.runtime.curve import ClusterKey, new_secret_key, parse_secret_key, secure
from tests.support.converse import converse, stored_transcript
from tests.support.up import Up, running_up

pytestmark = pytest.mark.timeout(180)

HEAR_WAIT_S = 5.0
"Heartbeats come every second: a subscriber that hears none in this long is shut out."
PHRASE = "what is the weather like today"


@pytest.fixture
def key() -> str:
    return new_secret_key()


@pytest.fixture
def stack(tmp_path: Path, key: str) -> Iterator[Up]:
    with running_up(tmp_path, edges=1,
                    env_extra={"VOXRELAY_BUS_CURVE_SECRET_KEY": key}) as up:
        yield up


def hears_a_heartbeat(bus_subscribe: str, cluster: ClusterKey | None) -> bool:
    ctx: zmq.Context[Any] = zmq.Context()
    curve = secure(ctx, cluster)
    sub = ctx.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.LINGER, 0)
        sub.subscribe(topics.SYS_HB)
        sub.connect(bus_subscribe)
        if not sub.poll(HEAR_WAIT_S * 1000):
            return False
        heartbeat.decode(sub.recv_multipart()[1])
        return True
    finally:
        sub.close()
        if curve is not None:
            curve.close()
        ctx.term()


async def test_a_conversation_over_a_curve_bus_gets_its_reply(stack: Up, key: str):
    session = await converse(stack.url, [("kitchen", PHRASE)], "over curve")
    entries = await stored_transcript(stack.url, session["session_id"])
    assert any(e["speaker"] == "assistant" and e["text"] for e in entries), entries

    bus = stack.env["VOXRELAY_BUS_SUBSCRIBE"]
    assert hears_a_heartbeat(bus, parse_secret_key(key))
    assert not hears_a_heartbeat(bus, parse_secret_key(new_secret_key()))
    assert not hears_a_heartbeat(bus, None)
