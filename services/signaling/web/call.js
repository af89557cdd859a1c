// One participant's connection to a conversation: the microphone, the WebRTC peer
// connection to a media edge, and the `events` DataChannel.
//
// States: idle → connecting → connected ⇄ reconnecting → failed (with a reason).
// A lost connection (ICE failed, the channel closed, or no latency.pong for 2.5 s)
// is rebuilt with a fresh offer under the same session and client id (the server
// replaces the old peer; the conversation carries on) a few times before the call
// gives up; a session that
// ended or vanished fails at once with a message a person can act on (onState gets
// the state, the reason, and for failures the error code).
// The edge measures its own round trip the same way: its `latency.ping` (ping_id
// "e<n>") is answered at once with a `latency.pong` carrying the same ping_id.
// Fallback: when WebRTC is not connected within 8 s of joining (or failed twice before
// ever connecting), the call switches to the WebSocket transport (ws-call.js) under the
// same session and client id, logs INT_V2_WEBRTC_FALLBACK and stays on it.
// Audio: an Opus track each way (`audio: "track"`, the default: Chromium's echo
// cancellation works on it), or (`audio: "datachannel"`) PCM16 on an `audio`
// DataChannel through the page's own pipeline (pcm-audio.js): 20 ms frames up, and down
// 20 ms frames behind an 8-byte header whose `seq` shows frames the edge dropped
// (counted in `framesLost`).

import * as api from "./api.js";
import { PcmAudio } from "./pcm-audio.js";
import { WsTransport } from "./ws-call.js";

const GATHER_TIMEOUT_MS = 2000;
const CONNECT_TIMEOUT_MS = 15000;
const DISCONNECTED_GRACE_MS = 1500;
const PING_EVERY_MS = 1000;
const PONG_SILENCE_MS = 2500;
const MAX_RECONNECTS = 3;
const RECONNECT_STEP_MS = 250;
const FALLBACK_AFTER_MS = 8000;
const FALLBACK_AFTER_FAILURES = 2;
const AUDIO_LABEL = "audio";
const AUDIO_HEADER_BYTES = 8;
const AUDIO_MESSAGE_BYTES = AUDIO_HEADER_BYTES + 960;
const FINAL_CODES = new Set(["session_ended", "session_not_found", "unauthorized", "invalid_token",
  "token_expired", "session_full"]);

export const MIC_CONSTRAINTS = {
  channelCount: 1,
  sampleRate: 24000,
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
};

export class MicError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "MicError";
    this.code = code;
  }
}

// `deviceId` exact: that microphone or an error; otherwise a preference (a remembered
// microphone that is gone falls back to the default one).
export async function openMic(deviceId, { exact = false } = {}) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new MicError("insecure",
      "This browser only allows the microphone on secure pages. Open this page over HTTPS "
      + "(start voxrelay with --tls) or on localhost.");
  }
  const audio = { ...MIC_CONSTRAINTS };
  if (deviceId) audio.deviceId = exact ? { exact: deviceId } : { ideal: deviceId };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio });
  } catch (e) {
    throw micError(e);
  }
}

/**
 * The offer as sent to the server: usedtx=1 on Opus says this page plays DTX (RFC 7587),
 * so the server sends the AI's pauses as a packet every 400 ms rather than fifty a second.
 * Only the copy sent changes: the parameter tells the server what this receiver accepts,
 * and the browser's own description needs no change for that.
 */
function askForDtx(sdp) {
  const opus = sdp.match(/^a=rtpmap:(\d+) opus\/48000/im);
  if (!opus) return sdp;
  const fmtp = new RegExp(`^(a=fmtp:${opus[1]} [^\\r\\n]*)`, "m");
  if (fmtp.test(sdp)) {
    return /usedtx=/.test(sdp.match(fmtp)[1]) ? sdp : sdp.replace(fmtp, "$1;usedtx=1");
  }
  return sdp.replace(/^(a=rtpmap:\d+ opus\/48000[^\r\n]*)(\r?\n)/im, `$1$2a=fmtp:${opus[1]} usedtx=1$2`);
}

function micError(e) {
  switch (e?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return new MicError("denied",
        "Microphone access was denied. Allow the microphone for this site (the icon in the "
        + "address bar), then press Join again.");
    case "NotFoundError":
    case "OverconstrainedError":
      return new MicError("missing", "No microphone was found. Connect one and press Join again.");
    case "NotReadableError":
    case "AbortError":
      return new MicError("busy",
        "The microphone is in use by another app or could not start. Close the other app and try again.");
    default:
      return new MicError("unknown", `The microphone could not start (${e?.message ?? e}).`);
  }
}

export class Call {
  constructor({ sessionId, token, name, onState, onEvent, onRtt, onRemoteStream, audio = "track" }) {
    Object.assign(this, { sessionId, token, name, onState, onEvent, onRtt, onRemoteStream });
    this.audioTransport = audio;
    this.pcm = null;
    this.audioChannel = null;
    this.lastSeq = null;
    this.framesLost = 0;
    this.state = "idle";
    this.pc = null;
    this.channel = null;
    this.sender = null;
    this.stream = null;
    this.clientId = null;
    this.muted = false;
    this.generation = 0;
    this.reconnects = 0;
    this.timers = new Set();
    this.pings = new Map();
    this.lastPong = 0;
    this.ended = false;
    this.transport = audio === "datachannel" ? "datachannel" : "webrtc";
    this.ws = null;
    this.rtcConnected = false;
    this.rtcFailures = 0;
    this.fallbackTimer = null;
  }

  // Start the microphone (asked once) and connect. Throws MicError or ApiError.
  async start(deviceId) {
    this.#setState("connecting");
    try {
      this.stream = await openMic(deviceId);
      if (this.audioTransport === "datachannel") {
        this.pcm = new PcmAudio((buffer) => this.#sendPcm(buffer));
        this.onRemoteStream(await this.pcm.start(this.stream));
      }
      this.fallbackTimer = setTimeout(() => {
        if (!this.rtcConnected) this.#fallback("WebRTC did not connect within 8 s");
      }, FALLBACK_AFTER_MS);
      try {
        await this.#connect();
      } catch (e) {
        if (e instanceof api.ApiError || e instanceof MicError) throw e;
        await this.#fallback(`WebRTC is not available (${e.message})`);
      }
    } catch (e) {
      this.#shutdown();
      this.#setState("failed", e.message, e.code);
      throw e;
    }
    return this.stream;
  }

  async leave() {
    if (this.ended) return;
    this.ended = true;
    const clientId = this.clientId;
    this.#shutdown();
    this.#setState("idle", "You left the conversation.");
    await api.leaveQuietly(this.sessionId, this.token, clientId);
  }

  // A muted track sends silence; the edge is told too, so it stops publishing it.
  setMuted(muted) {
    this.muted = muted;
    for (const track of this.stream?.getAudioTracks() ?? []) track.enabled = !muted;
    if (this.ws) {
      this.ws.setMuted(muted);
      return;
    }
    this.#send({ type: "client.mute", ts: Date.now(), payload: { muted } });
  }

  // Another microphone, without renegotiating: the sender's track is replaced.
  async switchMic(deviceId) {
    const stream = await openMic(deviceId, { exact: true });
    const [track] = stream.getAudioTracks();
    track.enabled = !this.muted;
    if (this.sender) await this.sender.replaceTrack(track);
    this.pcm?.setStream(stream);
    this.ws?.setStream(stream);
    for (const old of this.stream?.getTracks() ?? []) old.stop();
    this.stream = stream;
    return stream;
  }

  // -- connecting ---------------------------------------------------------------

  async #connect() {
    const generation = ++this.generation;
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    const [track] = this.stream.getAudioTracks();
    track.enabled = !this.muted;
    const current = () => generation === this.generation && !this.ended;
    if (this.audioTransport === "datachannel") {
      const audio = pc.createDataChannel(AUDIO_LABEL); // ordered and reliable
      audio.binaryType = "arraybuffer";
      audio.onmessage = (e) => current() && this.#onAudio(e.data);
      this.audioChannel = audio;
      this.lastSeq = null; // a new peer at the edge numbers its frames afresh
    } else {
      this.sender = pc.addTrack(track, this.stream);
      pc.ontrack = (e) => current() && this.onRemoteStream(e.streams[0] ?? new MediaStream([e.track]));
    }
    const channel = pc.createDataChannel("events");
    this.channel = channel;
    pc.onconnectionstatechange = () => current() && this.#onConnectionState(pc.connectionState);
    channel.onopen = () => {
      if (!current()) return;
      if (this.muted) this.setMuted(true); // a rebuilt connection starts muted too
      this.#startPinging(channel);
    };
    channel.onmessage = (e) => current() && this.#onMessage(e.data);
    channel.onclose = () => current() && this.#lost("the server closed the connection");
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, GATHER_TIMEOUT_MS);
    if (!current()) return;
    const offer = { sdp: askForDtx(pc.localDescription.sdp), type: "offer", name: this.name,
      transport: this.audioTransport };
    if (this.clientId) offer.client_id = this.clientId; // reconnecting: the same client
    const answer = await api.join(this.sessionId, this.token, offer);
    if (!current()) return;
    this.clientId = answer.client_id;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    this.#after(CONNECT_TIMEOUT_MS, () => {
      if (current() && pc.connectionState !== "connected") {
        this.#lost("no audio connection could be made (is UDP blocked between here and the server?)");
      }
    });
  }

  #onConnectionState(state) {
    if (state === "connected") {
      this.rtcConnected = true;
      this.reconnects = 0;
      this.#setState("connected");
    } else if (state === "disconnected") {
      this.#setState("reconnecting", "the network connection was interrupted");
      const generation = this.generation;
      this.#after(DISCONNECTED_GRACE_MS, () => {
        if (generation === this.generation && this.pc?.connectionState === "disconnected") {
          this.#lost("the network connection was interrupted");
        }
      });
    } else if (state === "failed" || state === "closed") {
      this.#lost("the audio connection failed");
    }
  }

  // The connection is gone: rebuild it under the same session, or give up.
  async #lost(reason) {
    if (this.ended || this.state === "failed" || this.ws) return;
    this.#shutdown({ keepMic: true });
    if (!this.rtcConnected && ++this.rtcFailures >= FALLBACK_AFTER_FAILURES) {
      await this.#fallback(`WebRTC failed twice (${reason})`);
      return;
    }
    if (this.reconnects >= MAX_RECONNECTS) {
      this.#fail(`Lost the connection: ${reason}.`);
      return;
    }
    this.reconnects += 1;
    this.#setState("reconnecting", reason);
    const generation = this.generation;
    await new Promise((resolve) => this.#after(RECONNECT_STEP_MS * this.reconnects, resolve));
    if (this.ended || generation !== this.generation) return;
    try {
      await this.#connect();
    } catch (e) {
      if (e instanceof api.ApiError && e.code === "client_not_found") {
        this.clientId = null; // the server forgot this client: join afresh
        this.#lost(e.message.replace(/\.$/, ""));
      } else if (e instanceof api.ApiError && FINAL_CODES.has(e.code)) {
        this.#fail(e.message, e.code);
      } else {
        this.#lost(e.message.replace(/\.$/, ""));
      }
    }
  }

  // -- the WebSocket fallback ---------------------------------------------------------

  async #fallback(reason) {
    if (this.ended || this.ws || this.state === "failed") return;
    console.warn("INT_V2_WEBRTC_FALLBACK", { sessionId: this.sessionId, clientId: this.clientId, reason });
    this.#shutdown({ keepMic: true });
    this.pcm?.close(); // the WebSocket transport has its own
    this.pcm = null;
    this.transport = "websocket";
    const ws = new WsTransport({
      sessionId: this.sessionId,
      token: this.token,
      name: this.name,
      clientId: this.clientId,
      onOpen: () => this.#setState("connected"),
      onMessage: (data) => this.ws === ws && this.#onMessage(data),
      onRemoteStream: (stream) => this.onRemoteStream(stream),
      onReconnecting: () => this.ws === ws && this.#setState("reconnecting", "the connection to the server was interrupted"),
      onRtt: (ms) => this.ws === ws && this.onRtt(ms),
      onClose: () => this.ws === ws && this.#fail("Lost the connection: the WebSocket could not be opened again."),
    });
    this.ws = ws;
    try {
      await ws.start(this.stream);
      if (this.muted) ws.setMuted(true);
    } catch (e) {
      if (this.ws === ws) this.#fail(`Could not connect over WebSocket either: ${e.message}.`);
    }
  }

  #fail(message, code = "connection_lost") {
    this.#shutdown();
    this.#setState("failed", message, code);
  }

  // -- the events channel ---------------------------------------------------------

  #startPinging(channel) {
    this.lastPong = performance.now();
    let next = 0;
    const ping = () => {
      if (channel.readyState !== "open") return;
      if (performance.now() - this.lastPong > PONG_SILENCE_MS) {
        this.#lost("the server stopped answering");
        return;
      }
      const id = `p${++next}`;
      this.pings.set(id, performance.now());
      if (this.pings.size > 16) this.pings.delete(this.pings.keys().next().value);
      this.#send({ type: "latency.ping", ts: Date.now(), payload: { ping_id: id } });
    };
    ping();
    const timer = setInterval(ping, PING_EVERY_MS);
    this.timers.add({ cancel: () => clearInterval(timer) });
  }

  #onMessage(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return; // not ours to judge: the edge only sends JSON
    }
    if (event?.type === "latency.ping") {
      const pingId = event.payload?.ping_id;
      if (pingId !== undefined) {
        this.#send({ type: "latency.pong", ts: Date.now(), payload: { ping_id: pingId } });
      }
      return;
    }
    if (event?.type === "ai.interrupted") this.pcm?.flush();
    if (event?.type === "latency.pong") {
      const sent = this.pings.get(event.payload?.ping_id);
      this.lastPong = performance.now();
      if (sent !== undefined) {
        this.pings.delete(event.payload.ping_id);
        this.onRtt(performance.now() - sent);
      }
      return;
    }
    if (typeof event?.type === "string") this.onEvent(event);
  }

  // -- PCM on the audio channel ------------------------------------------------------

  #sendPcm(buffer) {
    if (!this.muted && this.audioChannel?.readyState === "open") this.audioChannel.send(buffer);
  }

  #onAudio(data) {
    if (!(data instanceof ArrayBuffer) || data.byteLength !== AUDIO_MESSAGE_BYTES) return;
    const seq = new DataView(data).getUint32(0, true);
    if (this.lastSeq !== null) this.framesLost += (seq - this.lastSeq - 1) >>> 0;
    this.lastSeq = seq;
    this.pcm?.play(data.slice(AUDIO_HEADER_BYTES));
  }

  // -- plumbing ---------------------------------------------------------------------

  #send(message) {
    if (this.ws) this.ws.send(message);
    else if (this.channel?.readyState === "open") this.channel.send(JSON.stringify(message));
  }

  #after(ms, fn) {
    const entry = { cancel: () => clearTimeout(handle) };
    const handle = setTimeout(() => {
      this.timers.delete(entry);
      fn();
    }, ms);
    this.timers.add(entry);
  }

  #shutdown({ keepMic = false } = {}) {
    this.generation += 1; // handlers of the old connection go quiet
    if (!keepMic) {
      clearTimeout(this.fallbackTimer);
      const ws = this.ws;
      this.ws = null;
      ws?.close();
    }
    for (const timer of this.timers) timer.cancel();
    this.timers.clear();
    this.pings.clear();
    this.channel?.close();
    this.pc?.close();
    this.pc = null;
    this.channel = null;
    this.audioChannel = null;
    this.sender = null;
    if (!keepMic) { // a rebuilt connection keeps the microphone and the client id
      this.clientId = null;
      this.pcm?.close();
      this.pcm = null;
      for (const track of this.stream?.getTracks() ?? []) track.stop();
    }
  }

  #setState(state, reason = "", code = "") {
    this.state = state;
    this.onState(state, reason, code);
  }
}

export function gatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => pc.iceGatheringState === "complete" && done();
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}
