"""What the benchmarks do to processes: list their threads (``/proc``), set their priority
and their scheduler slice."""

from __future__ import annotations

import ctypes
import os
import platform
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



class _SchedAttr(ctypes.Structure):
    """``struct sched_attr`` (``sched_setattr(2)``), as far as ``sched_util_max``."""

    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
                ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
                ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
                ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64),
                ("sched_util_min", ctypes.c_uint32), ("sched_util_max", ctypes.c_uint32)]


SCHED_ATTR_CALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}
"(sched_setattr, sched_getattr) by machine."


def request_slice(slice_us: int) -> int:
    """Ask the kernel for a ``slice_us`` scheduler slice for every thread of this process
    (EEVDF's per-thread request, ``sched_runtime`` under ``SCHED_OTHER``, Linux 6.12 on;
    threads started later take their creator's); 0 asks for its default again. Returns
    how many threads took it: 0 where there is no such call."""
    calls = SCHED_ATTR_CALLS.get(platform.machine())
    if calls is None:
        return 0
    set_nr, get_nr = calls
    libc = ctypes.CDLL(None, use_errno=True)
    done = 0
    for task in tasks([os.getpid()]):
        tid = int(task.name)
        attr = _SchedAttr()
        if libc.syscall(get_nr, tid, ctypes.byref(attr), ctypes.sizeof(attr), 0) != 0:
            continue
        if attr.sched_policy != os.SCHED_OTHER:
            continue
        attr.size, attr.sched_flags, attr.sched_runtime = ctypes.sizeof(attr), 0, slice_us * 1000
        if libc.syscall(set_nr, tid, ctypes.byref(attr), 0) == 0:
            done += 1
    return done
