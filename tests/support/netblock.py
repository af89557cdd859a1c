"""Blocking one program's UDP or TCP with the kernel's firewall, as an outage would.

The program runs as its own Unix user (``nobody``); while :func:`blocked` is in force,
every UDP (or TCP) flow that user sends on is marked (``CONNMARK`` in ``OUTPUT``, matched
by ``-m owner``) and every packet of a marked flow is dropped on arrival (``INPUT`` on
loopback), in both directions: the program's packets never arrive and nothing reaches
it. Nothing fails on send (a ``DROP`` in ``OUTPUT`` would answer ``EPERM``), so it looks
like packets lost on the way, not a refused socket. The other protocol is untouched:
with UDP blocked, signaling's HTTPS keeps working, as on a network that only blocks UDP.

Needs root and ``iptables`` (Debian's ``iptables`` package); every rule carries the
comment ``voxrelay-test`` and is removed on the way out, however the block ends.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

NOBODY = "nobody"
MARK = "0x7e01"
COMMENT = ("-m", "comment", "--comment", "voxrelay-test")
INSTALL_HINT = "run scripts/bootstrap --test (apt-get install iptables util-linux)"


def unprivileged_user() -> pwd.struct_passwd:
    """The user a blockable program runs as; the test fails if this machine cannot block."""
    if os.geteuid() != 0:
        pytest.skip("blocking a program's UDP needs root (iptables and setpriv)")
    for tool in ("iptables", "setpriv"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: {INSTALL_HINT}")
    return pwd.getpwnam(NOBODY)


def _rules(uid: int, protocol: str) -> list[tuple[str, ...]]:
    return [
        ("OUTPUT", "-p", protocol, "-m", "owner", "--uid-owner", str(uid), *COMMENT,
         "-j", "CONNMARK", "--set-mark", MARK),
        ("INPUT", "-i", "lo", "-p", protocol, "-m", "connmark", "--mark", MARK, *COMMENT,
         "-j", "DROP"),
    ]


def _iptables(action: str, rule: tuple[str, ...]) -> None:
    done = subprocess.run(["iptables", action, *rule], capture_output=True, text=True,
                          timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"iptables {action} {' '.join(rule)}: {done.stderr.strip()}")


@contextmanager
def blocked(uid: int, protocol: str = "udp") -> Iterator[None]:
    """Drop every ``protocol`` (udp, tcp) packet to or from ``uid``'s sockets on
    loopback, until the exit."""
    added: list[tuple[str, ...]] = []
    try:
        for rule in _rules(uid, protocol):
            _iptables("-I", rule)
            added.append(rule)
        yield
    finally:
        for rule in reversed(added):
            _iptables("-D", rule)
