"""How often a process's threads were woken, and how long they waited for a core.

On a busy machine most of a frame's bus hop is the receiving process waiting for a core:
at ten conversations on two cores the edge and the link were each ready to run but not
running for 0.33–0.52 s of every second (``voxrelay bench``). Both figures come from
``/proc/<pid>/task/<tid>/`` (``schedstat``'s second field, ``status``'s
``voluntary_ctxt_switches``), summed over every thread the process has had (a thread
that ends keeps its share: :class:`ThreadTotals`), and every service exports its own as
``voxrelay_process_run_queue_wait_seconds_total`` and ``voxrelay_process_wakeups_total``
(read when scraped, nothing on the audio path).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


def thread_stats(pid: int | str = "self") -> dict[int, tuple[int, int]]:
    """Per live thread of ``pid``: (ns ready to run but waiting for a core, times put to
    sleep and woken) so far; empty for a process that is gone."""
    found: dict[int, tuple[int, int]] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            waited_ns = int((task / "schedstat").read_text().split()[1])
            woken = next(int(line.split()[1])
                         for line in (task / "status").read_text().splitlines()
                         if line.startswith("voluntary_ctxt_switches:"))
        except (OSError, IndexError, ValueError, StopIteration):
            continue  # the thread ended while being read
        found[int(task.name)] = (waited_ns, woken)
    return found


class ThreadTotals:
    """Totals over every thread a process ever had, as counters must be: a thread that
    ends takes its figures out of ``/proc``, so each reading adds what each thread gained
    since the last one (a thread id seen again with smaller figures is a new thread)."""

    def __init__(self, pid: int | str = "self") -> None:
        self.pid = pid
        self._last: dict[int, tuple[int, int]] = {}
        self._waited_ns = 0
        self._woken = 0

    def read(self) -> tuple[float, int]:
        """(seconds waiting for a core, wake-ups) so far."""
        now = thread_stats(self.pid)
        for tid, (waited_ns, woken) in now.items():
            last_waited, last_woken = self._last.get(tid, (0, 0))
            if waited_ns < last_waited or woken < last_woken:
                last_waited, last_woken = 0, 0  # the id of an ended thread, reused
            self._waited_ns += waited_ns - last_waited
            self._woken += woken - last_woken
        self._last = now
        return self._waited_ns / 1e9, self._woken


class SchedulerCollector(Collector):
    """This process's run-queue wait and wake-ups, for Prometheus."""

    def __init__(self) -> None:
        self._totals = ThreadTotals()

    def collect(self) -> Iterator[CounterMetricFamily]:
        waited_s, woken = self._totals.read()
        yield CounterMetricFamily(
            "voxrelay_process_run_queue_wait_seconds",
            "Time this process's threads were ready to run but waited for a core (the "
            "scheduler's run-queue wait, every thread)", value=waited_s)
        yield CounterMetricFamily(
            "voxrelay_process_wakeups",
            "Times this process's threads went to sleep and were woken (voluntary context "
            "switches, every thread)", value=woken)
