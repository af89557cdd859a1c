"""What one wake-up of an idle event loop costs this machine in CPU.

``.venv/bin/python -m benchmarks.wakeup_cost [--count 1000] [--rate 200]`` runs an event
loop (uvloop, then asyncio's own) whose only work is a timer firing ``rate`` times a
second, ``count`` times, and prints the CPU time this process was charged per firing:
from ``os.times()`` and from the scheduler's own runtime (``/proc/self/schedstat``,
nanoseconds). Every frame voxrelay moves wakes at least one process (a socket becomes
readable, a pacer's slot opens, ZeroMQ's I/O thread hands a message on), so this is the
floor under its per-frame cost; on a machine where it is large (a virtual machine that
exits to its host to sleep and to wake), the number of wake-ups per frame, not the
Python run per frame, decides the CPU figures of ``voxrelay bench``, whose output lists
wake-ups per second by service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import uvloop

SCHEDSTAT = Path("/proc/self/schedstat")


def charged() -> tuple[float, float]:
    """(os.times user+system, schedstat runtime) so far, in seconds."""
    times = os.times()
    runtime = int(SCHEDSTAT.read_text().split()[0]) / 1e9 if SCHEDSTAT.exists() else 0.0
    return times.user + times.system, runtime


async def timer_wakeups(count: int, rate: float) -> tuple[float, float]:
    """CPU seconds per wake-up: (os.times, schedstat)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    fired = 0
    start = loop.time()

    def fire() -> None:
        nonlocal fired
        fired += 1
        if fired >= count:
            done.set_result(None)
        else:
            loop.call_at(start + fired / rate, fire)

    before = charged()
    loop.call_at(start, fire)
    await done
    after = charged()
    return (after[0] - before[0]) / count, (after[1] - before[1]) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="wake-ups a second")
    args = parser.parse_args()
    for name, run in (("uvloop", uvloop.run), ("asyncio", asyncio.run)):
        times, sched = run(timer_wakeups(args.count, args.rate))
        print(f"{name}: {times * 1e6:.1f} µs (os.times), {sched * 1e6:.1f} µs (schedstat) "
              f"of CPU per timer wake-up, {args.count} at {args.rate:g}/s")


if __name__ == "__main__":
    main()
