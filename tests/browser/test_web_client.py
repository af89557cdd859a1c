"""The web client in a real headless Chromium, against a real ``voxrelay up --tls``.

Chromium's microphone plays espeak-ng speech; the simulator answers. The page must
connect, play the AI's voice (checked through the peer connection's getStats), show
the transcript with speakers, the round trip and the time to the AI's first audio,
and leave cleanly; errors a person can act on must read as such.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import ssl
import wave
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import expect

from services.client.voxrelay import create_session
from services.signaling.config import SignalingConfig
from services.signaling.tls import (
    TlsError,
    ensure_certificate,
    server_context,
    server_names,
)
from services.signaling.web_routes import CONTENT_SECURITY_POLICY
from services.supervisor.status import scrape_by_kind
from tests.support.netblock import blocked, unprivileged_user
from tests.support.up import Up, running_up

from .conftest import decode_qr, launch_chromium

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
VIEWPORT = {"width": 1280, "height": 860}
SESSION_PAGE = re.compile(r"/s/[0-9a-f]{32}\?t=[\w.-]+$")
SLOW_MS = 30_000
"Creating a session waits for the recorder, mixer and link: slow on a loaded machine."
CONNECT_TIMEOUT_MS = 20_000
REPLY_TIMEOUT_MS = 40_000
UI_TIMEOUT_MS = 10_000
RECOVERY_TIMEOUT_MS = 15_000
MS = re.compile(r"^\d+ ms$")

INBOUND_AUDIO_JS = """async () => {
  const pc = window.voxrelay.pc;
  if (!pc) return null;
  for (const s of (await pc.getStats()).values()) {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      return {packets: s.packetsReceived ?? 0, energy: s.totalAudioEnergy ?? 0};
    }
  }
  return null;
}"""

RTP_AUDIO_JS = """async () => {
  const found = {};
  for (const s of (await window.voxrelay.pc.getStats()).values()) {
    if (s.kind !== "audio") continue;
    if (s.type === "outbound-rtp") Object.assign(found, {sent: s.packetsSent, at: s.timestamp});
    if (s.type === "inbound-rtp") {
      Object.assign(found, {received: s.packetsReceived, energy: s.totalAudioEnergy,
        concealed: s.concealedSamples, silentConcealed: s.silentConcealedSamples,
        samples: s.totalSamplesReceived});
    }
  }
  return found;
}"""
FULL_RATE = 50
"Packets a second an Opus microphone sends without DTX (20 ms each)."


@asynccontextmanager
async def page_in(browser: Any) -> AsyncIterator[Any]:
    """A fresh browser context and page; uncaught errors and CSP violations fail the test.

    On failure the page is saved as artifacts/web-client-failure.png.
    """
    context = await browser.new_context(viewport=VIEWPORT, ignore_https_errors=True)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("console", lambda message: problems.append(message.text)
            if "Content Security Policy" in message.text else None)
    try:
        yield page
        assert not problems, problems
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)  # what the page showed when the test failed
        await page.screenshot(path=str(ARTIFACTS / "web-client-failure.png"))
        raise
    finally:
        await context.close()


@asynccontextmanager
async def api(trusted: ssl.SSLContext) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as http:
        yield http


async def client_ids(up: Up, trusted: ssl.SSLContext, session_id: str) -> set[str]:
    async with api(trusted) as http, http.get(f"{up.url}/v1/sessions/{session_id}") as resp:
        assert resp.status == 200
        return {c["client_id"] for c in (await resp.json())["clients"]}


async def inbound_audio(page: Any, until: Callable[[dict[str, float]], bool],
                        timeout_s: float) -> dict[str, float]:
    """Poll the page's peer connection stats until ``until`` holds."""
    async with asyncio.timeout(timeout_s):
        while True:
            stats = await page.evaluate(INBOUND_AUDIO_JS)
            if stats is not None and until(stats):
                return stats
            await asyncio.sleep(0.25)


async def page_condition(page: Any, expression: str, timeout_ms: int) -> None:
    """Poll a JS expression (page.wait_for_function would eval, which the page's CSP forbids)."""
    await wait_until(lambda: page.evaluate(expression), timeout_ms / 1000)


async def wait_until(condition: Callable[[], Any], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.2)


async def test_a_conversation_in_chromium_hears_the_ai_and_shows_the_transcript(
        up: Up, browser: Any, trusted: ssl.SSLContext, speech_wav: Path) -> None:
    async with page_in(browser) as page:
        response = await page.goto(f"{up.url}/")
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        await page.locator("#home-name").fill("Chromium")
        await page.get_by_role("button", name="Start a conversation").click()
        try:
            await page.wait_for_url(SESSION_PAGE, timeout=SLOW_MS)
        except PlaywrightTimeout:
            shown = await page.locator("#home-error").all_text_contents()
            pytest.fail(f"no conversation started; the page says {shown}")

        await page.get_by_role("button", name="Join", exact=True).click()
        status = page.get_by_role("status")
        await expect(status).to_have_text("Connected", timeout=CONNECT_TIMEOUT_MS)
        await page_condition(  # the mic meter hears the fake microphone
            page, "Number(document.getElementById('mic-meter').getAttribute('aria-valuenow')) > 0",
            UI_TIMEOUT_MS)

        first = await inbound_audio(page, lambda s: s["packets"] > 0, CONNECT_TIMEOUT_MS / 1000)
        await inbound_audio(page, lambda s: s["energy"] > 0 and s["packets"] > first["packets"],
                            REPLY_TIMEOUT_MS / 1000)
        await expect(page.locator("#orb")).to_have_attribute("data-speaking", "true",
                                                             timeout=REPLY_TIMEOUT_MS)

        log = page.get_by_role("log")
        await expect(log.locator(".turn.user .speaker").first).to_have_text(
            "Chromium", timeout=REPLY_TIMEOUT_MS)
        await expect(log.locator(".turn.user:not(.pending) .text").first).not_to_be_empty(
            timeout=REPLY_TIMEOUT_MS)
        await expect(log.locator(".turn.assistant .speaker").first).to_have_text("Assistant")
        await expect(log.locator(".turn.assistant:not(.pending) .text").first).not_to_be_empty(
            timeout=REPLY_TIMEOUT_MS)
        await check_dtx(page, up, speech_wav)
        await expect(page.locator("#rtt")).to_have_text(MS, timeout=UI_TIMEOUT_MS)
        await expect(page.locator("#ttfa")).to_have_text(MS, timeout=UI_TIMEOUT_MS)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "web-client.png"))
        assert decode_qr(await page.locator("#qr").screenshot()) == page.url

        await check_controls(page)

        session_id, client_id = await page.evaluate(
            "[window.voxrelay.sessionId, window.voxrelay.clientId]")
        assert client_id in await client_ids(up, trusted, session_id)
        await page.get_by_role("button", name="Leave").click()
        await expect(status).to_have_text("Not connected", timeout=UI_TIMEOUT_MS)
        await expect(page.get_by_role("button", name="Join", exact=True)).to_be_enabled()
        await wait_until(lambda: _gone(up, trusted, session_id, client_id), UI_TIMEOUT_MS / 1000)


async def check_dtx(page: Any, up: Up, speech_wav: Path) -> None:
    """Opus DTX both ways. Chromium took the answer's ``usedtx=1``: over one loop of its
    fake microphone (a phrase, then seconds of silence) it sends far fewer than 50
    packets a second, and the edge passes the slots it left out on as silence. The page
    asked for DTX, so the edge sends the AI's pauses the same way, and Chromium plays
    them as silence, not as audio it lost."""
    with wave.open(str(speech_wav)) as wav:
        loop_s = wav.getnframes() / wav.getframerate()
    before = await page.evaluate(RTP_AUDIO_JS)
    await asyncio.sleep(loop_s)
    after = await page.evaluate(RTP_AUDIO_JS)
    seconds = (after["at"] - before["at"]) / 1000
    sent = (after["sent"] - before["sent"]) / seconds
    received = (after["received"] - before["received"]) / seconds
    concealed = after["concealed"] - before["concealed"]
    loud_concealed = concealed - (after["silentConcealed"] - before["silentConcealed"])
    print(f"\nover {seconds:.1f} s: sent {sent:.1f} packets/s, received {received:.1f}/s, "
          f"concealed {concealed} samples ({loud_concealed} not silent) of "
          f"{after['samples'] - before['samples']}")
    assert sent < 0.8 * FULL_RATE, f"{sent:.1f} packets/s over a loop that is mostly silence"
    assert received < 0.8 * FULL_RATE, f"{received:.1f} packets/s from the edge"
    assert after["energy"] > before["energy"], "the AI was heard over the loop"
    edges = (await scrape_by_kind(up.url))["media_edge"]
    assert (edges.value("voxrelay_edge_mic_slots_left_out_total") or 0) > loop_s * 10
    assert (edges.value("voxrelay_edge_downlink_dtx_packets_total") or 0) > 0


async def check_controls(page: Any) -> None:
    """Mute disables the sent track; the volume drives the one persistent <audio>."""
    mute = page.get_by_role("button", name="Mute")
    sender_enabled = "window.voxrelay.pc.getSenders().find(s => s.track).track.enabled"
    await mute.click()
    await expect(mute).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate(sender_enabled) is False
    await mute.click()
    await expect(mute).to_have_attribute("aria-pressed", "false")
    assert await page.evaluate(sender_enabled) is True
    await check_microphone_picker(page)
    await page.get_by_label("AI volume").fill("40")
    audio = await page.evaluate("""() => {
      const all = document.querySelectorAll("audio");
      return {count: all.length, volume: all[0].volume, playing: all[0].srcObject !== null};
    }""")
    assert audio == {"count": 1, "volume": 0.4, "playing": True}


async def check_microphone_picker(page: Any) -> None:
    """Another microphone replaces the sent track without renegotiating."""
    picker = page.get_by_label("Microphone", exact=True)
    options = await picker.locator("option").evaluate_all("all => all.map(o => o.value)")
    current = await picker.input_value()
    others = [value for value in options if value != current]
    assert current and others, f"the fake device should offer several microphones: {options}"
    sent_track = "window.voxrelay.pc.getSenders().find(s => s.track).track"
    before = await page.evaluate(f"{sent_track}.id")
    await picker.select_option(others[0])
    await page_condition(
        page, f"{sent_track}.id !== {before!r} && {sent_track}.getSettings().deviceId === "
        f"{others[0]!r}", UI_TIMEOUT_MS)


async def _gone(up: Up, trusted: ssl.SSLContext, session_id: str, client_id: str) -> bool:
    return client_id not in await client_ids(up, trusted, session_id)


async def test_a_link_with_a_wrong_token_says_the_link_is_not_valid(
        up: Up, browser: Any, trusted: ssl.SSLContext) -> None:
    async with api(trusted) as http:
        session = await create_session(http, up.url, name="guarded")
    async with page_in(browser) as page:
        # The page checks the link as it opens, and says so before anyone presses Join.
        await page.goto(f"{up.url}/s/{session['session_id']}?t=not-the-token")
        await expect(page.locator("#room-error")).to_contain_text(
            "This link is not valid for this conversation", timeout=UI_TIMEOUT_MS)
        await expect(page.get_by_role("button", name="Join", exact=True)).to_be_disabled()


async def test_a_denied_microphone_says_how_to_allow_it(
        up: Up, speech_wav: Path, trusted: ssl.SSLContext) -> None:
    async with api(trusted) as http:
        session = await create_session(http, up.url, name="no mic")
    # Without the fake-UI flag and without a granted permission, Chromium denies the mic.
    async with launch_chromium(speech_wav, fake_ui=False) as chromium, page_in(chromium) as page:
        await page.goto(f"{up.url}/s/{session['session_id']}?t={session['token']}")
        await page.get_by_role("button", name="Join", exact=True).click()
        await expect(page.locator("#room-error")).to_contain_text(
            "Microphone access was denied", timeout=UI_TIMEOUT_MS)
        await expect(page.get_by_role("button", name="Join", exact=True)).to_be_enabled()
        assert await page.evaluate("window.voxrelay.pc") is None


async def test_an_unreachable_server_and_an_ended_conversation_are_explained(
        up: Up, browser: Any, trusted: ssl.SSLContext) -> None:
    async with page_in(browser) as page:
        await page.goto(f"{up.url}/")
        await page.route("**/v1/sessions", lambda route: route.abort("connectionrefused"))
        await page.get_by_role("button", name="Start a conversation").click()
        await expect(page.locator("#home-error")).to_contain_text(
            "Can't reach the voxrelay server", timeout=UI_TIMEOUT_MS)
        await page.unroute("**/v1/sessions")

        async with api(trusted) as http:
            session = await create_session(http, up.url, name="over")
            async with http.delete(f"{up.url}/v1/sessions/{session['session_id']}",
                                   headers={"Authorization": f"Bearer {session['token']}"}) as r:
                assert r.status == 204
        await page.goto(f"{up.url}/s/{session['session_id']}?t={session['token']}")
        await expect(page.locator("#room-error")).to_contain_text(
            "This conversation has ended", timeout=UI_TIMEOUT_MS)
        await expect(page.get_by_role("button", name="Join", exact=True)).to_be_disabled()


async def test_a_browser_whose_edge_crashes_reconnects_by_itself_as_the_same_client(
        up: Up, browser: Any, trusted: ssl.SSLContext) -> None:
    """kill -9 the media edge holding the browser: the page notices, rebuilds its peer
    connection under the same session and client id (on the other edge, or the restarted
    one), and the conversation's audio flows again — no click needed."""
    async with api(trusted) as http:
        session = await create_session(http, up.url, name="edge crash")
    async with page_in(browser) as page:
        await page.goto(f"{up.url}/s/{session['session_id']}?t={session['token']}")
        await page.get_by_role("button", name="Join", exact=True).click()
        status = page.get_by_role("status")
        await expect(status).to_have_text("Connected", timeout=CONNECT_TIMEOUT_MS)
        client_id = await page.evaluate("window.voxrelay.clientId")
        async with api(trusted) as http:
            async with http.get(f"{up.url}/v1/sessions/{session['session_id']}") as resp:
                (client,) = (await resp.json())["clients"]
            async with http.get(f"{up.url}/healthz") as resp:
                edges = (await resp.json())["services"]["media_edge"]
        pid = next(e["pid"] for e in edges if e["instance"] == client["edge"])
        old_pc = await page.evaluate("window.voxrelay.pc.localDescription.sdp")

        os.kill(pid, signal.SIGKILL)
        began = asyncio.get_running_loop().time()
        await page_condition(page, "window.voxrelay.pc !== null && "
                             f"window.voxrelay.pc.localDescription?.sdp !== {old_pc!r} && "
                             "window.voxrelay.pc.connectionState === 'connected'",
                             RECOVERY_TIMEOUT_MS)
        recovered = asyncio.get_running_loop().time() - began
        print(f"the page was connected again {recovered:.1f} s after its edge was killed")
        await expect(status).to_have_text("Connected", timeout=UI_TIMEOUT_MS)
        assert await page.evaluate("window.voxrelay.clientId") == client_id
        first = await inbound_audio(page, lambda s: s["packets"] > 0, CONNECT_TIMEOUT_MS / 1000)
        await inbound_audio(page, lambda s: s["packets"] > first["packets"] + 50,
                            REPLY_TIMEOUT_MS / 1000)
        async with api(trusted) as http:
            async with http.get(f"{up.url}/v1/sessions/{session['session_id']}") as resp:
                clients = (await resp.json())["clients"]
        assert [(c["client_id"], c["connected"]) for c in clients] == [(client_id, True)]
        await page.get_by_role("button", name="Leave").click()


async def test_a_browser_whose_udp_is_blocked_for_5_s_comes_back_as_the_same_client(
        up: Up, speech_wav: Path, trusted: ssl.SSLContext) -> None:
    """The firewall drops every UDP packet to and from Chromium for 5 s (its HTTPS to
    signaling still works): the page notices, and once the network is back it is
    connected again over WebRTC as the same client of the same session, audio flowing."""
    user = unprivileged_user()
    async with api(trusted) as http:
        session = await create_session(http, up.url, name="udp blocked")
    async with launch_chromium(speech_wav, user=user) as chromium, page_in(chromium) as page:
        await page.goto(f"{up.url}/s/{session['session_id']}?t={session['token']}")
        await page.get_by_role("button", name="Join", exact=True).click()
        status = page.get_by_role("status")
        await expect(status).to_have_text("Connected", timeout=CONNECT_TIMEOUT_MS)
        client_id = await page.evaluate("window.voxrelay.clientId")
        await inbound_audio(page, lambda s: s["packets"] > 0, CONNECT_TIMEOUT_MS / 1000)
        old_pc = await page.evaluate("window.voxrelay.pc.localDescription.sdp")

        loop = asyncio.get_running_loop()
        noticed = await outage(page, user.pw_uid, "udp", BLOCK_S)
        unblocked = loop.time()
        await page_condition(page, "window.voxrelay.pc !== null && "
                             f"window.voxrelay.pc.localDescription?.sdp !== {old_pc!r} && "
                             "window.voxrelay.pc.connectionState === 'connected'",
                             RECOVERY_TIMEOUT_MS)
        back = loop.time() - unblocked
        print(f"the page noticed the outage after {noticed:.1f} s and was connected again "
              f"{back:.1f} s after the {BLOCK_S} s block ended")
        await expect(status).to_have_text("Connected", timeout=UI_TIMEOUT_MS)
        assert await page.evaluate("window.voxrelay.transport") == "webrtc"
        assert await page.evaluate("window.voxrelay.clientId") == client_id
        assert await page.evaluate("window.voxrelay.sessionId") == session["session_id"]
        first = await inbound_audio(page, lambda s: s["packets"] > 0, CONNECT_TIMEOUT_MS / 1000)
        await inbound_audio(page, lambda s: s["packets"] > first["packets"] + 50,
                            REPLY_TIMEOUT_MS / 1000)
        assert await client_ids(up, trusted, session["session_id"]) == {client_id}
        await page.get_by_role("button", name="Leave").click()


BLOCK_S = 5


async def outage(page: Any, uid: int, protocol: str, seconds: float) -> float:
    """Drop every ``protocol`` packet of the browser (running as ``uid``) for ``seconds``;
    how long the page took to say it is reconnecting (it must, within the outage)."""
    loop = asyncio.get_running_loop()
    with blocked(uid, protocol):
        cut = loop.time()
        await page_condition(page, "window.voxrelay.state === 'reconnecting'", seconds * 1000)
        noticed = loop.time() - cut
        await asyncio.sleep(seconds - noticed)
    return noticed


class _Markup(HTMLParser):
    """What of the page could run or style inline."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        self.inline += [f"<{tag} {n}>" for n in names if n.startswith("on") or n == "style"]
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self._in_script = True
            self.scripts.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"<script>{data.strip()[:40]}")


async def test_the_page_has_a_strict_csp_and_no_inline_script_or_style(
        up: Up, trusted: ssl.SSLContext) -> None:
    async with api(trusted) as http:
        for path in ("/", f"/s/{'0' * 32}", "/static/app.js", "/static/style.css"):
            async with http.get(f"{up.url}{path}") as resp:
                assert resp.status == 200, path
                assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert resp.headers["Referrer-Policy"] == "no-referrer"
                if path == "/":
                    markup = _Markup()
                    markup.feed(await resp.text())
        assert markup.scripts == ["/static/app.js"]
        assert markup.inline == []
        for path in ("/static/..%2Fconfig.py", "/static/nothing.js", "/static/index.html"):
            async with http.get(f"{up.url}{path}") as resp:
                assert resp.status == 404, path


async def test_https_is_served_with_a_certificate_from_the_local_ca(
        up: Up, trusted: ssl.SSLContext) -> None:
    assert up.url.startswith("https://")
    async with api(trusted) as http:  # verified: chain to ca.pem and 127.0.0.1 in the SAN
        async with http.get(f"{up.url}/healthz") as resp:
            assert resp.status == 200
        session = await create_session(http, up.url, name="secure")
    assert session["join_url"].startswith(f"{up.url}/s/{session['session_id']}?t=")
    assert (up.data_dir / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    assert (up.data_dir / "tls" / "ca-key.pem").stat().st_mode & 0o077 == 0


def test_the_certificate_is_kept_and_a_new_address_gets_one_from_the_same_ca(
        up: Up, tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls"
    shutil.copytree(up.data_dir / "tls", tls_dir)
    before = {p.name: p.read_bytes() for p in tls_dir.iterdir()}
    config = SignalingConfig(tls=True, data_dir=str(tmp_path))
    ensure_certificate(tls_dir, server_names(config))  # what signaling does on a restart
    assert {p.name: p.read_bytes() for p in tls_dir.iterdir()} == before

    moved = SignalingConfig(tls=True, data_dir=str(tmp_path), public_url="https://voice.lan")
    ensure_certificate(tls_dir, server_names(moved))
    assert (tls_dir / "ca.pem").read_bytes() == before["ca.pem"]
    assert (tls_dir / "cert.pem").read_bytes() != before["cert.pem"]
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
    context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")  # a matching pair

    own = SignalingConfig(tls=True, tls_cert=str(tls_dir / "cert.pem"),
                          tls_key=str(up.data_dir / "tls" / "key.pem"))
    with pytest.raises(TlsError, match="cannot use the certificate"):
        server_context(own)  # the old key does not match the new certificate


async def test_a_server_with_an_admin_key_asks_for_it_once_and_guests_never(
        browser: Any, tmp_path: Path) -> None:
    key = "household-" + os.urandom(16).hex()
    with running_up(tmp_path, edges=1, env_extra={"VOXRELAY_ADMIN_KEY": key}) as guarded:
        async with page_in(browser) as page:
            await page.goto(f"{guarded.url}/")
            await page.locator("#home-name").fill("Owner")
            start = page.get_by_role("button", name="Start a conversation")
            await start.click()
            await expect(page.locator("#home-error")).to_contain_text(
                "needs its key", timeout=UI_TIMEOUT_MS)
            await page.locator("#admin-key").fill("not-" + key)
            await start.click()
            await expect(page.locator("#home-error")).to_contain_text(
                "not right", timeout=UI_TIMEOUT_MS)
            await page.locator("#admin-key").fill(key)
            await start.click()
            await page.wait_for_url(SESSION_PAGE, timeout=SLOW_MS)
            assert key not in page.url
            invitation = page.url

            await page.goto(f"{guarded.url}/")  # the browser kept the key
            await page.locator("#home-name").fill("Owner")
            await start.click()
            await page.wait_for_url(SESSION_PAGE, timeout=SLOW_MS)

        async with page_in(browser) as guest:  # another browser, with the link alone
            await guest.goto(invitation)
            await guest.get_by_role("button", name="Join", exact=True).click()
            await expect(guest.get_by_role("status")).to_have_text(
                "Connected", timeout=CONNECT_TIMEOUT_MS)
            assert key not in await guest.content()
