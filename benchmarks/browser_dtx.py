"""What Opus DTX saves with a real browser: Chromium in a noisy room, DTX asked for or not.

    python -m benchmarks.browser_dtx [--seconds 30] [--rounds 2] [--noise-dbfs -47]

Headless Chromium (Debian's ``chromium``, driven by Playwright) joins a conversation on
a fresh ``voxrelay up`` through the web client. Its fake microphone loops a spoken
phrase then five seconds of quiet, all under pink noise (``--noise-dbfs`` RMS; the
default's peaks are well above the −50 dBFS level that keeps silence off the bus, as a
real room's are). The simulator answers each phrase, so both directions carry speech.
Over each window it reads the packets Chromium sent and received (its own ``getStats``)
and the CPU of the stack's processes (``/proc``; not Chromium's, not the simulator's),
with ``VOXRELAY_EDGE_DTX=0`` and ``=1`` in turn (DTX both ways: the web client asks for
it), and prints both and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .bench import by_service, cpu_seconds, stack_pids
from .hop_latency import start_stack, stop_stack

CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "run scripts/bootstrap --test (Chromium, Playwright, espeak-ng, sox)"
PHRASE = "what is the weather like today"
QUIET_S = 5
PACKETS_JS = """async () => {
  const found = [0, 0];
  for (const s of (await window.voxrelay.pc.getStats()).values()) {
    if (s.type === "outbound-rtp" && s.kind === "audio") found[0] = s.packetsSent;
    if (s.type === "inbound-rtp" && s.kind === "audio") found[1] = s.packetsReceived;
  }
  return found;
}"""


def microphone(folder: Path, noise_dbfs: float) -> Path:
    """The phrase, then QUIET_S of quiet, all under pink noise at ``noise_dbfs`` RMS."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: {INSTALL_HINT}")
    raw, speech, noise, mic = (folder / n for n in ("raw.wav", "speech.wav", "noise.wav",
                                                   "mic.wav"))
    subprocess.run(["espeak-ng", "-w", str(raw), PHRASE], check=True, timeout=30)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(speech),
                    "pad", "0.3", str(QUIET_S)], check=True, timeout=30)
    length = subprocess.run(["soxi", "-D", str(speech)], check=True, timeout=30,
                            capture_output=True, text=True).stdout.strip()
    # Pink noise's RMS sits ~13 dB under the peak amplitude sox is given (`sox stats`).
    amplitude = 10 ** ((noise_dbfs + 13) / 20)
    subprocess.run(["sox", "-n", "-r", "48000", "-c", "1", "-b", "16", str(noise), "synth",
                    length, "pinknoise", "vol", f"{amplitude:.5f}"], check=True, timeout=30)
    subprocess.run(["sox", "-m", str(speech), str(noise), str(mic)], check=True, timeout=30)
    return mic


async def one_window(url: str, supervisor: int, mic: Path, seconds: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright, expect

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream",
             "--use-fake-ui-for-media-stream", "--allow-loopback-in-peer-connection",
             "--autoplay-policy=no-user-gesture-required", f"--use-file-for-fake-audio-capture={mic}"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=flags,
                                                   headless=True, timeout=30_000)
        try:
            page = await browser.new_page()
            await page.goto(f"{url}/")
            await page.locator("#home-name").fill("bench")
            await page.get_by_role("button", name="Start a conversation").click()
            await page.wait_for_url("**/s/**", timeout=30_000)
            await page.get_by_role("button", name="Join", exact=True).click()
            await expect(page.get_by_role("status")).to_have_text("Connected", timeout=20_000)
            await asyncio.sleep(3)  # past the connection's start
            pids = stack_pids(supervisor)
            cpu0, by0, (sent0, got0), t0 = (cpu_seconds(pids), by_service(pids, cpu_seconds),
                                            await page.evaluate(PACKETS_JS), time.monotonic())
            await asyncio.sleep(seconds)
            cpu1, by1, (sent1, got1), t1 = (cpu_seconds(pids), by_service(pids, cpu_seconds),
                                            await page.evaluate(PACKETS_JS), time.monotonic())
        finally:
            await browser.close()
    span = t1 - t0
    return {"packets_per_s": (sent1 - sent0) / span, "received_per_s": (got1 - got0) / span,
            "cpu_s_per_s": (cpu1 - cpu0) / span,
            "by_service": {k: round((by1[k] - by0.get(k, 0.0)) / span, 4) for k in by1}}


def run(seconds: float, rounds: int, noise_dbfs: float) -> dict[str, Any]:
    if not Path(CHROMIUM).exists() or importlib.util.find_spec("playwright") is None:
        raise SystemExit(f"Chromium or Playwright missing: {INSTALL_HINT}")
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="voxrelay-dtx-") as folder:
        mic = microphone(Path(folder), noise_dbfs)
        for n in range(rounds):
            for mode in ("off", "on"):
                env = {"VOXRELAY_EDGE_DTX": "1" if mode == "on" else "0"}
                proc, url, _ = start_stack(f"{folder}/data-{mode}-{n}", env)
                try:
                    results[mode].append(asyncio.run(one_window(url, proc.pid, mic, seconds)))
                finally:
                    stop_stack(proc)
                print(f"round {n + 1} DTX {mode}: {json.dumps(results[mode][-1])}", flush=True)
    mean = {mode: {"packets_per_s": _mean(r["packets_per_s"] for r in rs),
                   "received_per_s": _mean(r["received_per_s"] for r in rs),
                   "cpu_s_per_s": _mean(r["cpu_s_per_s"] for r in rs),
                   "edge_cpu_s_per_s": _mean(r["by_service"]["media_edge"] for r in rs)}
            for mode, rs in results.items()}
    return {"rounds": results, "mean": mean,
            "cpu_ratio_on_off": mean["on"]["cpu_s_per_s"] / mean["off"]["cpu_s_per_s"],
            "edge_cpu_ratio_on_off": (mean["on"]["edge_cpu_s_per_s"]
                                      / mean["off"]["edge_cpu_s_per_s"])}


def _mean(values: Iterable[float]) -> float:
    found = list(values)
    return sum(found) / len(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--noise-dbfs", type=float, default=-47)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    result = run(args.seconds, args.rounds, args.noise_dbfs)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    for mode in ("off", "on"):
        m = result["mean"][mode]
        print(f"DTX {mode:3}: Chromium sent {m['packets_per_s']:5.1f} packets/s and received "
              f"{m['received_per_s']:5.1f}, "
              f"stack {m['cpu_s_per_s']:.4f} CPU-s/s, edge {m['edge_cpu_s_per_s']:.4f}")
    print(f"DTX on / off: stack CPU {result['cpu_ratio_on_off']:.2f}x, "
          f"edge {result['edge_cpu_ratio_on_off']:.2f}x")


if __name__ == "__main__":
    main()
