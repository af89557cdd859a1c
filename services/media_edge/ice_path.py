"""Which network path a connected peer's ICE chose: direct, or through a TURN relay.

aiortc does not expose the selected candidate pair (it has no ``getStats`` for ICE);
its ``RTCIceTransport`` keeps an aioice ``Connection`` whose ``_nominated`` maps each
component to the pair carrying its data. Those are private, so every step is taken
with ``getattr`` and anything unexpected reads as "not known": an aiortc or aioice
upgrade can make the relay count go quiet, never crash the edge
(tests/unit/test_edge_ice_path.py notices).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)

RELAY = "relay"


def _ice_transports(pc: RTCPeerConnection) -> Iterator[Any]:
    dtls = [t.sender.transport for t in pc.getTransceivers()]
    sctp = pc.sctp
    if sctp is not None:
        dtls.append(sctp.transport)
    seen: set[int] = set()
    for transport in dtls:
        ice = getattr(transport, "transport", None)
        if ice is not None and id(ice) not in seen:
            seen.add(id(ice))
            yield ice


def selected_candidate_types(pc: RTCPeerConnection) -> set[str]:
    """The candidate types (``host``, ``srflx``, ``prflx``, ``relay``) at either end of
    the pairs ICE selected; empty when not connected or not known."""
    types: set[str] = set()
    try:
        for ice in _ice_transports(pc):
            nominated = getattr(getattr(ice, "_connection", None), "_nominated", None)
            if not isinstance(nominated, dict):
                continue
            for pair in nominated.values():
                for candidate in (getattr(pair, "local_candidate", None),
                                  getattr(pair, "remote_candidate", None)):
                    kind = getattr(candidate, "type", None)
                    if isinstance(kind, str):
                        types.add(kind)
    except Exception:  # private state of another library: never worth a crash
        logger.debug("could not read the selected ICE candidate pair", exc_info=True)
        return set()
    return types


def relayed(pc: RTCPeerConnection) -> bool:
    """Whether the connection runs through a TURN relay (either end's candidate)."""
    return RELAY in selected_candidate_types(pc)
