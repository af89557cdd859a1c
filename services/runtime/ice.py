"""ICE settings shared by every aiortc peer in voxrelay (edges, link, simulator).

aioice gathers host candidates from every interface but drops ``127.0.0.1``, and
aiortc falls back to a public STUN server when no ICE servers are given. voxrelay
instead takes host addresses from ``VOXRELAY_ICE_HOSTS`` (comma-separated; unset
means the machine's interfaces) and ICE servers from ``VOXRELAY_ICE_SERVERS``
(unset means none), so tests and ``--loopback`` runs stay on 127.0.0.1.

:func:`prompt_triggered_checks` makes aioice answer a peer's connectivity check with a
check of its own at once even when its earlier check on that pair is still being
retransmitted (RFC 8445 section 7.3.1.4), so a connection that was being set up
while the network was down completes as soon as the network is back.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections.abc import Sequence

import aioice.ice
from aioice import stun
from aioice.ice import CandidatePair
from aiortc import RTCConfiguration, RTCIceServer

logger = logging.getLogger(__name__)

_stock_get_host_addresses = aioice.ice.get_host_addresses
_MDNS_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ \S+\.local \d+ .*$")


def configure_ice_hosts(hosts: Sequence[str] | None) -> None:
    """Pin the host addresses aioice gathers candidates on, for this process.

    aioice offers no option for this, so its module-level address lookup is
    replaced; ``None`` restores the stock lookup of every interface.
    """
    if not hosts:
        aioice.ice.get_host_addresses = _stock_get_host_addresses
        return
    pinned = list(hosts)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in pinned if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses
    logger.info("ICE host candidates pinned to %s", ",".join(pinned))


def rtc_configuration(ice_servers: Sequence[str] | None) -> RTCConfiguration:
    """An RTCConfiguration with exactly these ICE server URLs (none when empty)."""
    return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers or ()])


def strip_mdns_candidates(sdp: str) -> str:
    """Drop ``.local`` mDNS candidates, which aioice cannot resolve (they stall ~1 s)."""
    lines = sdp.split("\r\n")
    kept = [line for line in lines if not _MDNS_CANDIDATE.match(line)]
    return sdp if len(kept) == len(lines) else "\r\n".join(kept)


RETRIGGER_AFTER_S = 1.0
"""A check of ours unanswered this long is started afresh when the peer's own check on
the same pair arrives (sooner, and a slow path's answers would never be awaited)."""

_stock_check_start_task = getattr(aioice.ice.Connection, "check_start_task", None)
_stock_check_incoming = aioice.ice.Connection.check_incoming
_check_started: weakref.WeakKeyDictionary[CandidatePair, float] = weakref.WeakKeyDictionary()


def prompt_triggered_checks() -> None:
    """Retrigger stalled checks when the peer's checks arrive (for this process).

    aioice starts a triggered check only for a pair that is waiting, frozen or failed;
    for one in progress it leaves its own transaction to back off (0.5, 1, 2, 4 s...).
    After a network outage the peer's checks get through at once, yet ours would only
    go out again seconds later: a client whose UDP was blocked for five seconds waited
    1.3 s more for this side's next retransmission. RFC 8445 section 7.3.1.4 instead
    cancels the transaction in progress and triggers a new check, which is what this
    does for a check unanswered for :data:`RETRIGGER_AFTER_S`.
    """
    if not hasattr(aioice.ice.Connection, "check_start_task"):
        logger.warning("aioice %s has no Connection.check_start_task: stalled checks are "
                       "left to back off", getattr(aioice, "__version__", "?"))
        return
    aioice.ice.Connection.check_start_task = _check_start_task  # type: ignore[method-assign]
    aioice.ice.Connection.check_incoming = _check_incoming  # type: ignore[method-assign]


def _check_start_task(self: aioice.ice.Connection, pair: CandidatePair) -> None:
    if pair.task is None:
        _check_started[pair] = time.monotonic()
    assert _stock_check_start_task is not None
    _stock_check_start_task(self, pair)


def _check_incoming(self: aioice.ice.Connection, message: stun.Message,
                    addr: tuple[str, int], protocol: aioice.ice.StunProtocol) -> None:
    _stock_check_incoming(self, message, addr, protocol)
    pair = next((p for p in self._check_list
                 if p.protocol is protocol and p.remote_addr == addr), None)
    if (pair is None or pair.state != CandidatePair.State.IN_PROGRESS or pair.task is None
            or time.monotonic() - _check_started.get(pair, time.monotonic())
            < RETRIGGER_AFTER_S):
        return
    pair.task.cancel()
    pair.task = None
    self.check_state(pair, CandidatePair.State.WAITING)
    self.check_start_task(pair)
