"""What the benchmarks do to processes through ``/proc``: their threads, their priority."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def tasks(pids: list[int]) -> Iterator[Path]:
    for pid in pids:
        try:
            yield from Path(f"/proc/{pid}/task").iterdir()
        except OSError:
            continue


def lower_priority(pids: list[int], niceness: int) -> None:
    """Give ``pids`` the nice value ``niceness``: every thread's (Linux sets it per thread;
    a thread started later takes its creator's), and their session's scheduling group's
    where the kernel groups by session (``sched_autogroup``; voxrelay's services and the
    simulator each start a session, and the kernel first shares the cores between
    groups, whatever the nice values inside them)."""
    for pid in pids:
        set_autogroup_nice(pid, niceness)
    for task in tasks(pids):
        try:
            os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)
        except OSError:
            continue


def set_autogroup_nice(pid: int | str, niceness: int) -> None:
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(niceness))
    except OSError:
        pass  # no autogroups on this kernel

