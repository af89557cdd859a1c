"""Real headless Chromium against a real ``voxrelay up --tls`` stack.

Chromium is Debian's ``chromium`` package (``scripts/bootstrap --test`` installs it),
driven by Playwright without ``playwright install``. Its microphone is a fake device
playing an espeak-ng phrase followed by silence, looped. Missing tools fail the tests
with the command that installs them; they are never skipped silently.
"""

from __future__ import annotations

import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.up import Up, running_up

CHROMIUM = Path("/usr/bin/chromium")
PHRASE = "what is the weather like today"
TRAILING_SILENCE_S = 5
"Chromium loops the file: a pause long enough for the AI's reply before the next turn."
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
)
FAKE_UI_FLAG = "--use-fake-ui-for-media-stream"
"Grants the microphone without a prompt; without it headless Chromium denies it."
INSTALL_HINT = ("run scripts/bootstrap --test (apt-get install chromium espeak-ng sox zbar-tools; "
                "pip install playwright)")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One stack for the module, serving HTTPS with its own local CA."""
    with running_up(tmp_path_factory.mktemp("up"), "--tls") as stack:
        yield stack


@pytest.fixture
def trusted(up: Up) -> ssl.SSLContext:
    """A TLS context that trusts exactly the stack's local CA (as a phone would)."""
    return ssl.create_default_context(cafile=str(up.data_dir / "tls" / "ca.pem"))


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake microphone: the phrase, then silence; 48 kHz mono 16-bit."""
    tools = {name: shutil.which(name) for name in ("espeak-ng", "sox")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: {INSTALL_HINT}")
    folder = tmp_path_factory.mktemp("speech")
    raw, wav = folder / "raw.wav", folder / "speech.wav"
    subprocess.run([tools["espeak-ng"], "-w", str(raw), PHRASE], check=True, timeout=30)
    subprocess.run([tools["sox"], str(raw), "-r", "48000", "-c", "1", "-b", "16", str(wav),
                    "pad", "0.3", str(TRAILING_SILENCE_S)], check=True, timeout=30)
    return wav


def decode_qr(png: bytes) -> str:
    """The text of the QR code in a PNG image (zbarimg, from Debian's zbar-tools)."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        pytest.fail(f"zbarimg not found: {INSTALL_HINT}")
    done = subprocess.run([zbarimg, "--quiet", "--raw", "-"], input=png, capture_output=True,
                          timeout=30)
    assert done.returncode == 0, f"no QR code found: {done.stderr.decode(errors='replace')}"
    return done.stdout.decode().strip()


@asynccontextmanager
async def launch_chromium(speech_wav: Path, *, fake_ui: bool = True,
                          user: pwd.struct_passwd | None = None) -> AsyncIterator[Any]:
    """Chromium under Playwright; with ``user``, running as that Unix user (so the
    firewall can tell its packets apart: :mod:`tests.support.netblock`)."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not at {CHROMIUM}: {INSTALL_HINT}")
    try:
        from playwright.async_api import async_playwright
    except ImportError as e:
        pytest.fail(f"playwright is not installed ({e}): {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="voxrelay-chromium-") as folder:
        executable = CHROMIUM
        if user is not None:
            os.chmod(folder, 0o755)
            speech_wav = Path(shutil.copy(speech_wav, folder))
            os.chmod(speech_wav, 0o644)
            executable = Path(folder) / "chromium-as-user"
            executable.write_text(RUN_AS_USER.format(uid=user.pw_uid, gid=user.pw_gid,
                                                     chromium=CHROMIUM))
            executable.chmod(0o755)
        flags = [*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={speech_wav}"]
        if fake_ui:
            flags.append(FAKE_UI_FLAG)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(executable), args=flags, headless=True, timeout=30_000)
            try:
                yield browser
            finally:
                await browser.close()


RUN_AS_USER = """#!/bin/sh
# Chromium as another user: its profile (made by Playwright) becomes that user's home.
for arg; do
  case "$arg" in --user-data-dir=*) profile="${{arg#--user-data-dir=}}";; esac
done
[ -n "$profile" ] && chown -R {uid}:{gid} "$profile" && export HOME="$profile"
exec setpriv --reuid={uid} --regid={gid} --clear-groups {chromium} "$@"
"""


@pytest.fixture
async def browser(speech_wav: Path) -> AsyncIterator[Any]:
    async with launch_chromium(speech_wav) as chromium:
        yield chromium
