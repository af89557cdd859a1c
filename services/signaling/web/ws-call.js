// The WebSocket transport, for when WebRTC cannot connect: the microphone as PCM16
// 24 kHz mono 20 ms frames over a WebSocket on the server's own port
// (/v1/sessions/<sid>/ws), the AI's voice back as frames of the same kind, and the
// session's events as the same JSON text the `events` DataChannel carries.
//
// Audio runs through the page's own pipeline (pcm-audio.js); the AI's voice is handed
// to the page as a MediaStream (onRemoteStream), like a WebRTC track.
//
// A socket that drops (the network, a proxy) is opened again as the same client (the
// server's first message, ws.welcome, says its id): after 0.25, 0.5, 1, 2, 2... s, for
// up to RECONNECT_FOR_MS; only then is the connection lost (onClose). A drop that
// closes nothing (packets silently lost) is noticed as on WebRTC: a latency.ping every
// second, and no latency.pong for PONG_SILENCE_MS means the socket is gone.

import { PcmAudio } from "./pcm-audio.js";

const RECONNECT_FOR_MS = 15000;
const FIRST_RETRY_MS = 250;
const MAX_RETRY_MS = 2000;
const OPEN_TIMEOUT_MS = 4000;
const PING_EVERY_MS = 1000;
const PONG_SILENCE_MS = 2500;

export class WsTransport {
  constructor({ sessionId, token, name, clientId, onOpen, onMessage, onRemoteStream, onClose,
    onReconnecting, onRtt }) {
    Object.assign(this, { sessionId, token, name, clientId, onOpen, onMessage,
      onRemoteStream, onClose, onReconnecting, onRtt });
    this.pings = new Map();
    this.ws = null;
    this.audio = new PcmAudio((buffer) => this.#sendAudio(buffer));
    this.muted = false;
    this.closed = false;
    this.lastPong = 0;
    this.pinger = null;
  }

  // Start audio and open the socket; resolves once it is open, rejects if it cannot.
  async start(stream) {
    this.onRemoteStream(await this.audio.start(stream));
    await this.#open();
  }

  // Capture another microphone stream.
  setStream(stream) {
    this.audio.setStream(stream);
  }

  setMuted(muted) {
    this.muted = muted;
    this.send({ type: "client.mute", ts: Date.now(), payload: { muted } });
  }

  send(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  close() {
    this.closed = true;
    clearInterval(this.pinger);
    this.ws?.close();
    this.audio.close();
    this.ws = null;
  }

  #open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ t: this.token, name: this.name });
    if (this.clientId) query.set("client_id", this.clientId);
    const url = `${scheme}//${location.host}/v1/sessions/${encodeURIComponent(this.sessionId)}/ws?${query}`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    return new Promise((resolve, reject) => {
      let opened = false;
      const timer = setTimeout(() => {
        if (opened || ws !== this.ws) return;
        this.ws = null; // a connection that hangs (packets lost): give up on it
        ws.close();
        reject(new Error("the WebSocket did not open in time"));
      }, OPEN_TIMEOUT_MS);
      ws.onopen = () => {
        opened = true;
        clearTimeout(timer);
        this.#startPinging(ws);
        this.onOpen();
        resolve();
      };
      ws.onmessage = (e) => {
        if (typeof e.data === "string") {
          this.#onText(e.data);
        } else {
          this.audio.play(e.data);
        }
      };
      ws.onclose = () => {
        if (ws !== this.ws) return;
        clearTimeout(timer);
        if (!opened) reject(new Error("the server refused the WebSocket connection"));
        else if (!this.closed) this.#reconnect();
      };
    });
  }

  #startPinging(ws) {
    clearInterval(this.pinger);
    this.lastPong = performance.now();
    let next = 0;
    this.pinger = setInterval(() => {
      if (ws !== this.ws) return;
      if (performance.now() - this.lastPong > PONG_SILENCE_MS) {
        this.ws = null; // silent: treat it as closed, and stop listening to it
        ws.close();
        if (!this.closed) this.#reconnect();
        return;
      }
      const id = `w${++next}`;
      this.pings.set(id, performance.now());
      if (this.pings.size > 16) this.pings.delete(this.pings.keys().next().value);
      this.send({ type: "latency.ping", ts: Date.now(), payload: { ping_id: id } });
    }, PING_EVERY_MS);
  }

  // The open socket dropped: open it again as the same client, a few times, bounded.
  async #reconnect() {
    clearInterval(this.pinger);
    const until = performance.now() + RECONNECT_FOR_MS;
    let wait = FIRST_RETRY_MS;
    this.onReconnecting?.();
    while (!this.closed && performance.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(wait * 2, MAX_RETRY_MS);
      if (this.closed) return;
      try {
        await this.#open();
        return; // its onclose reconnects again if it drops later
      } catch {
        // refused or unreachable: try again until the time is up
      }
    }
    if (!this.closed) this.onClose();
  }

  #onText(text) {
    let type = null;
    try {
      const message = JSON.parse(text);
      type = message?.type;
      if (type === "ws.welcome") this.clientId = message.payload?.client_id ?? this.clientId;
    } catch {
      // not JSON: the call's handler drops it as the DataChannel's does
    }
    if (type === "latency.pong") this.#pong(JSON.parse(text).payload?.ping_id);
    if (type === "ai.interrupted") this.audio.flush();
    if (type !== "ws.welcome") this.onMessage(text);
  }

  #pong(id) {
    this.lastPong = performance.now();
    const sent = this.pings.get(id);
    if (sent === undefined) return;
    this.pings.delete(id);
    this.onRtt?.(performance.now() - sent);
  }

  #sendAudio(buffer) {
    if (!this.muted && this.ws?.readyState === WebSocket.OPEN) this.ws.send(buffer);
  }
}
