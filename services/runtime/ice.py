"""ICE settings shared by every aiortc peer in voxrelay (edges, link, simulator).

aioice gathers host candidates from every interface but drops ``127.0.0.1``, and
aiortc falls back to a public STUN server when no ICE servers are given. voxrelay
instead takes host addresses from ``VOXRELAY_ICE_HOSTS`` (comma-separated; unset
means the machine's interfaces) and ICE servers from ``VOXRELAY_ICE_SERVERS``
(unset means none), so tests and ``--loopback`` runs stay on 127.0.0.1.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import aioice.ice
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
