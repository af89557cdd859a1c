"""Every service exports how often it was woken and how long it waited for a core."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from prometheus_client import REGISTRY

import services.runtime.metrics  # noqa: F401 - registers the collector, as every service does
from services.runtime.procstat import ThreadTotals, thread_stats

SPIN = "import time\nend = time.monotonic() + 1.0\nwhile time.monotonic() < end: pass\n"


def scraped(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None, f"{name} is not exported"
    return value


def test_each_sleep_is_a_wakeup():
    before = scraped("voxrelay_process_wakeups_total")
    for _ in range(10):
        time.sleep(0.005)
    assert scraped("voxrelay_process_wakeups_total") - before >= 10


def test_time_spent_waiting_for_a_busy_core_is_counted():
    before = scraped("voxrelay_process_run_queue_wait_seconds_total")
    # more spinners than cores: this process, spinning too, must wait for one at times
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN])
                for _ in range(2 * (os.cpu_count() or 1) + 1)]
    try:
        time.sleep(0.3)  # let them start
        end = time.monotonic() + 0.4
        while time.monotonic() < end:
            pass
    finally:
        for proc in spinners:
            proc.wait(30)
    assert scraped("voxrelay_process_run_queue_wait_seconds_total") > before


def test_a_thread_that_ended_still_counts():
    totals = ThreadTotals()
    slept, done = threading.Event(), threading.Event()

    def sleeper() -> None:
        for _ in range(10):
            time.sleep(0.005)
        slept.set()
        done.wait(10)

    thread = threading.Thread(target=sleeper)
    thread.start()
    assert slept.wait(10)
    _, with_it = totals.read()
    done.set()
    thread.join(10)
    _, after_it = totals.read()
    assert after_it >= with_it  # its wake-ups left /proc with it, not the counter


def test_a_process_that_is_gone_reads_as_nothing():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    assert thread_stats(proc.pid) == {}
    assert ThreadTotals(proc.pid).read() == (0.0, 0)
