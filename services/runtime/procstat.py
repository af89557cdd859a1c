"""How often a process's threads were woken, and how long they waited for a core.

On a busy machine most of a frame's bus hop is the receiving process waiting for a core:
at ten conversations on two cores the edge and the link were each ready to run but not
running for 0.33–0.52 s of every second (``voxrelay bench``). Both figures come from
``/proc/<pid>/task/<tid>/`` (``schedstat``'s second field, ``status``'s
``voluntary_ctxt_switches``), summed over every thread, and every service exports its
own as ``voxrelay_process_run_queue_wait_seconds_total`` and
``voxrelay_process_wakeups_total`` (read when scraped, nothing on the audio path).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


def thread_stats(pid: int | str = "self") -> tuple[float, int]:
    """(seconds ready to run but waiting for a core, times put to sleep and woken) so far,
    over every thread of ``pid``; (0.0, 0) for a process that is gone."""
    waited_ns = 0
    woken = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0, 0
    for task in tasks:
        try:
            waited_ns += int((task / "schedstat").read_text().split()[1])
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    woken += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended while being read
    return waited_ns / 1e9, woken


class SchedulerCollector(Collector):
    """This process's run-queue wait and wake-ups, for Prometheus."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        waited_s, woken = thread_stats()
        yield CounterMetricFamily(
            "voxrelay_process_run_queue_wait_seconds",
            "Time this process's threads were ready to run but waited for a core (the "
            "scheduler's run-queue wait, every thread)", value=waited_s)
        yield CounterMetricFamily(
            "voxrelay_process_wakeups",
            "Times this process's threads went to sleep and were woken (voluntary context "
            "switches, every thread)", value=woken)
