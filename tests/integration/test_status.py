"""``voxrelay status`` against a real ``voxrelay up``: every service scraped over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.ports import free_port
from tests.support.up import Up, running_up

HEALTHY_WITHIN_S = 30.0
STATUS_TIMEOUT_S = 60.0
KINDS = ("signaling", "media_edge", "mixer", "openai_link", "recorder")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("status")) as up:
        wait_healthy(up.url)
        yield up


def wait_healthy(url: str) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}/healthz not 200 within {HEALTHY_WITHIN_S:.0f} s")
        time.sleep(0.2)


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", "status", *args],
                          check=False, capture_output=True, text=True, timeout=STATUS_TIMEOUT_S)


def test_status_shows_every_service_alive_with_memory_and_loop_lag(stack):
    result = status("--url", stack.url)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "cumulative since each process started" in result.stdout
    assert lines[lines.index("") + 1].split()[:4] == ["service", "instance", "pid", "state"]
    for kind in KINDS:
        rows = [line.split() for line in lines if line.split()[:1] == [kind]]
        assert rows, f"no {kind} row in:\n{result.stdout}"
        for row in rows:
            state, rss, lag = row[3], row[-2], row[-1]
            assert state == "alive", row
            assert float(rss) > 1, row  # RSS in MB, from process_resident_memory_bytes
            assert float(lag) >= 0, row  # voxrelay_event_loop_lag_seconds p95, in ms
    assert len([line for line in lines if line.split()[:1] == ["media_edge"]]) == 2
    assert any(line.startswith("bus_hop") and "edge_to_mixer @ mixer" in line for line in lines)


def test_status_json_is_one_object_with_the_same_rows(stack):
    result = status("--url", stack.url, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "ok" and report["exit"] == 0
    assert {row["service"] for row in report["services"]} == set(KINDS)
    for row in report["services"]:
        assert row["state"] == "alive", row
        assert row["rss_mb"] > 1 and row["loop_lag_p95_ms"] is not None, row
    assert {(r["what"], r["where"]) for r in report["latencies"]} >= {
        ("bus_hop", "edge_to_mixer"), ("frame_age", "client"), ("voice_to_voice", "")}
    assert report["counters"]["sessions"] == 0


def test_status_without_signaling_exits_2_with_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    result = status("--url", url, "--timeout", "2")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"voxrelay status: cannot reach voxrelay signaling at {url}")
