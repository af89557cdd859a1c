// The voxrelay web client: start a conversation at "/", join one at "/s/<session>?t=<token>".
//
// Modules: api.js (HTTP API), call.js (mic + WebRTC + events channel), meters.js (levels),
// transcript.js (the log), qr.js (the join link as a QR code). This file wires them to the page.

import * as api from "./api.js";
import { Call, MicError } from "./call.js";
import { DirectCall } from "./direct-call.js";
import { Meters } from "./meters.js";
import { drawQr, encodeQr } from "./qr.js";
import { Transcript } from "./transcript.js";

const NAME_KEY = "voxrelay.name";
const MIC_KEY = "voxrelay.mic";
const VOLUME_KEY = "voxrelay.volume";
const ADMIN_KEY = "voxrelay.adminKey";
const MODE_KEY = "voxrelay.mode";
const MODES = new Set(["relay", "datachannel", "direct"]);
const STATE_LABELS = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  failed: "Failed",
};
const VIA = { websocket: " (WebSocket)", datachannel: " (PCM)", direct: " (direct to the AI)" };
const AI_LABELS = {
  idle: "The AI is ready",
  listening: "The AI is listening",
  thinking: "The AI is thinking…",
  speaking: "The AI is speaking",
};

const GONE = new Set(["session_ended", "session_not_found", "unauthorized", "invalid_token",
  "token_expired"]);

const UI_LATENCY_KEPT = 200;
const $ = (id) => document.getElementById(id);

function defaultName() {
  const stored = localStorage.getItem(NAME_KEY);
  if (stored) return stored;
  return /Android|iPhone|iPad|Mobile/i.test(navigator.userAgent) ? "Phone" : "Laptop";
}

function show(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

// -- the start page -------------------------------------------------------------------

function startPage() {
  $("home").hidden = false;
  const input = $("home-name");
  input.value = defaultName();
  const keyInput = $("admin-key");
  keyInput.value = localStorage.getItem(ADMIN_KEY) ?? "";
  $("start-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = input.value.trim() || defaultName();
    localStorage.setItem(NAME_KEY, name);
    const button = $("start");
    button.disabled = true;
    button.textContent = "Starting…";
    show($("home-error"), "");
    const adminKey = keyInput.value.trim();
    try {
      const session = await api.createSession(`${name}'s conversation`, adminKey);
      if (adminKey) localStorage.setItem(ADMIN_KEY, adminKey);
      location.assign(`/s/${session.session_id}?t=${encodeURIComponent(session.token)}`);
    } catch (err) {
      if (err.status === 401 || err.status === 403) {
        // This server wants its admin key (it listens beyond this machine).
        localStorage.removeItem(ADMIN_KEY);
        $("admin-key-row").hidden = false;
        keyInput.focus();
        show($("home-error"), adminKey
          ? "That server key is not right. Check it and try again."
          : "This server needs its key to start a conversation. Enter it below.");
      } else {
        show($("home-error"), err.message);
      }
      button.disabled = false;
      button.textContent = "Start a conversation";
    }
  });
}

// -- a conversation ---------------------------------------------------------------------

class Room {
  constructor(sessionId, token) {
    this.sessionId = sessionId;
    this.token = token;
    this.call = null;
    this.audio = $("remote-audio");
    this.transcript = new Transcript($("transcript"), $("transcript-empty"));
    this.meters = new Meters((levels) => this.#onLevels(levels));
    this.people = new Map();
    this.firstAudio = null; // {since, sawSilence} from the user's turn end to the AI's voice
    this.aiAudible = false;
    this.uiLatency = []; // {type, ms}: a DataChannel event's receipt → its update painted
  }

  open() {
    $("room").hidden = false;
    $("name").value = defaultName();
    this.#showInvite();
    this.#setupAudioControls();
    $("join").addEventListener("click", () => this.join());
    $("leave").addEventListener("click", () => this.leave());
    $("mute").addEventListener("click", () => this.#toggleMute());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") {
        this.meters.resume();
        if (this.audio.srcObject && this.audio.paused) this.audio.play().catch(() => {});
      }
    });
    window.addEventListener("pagehide", () => this.call?.leave());
    if (!this.token) {
      this.#error("This link is missing its access token. Ask for the full link, or start a new conversation.");
      $("join").disabled = true;
      return;
    }
    this.#checkSession();
  }

  // Say at once when a link points at a conversation that is gone.
  async #checkSession() {
    try {
      const session = await api.getSession(this.sessionId, this.token);
      if (session.name) show($("title"), session.name);
      if (session.state === "ended") throw new api.ApiError(409, "session_ended", "This conversation has ended. Start a new one.");
    } catch (err) {
      if (this.call) return; // joining tells its own story
      this.#error(err.message);
      $("join").disabled = GONE.has(err.code);
    }
  }

  async join() {
    const name = $("name").value.trim() || defaultName();
    localStorage.setItem(NAME_KEY, name);
    this.#error("");
    $("join").disabled = true;
    await this.meters.open(); // in the click: browsers start audio only after a gesture
    const mode = $("mode-select").value;
    localStorage.setItem(MODE_KEY, mode);
    $("mode-select").disabled = true;
    const Kind = mode === "direct" ? DirectCall : Call;
    this.call = new Kind({
      audio: mode === "datachannel" ? "datachannel" : "track",
      sessionId: this.sessionId,
      token: this.token,
      name,
      onState: (state, reason, code) => this.#onState(state, reason, code),
      onEvent: (event) => this.#onEvent(event),
      onRtt: (ms) => show($("rtt"), `${Math.round(ms)} ms`),
      onRemoteStream: (stream) => this.#onRemoteStream(stream),
    });
    try {
      const stream = await this.call.start(localStorage.getItem(MIC_KEY) || undefined);
      this.meters.setMic(stream);
      this.meters.start();
      $("join-panel").hidden = true;
      $("call-controls").hidden = false;
      $("mute").setAttribute("aria-pressed", "false");
      await this.#listMicrophones(stream);
    } catch (err) {
      this.call = null;
      this.#error(err instanceof MicError || err instanceof api.ApiError ? err.message
        : `Could not join: ${err.message}`);
      $("join").disabled = GONE.has(err.code);
    }
  }

  async leave() {
    const call = this.call;
    this.call = null;
    await call?.leave();
    this.#reset();
  }

  // -- call callbacks ------------------------------------------------------------------

  #onState(state, reason, code) {
    const status = $("status");
    status.dataset.state = state;
    const via = state === "connected" ? VIA[this.call?.transport] ?? "" : "";
    show($("status-text"), `${STATE_LABELS[state] ?? state}${via}`);
    show($("reason"), state === "reconnecting" || state === "idle" ? reason : "");
    if (state === "connected") {
      show($("ai-state"), AI_LABELS.listening);
      this.#loadPeople();
    } else if (state === "failed") {
      this.#error(reason);
      this.#reset();
      if (GONE.has(code)) $("join").disabled = true; // joining again cannot work
    }
  }

  #onEvent(event) {
    const received = performance.now();
    this.transcript.handle(event);
    const p = event.payload ?? {};
    switch (event.type) {
      case "question.ready":
        $("question-meta").textContent =
          `Question ${p.idx + 1} · ${p.domain || "general"} · ${p.difficultyTier || "any level"}`;
        $("question-text").textContent = p.text ?? "";
        $("question").hidden = false;
        $("question").dataset.idx = String(p.idx);
        break;
      case "ai.state":
        show($("ai-state"), AI_LABELS[p.state] ?? p.state);
        if (p.state === "speaking" && this.firstAudio && !this.meters.remote) this.#firstAudioHeard();
        break;
      case "turn.end":
        if (p.role === "user") this.firstAudio = { since: performance.now(), sawSilence: !this.aiAudible };
        break;
      case "client.joined":
        this.people.set(p.client_id, p.name || "guest");
        this.#renderPeople();
        break;
      case "client.left":
        this.people.delete(p.client_id);
        this.#renderPeople();
        break;
      case "error":
        this.#error(`The AI service reported a problem: ${p.message || p.code}`);
        break;
      default:
        break;
    }
    // How long the page took to show it: the next frame after the update is painted.
    requestAnimationFrame(() => {
      this.uiLatency.push({ type: event.type, ms: performance.now() - received });
      if (this.uiLatency.length > UI_LATENCY_KEPT) this.uiLatency.shift();
    });
  }

  #onRemoteStream(stream) {
    this.audio.srcObject = stream; // the one <audio> element, for the whole call
    this.audio.play().catch(() => {});
    this.meters.setRemote(stream);
  }

  #onLevels({ mic, ai, aiAudible }) {
    const meter = $("mic-meter");
    meter.style.setProperty("--level", mic.toFixed(3));
    meter.setAttribute("aria-valuenow", String(Math.round(mic * 100)));
    const orb = $("orb");
    orb.style.setProperty("--level", ai.toFixed(3));
    orb.dataset.speaking = String(aiAudible);
    this.aiAudible = aiAudible;
    if (!this.firstAudio) return;
    if (!aiAudible) this.firstAudio.sawSilence = true;
    else if (this.firstAudio.sawSilence) this.#firstAudioHeard();
  }

  #firstAudioHeard() {
    show($("ttfa"), `${Math.round(performance.now() - this.firstAudio.since)} ms`);
    this.firstAudio = null;
  }

  // -- page pieces -----------------------------------------------------------------------

  #showInvite() {
    const link = `${location.origin}/s/${this.sessionId}?t=${encodeURIComponent(this.token)}`;
    const canvas = $("qr");
    const pixels = Math.round(canvas.clientWidth * (window.devicePixelRatio || 1));
    canvas.width = canvas.height = pixels || canvas.width; // whole device pixels per module
    drawQr(canvas, encodeQr(link));
    $("copy-link").addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(link);
        $("copy-link").textContent = "Link copied";
      } catch {
        window.prompt("Copy this link", link);
      }
    });
    if (["127.0.0.1", "localhost", "[::1]"].includes(location.hostname)) {
      show($("qr-hint"), "Phones can't reach 127.0.0.1. To invite one, open this page at this "
        + "computer's network address (voxrelay up --host 0.0.0.0 --tls).");
    }
  }

  #setupAudioControls() {
    const volume = $("volume");
    volume.value = localStorage.getItem(VOLUME_KEY) ?? "100";
    this.audio.volume = Number(volume.value) / 100;
    volume.addEventListener("input", () => {
      this.audio.volume = Number(volume.value) / 100;
      localStorage.setItem(VOLUME_KEY, volume.value);
    });
    $("mic-select").addEventListener("change", (e) => this.#switchMic(e.target.value));
    const stored = localStorage.getItem(MODE_KEY);
    $("mode-select").value = MODES.has(stored) ? stored : "relay";
    navigator.mediaDevices?.addEventListener("devicechange", () => {
      if (this.call?.stream) this.#listMicrophones(this.call.stream);
    });
  }

  async #listMicrophones(stream) {
    const select = $("mic-select");
    const devices = (await navigator.mediaDevices.enumerateDevices())
      .filter((d) => d.kind === "audioinput");
    const current = stream.getAudioTracks()[0]?.getSettings().deviceId;
    select.replaceChildren(...devices.map((d, i) => {
      const option = new Option(d.label || `Microphone ${i + 1}`, d.deviceId);
      option.selected = d.deviceId === current;
      return option;
    }));
    select.disabled = devices.length === 0;
  }

  async #switchMic(deviceId) {
    if (!this.call) return;
    try {
      const stream = await this.call.switchMic(deviceId);
      this.meters.setMic(stream);
      localStorage.setItem(MIC_KEY, deviceId);
    } catch (err) {
      this.#error(err.message);
    }
  }

  #toggleMute() {
    const muted = $("mute").getAttribute("aria-pressed") !== "true";
    $("mute").setAttribute("aria-pressed", String(muted));
    this.call?.setMuted(muted);
  }

  async #loadPeople() {
    try {
      const session = await api.getSession(this.sessionId, this.token);
      this.people = new Map(session.clients.map((c) => [c.client_id, c.name]));
      this.#renderPeople();
    } catch {
      // the list is a nicety; the conversation goes on without it
    }
  }

  #renderPeople() {
    const names = [...this.people.values()];
    $("people").textContent = names.length ? `With ${names.join(", ")}` : "";
  }

  #error(message) {
    show($("room-error"), message);
  }

  #reset() {
    this.meters.stop();
    this.audio.srcObject = null;
    this.firstAudio = null;
    $("join-panel").hidden = false;
    $("call-controls").hidden = true;
    $("join").disabled = !this.token;
    show($("ai-state"), "Join to start talking");
    $("mic-select").disabled = true;
    $("mode-select").disabled = false;
    show($("rtt"), "—");
    this.people.clear();
    this.#renderPeople();
  }
}

// -- start ----------------------------------------------------------------------------

function main() {
  const match = location.pathname.match(/^\/s\/([0-9a-f]{32})\/?$/);
  if (!match) {
    if (location.pathname.startsWith("/s/")) {
      $("home-error").textContent = "That link is not a voxrelay conversation link.";
      $("home-error").hidden = false;
    }
    startPage();
    return;
  }
  const room = new Room(match[1], new URLSearchParams(location.search).get("t") ?? "");
  room.open();
  // For tests and the curious: read-only views of the live call.
  window.voxrelay = Object.freeze({
    get pc() { return room.call?.pc ?? null; },
    get state() { return room.call?.state ?? "idle"; },
    get clientId() { return room.call?.clientId ?? null; },
    get transport() { return room.call?.transport ?? null; },
    get callId() { return room.call?.callId ?? null; }, // direct mode: the AI service's call
    get framesLost() { return room.call?.framesLost ?? 0; }, // PCM transport: dropped by the edge
    get uiLatency() { return room.uiLatency.slice(); },
    sessionId: match[1],
  });
}

main();
