// Direct mode: this device talks to the Realtime API itself, over its own WebRTC call.
//
// The server stays in the loop for what must not be in a browser and for the record:
// it hands out an ephemeral key for this conversation (its own API key never comes
// here), places the offer (POST /v1/realtime/calls with that key, as the API takes it)
// and follows the call's sideband, so the transcript is recorded and tools run on the
// server as in relay mode. The AI's events arrive on the call's `oai-events` channel in
// the Realtime API's own shape; this file turns the ones the page shows into the
// events the relay's `events` channel carries (turn.start, transcript.delta/done,
// turn.end, ai.state, error), so the page handles both modes alike.
//
// Same surface as Call (call.js): start, leave, setMuted, switchMic, state, pc,
// clientId, transport ("direct"). One device per direct call: the others in the
// conversation are not mixed in, and a lost call is not rebuilt (join again).

import * as api from "./api.js";
import { MicError, gatheringComplete, openMic } from "./call.js";

const GATHER_TIMEOUT_MS = 2000;
const CONNECT_TIMEOUT_MS = 15000;
const EVENTS_LABEL = "oai-events";

export class DirectCall {
  constructor({ sessionId, token, name, onState, onEvent, onRemoteStream }) {
    Object.assign(this, { sessionId, token, name, onState, onEvent, onRemoteStream });
    this.state = "idle";
    this.transport = "direct";
    this.pc = null;
    this.sender = null;
    this.stream = null;
    this.clientId = null;
    this.callId = null;
    this.muted = false;
    this.ended = false;
    this.timer = null;
  }

  async start(deviceId) {
    this.#setState("connecting");
    try {
      this.stream = await openMic(deviceId);
      const secret = await api.clientSecret(this.sessionId, this.token, this.name);
      const pc = new RTCPeerConnection({ iceServers: [] });
      this.pc = pc;
      const [track] = this.stream.getAudioTracks();
      this.sender = pc.addTrack(track, this.stream);
      const channel = pc.createDataChannel(EVENTS_LABEL);
      channel.onmessage = (e) => this.pc === pc && this.#onRealtimeEvent(e.data);
      pc.ontrack = (e) => this.onRemoteStream(e.streams[0] ?? new MediaStream([e.track]));
      pc.onconnectionstatechange = () => this.pc === pc && this.#onConnectionState(pc.connectionState);
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc, GATHER_TIMEOUT_MS);
      const answer = await api.directCall(secret.value, pc.localDescription.sdp);
      this.clientId = answer.clientId;
      this.callId = answer.callId;
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      this.timer = setTimeout(() => {
        if (this.pc === pc && pc.connectionState !== "connected") {
          this.#fail("No audio connection to the AI could be made (is UDP blocked between here and the AI service?). Try the relay audio path.");
        }
      }, CONNECT_TIMEOUT_MS);
    } catch (e) {
      this.#shutdown();
      this.#setState("failed", e.message, e.code);
      throw e instanceof MicError || e instanceof api.ApiError ? e
        : new Error(`the direct call could not be made (${e.message})`);
    }
    return this.stream;
  }

  async leave() {
    if (this.ended) return;
    this.ended = true;
    const clientId = this.clientId;
    this.#shutdown();
    this.#setState("idle", "You left the conversation.");
    await api.leaveQuietly(this.sessionId, this.token, clientId); // the server hangs up
  }

  setMuted(muted) {
    this.muted = muted;
    for (const track of this.stream?.getAudioTracks() ?? []) track.enabled = !muted;
  }

  async switchMic(deviceId) {
    const stream = await openMic(deviceId, { exact: true });
    const [track] = stream.getAudioTracks();
    track.enabled = !this.muted;
    if (this.sender) await this.sender.replaceTrack(track);
    for (const old of this.stream?.getTracks() ?? []) old.stop();
    this.stream = stream;
    return stream;
  }

  #onConnectionState(state) {
    if (state === "connected") {
      clearTimeout(this.timer);
      this.#setState("connected");
    } else if (state === "failed" || state === "closed") {
      this.#fail("The direct connection to the AI was lost. Join again to start a new call.");
    }
  }

  // The Realtime API's events, as the relay's events channel would have said them.
  #onRealtimeEvent(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    const say = (type, payload) => this.onEvent({ type, ts: Date.now(), payload });
    const user = { role: "user", speaker: this.name };
    switch (event.type) {
      case "input_audio_buffer.speech_started":
        say("turn.start", { turn_id: event.item_id, ...user });
        say("ai.state", { state: "listening" });
        break;
      case "input_audio_buffer.speech_stopped":
        say("turn.end", { turn_id: event.item_id, role: "user", status: "completed" });
        say("ai.state", { state: "thinking" });
        break;
      case "conversation.item.input_audio_transcription.completed":
        say("transcript.done", { turn_id: event.item_id, ...user, text: event.transcript ?? "" });
        break;
      case "response.output_audio_transcript.delta":
        say("transcript.delta", { turn_id: event.item_id, role: "assistant", delta: event.delta ?? "" });
        break;
      case "response.output_audio_transcript.done":
        say("transcript.done", { turn_id: event.item_id, role: "assistant", text: event.transcript ?? "" });
        break;
      case "response.done":
        for (const item of event.response?.output ?? []) {
          if (item.type === "message") {
            say("turn.end", { turn_id: item.id, role: "assistant", status: event.response.status });
          }
        }
        break;
      case "output_audio_buffer.started":
        say("ai.state", { state: "speaking" });
        break;
      case "output_audio_buffer.stopped":
      case "output_audio_buffer.cleared":
        say("ai.state", { state: "listening" });
        break;
      case "error":
        say("error", { code: event.error?.code ?? "error", message: event.error?.message ?? "" });
        break;
      default:
        break;
    }
  }

  #fail(message) {
    this.#shutdown();
    this.#setState("failed", message, "connection_lost");
  }

  #shutdown() {
    clearTimeout(this.timer);
    this.pc?.close();
    this.pc = null;
    this.sender = null;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
  }

  #setState(state, reason = "", code = "") {
    this.state = state;
    this.onState(state, reason, code);
  }
}
