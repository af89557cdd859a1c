// The WebSocket transport, for when WebRTC cannot connect: the microphone as PCM16
// 24 kHz mono 20 ms frames over a WebSocket on the server's own port
// (/v1/sessions/<sid>/ws), the AI's voice back as frames of the same kind, and the
// session's events as the same JSON text the `events` DataChannel carries.
//
// Audio runs through one AudioContext at 24 kHz with the processors of pcm-worklet.js;
// the AI's voice is handed to the page as a MediaStream (onRemoteStream), like a
// WebRTC track.

const SAMPLE_RATE = 24000;
const WORKLET_URL = "/static/pcm-worklet.js";

export class WsTransport {
  constructor({ sessionId, token, name, clientId, onOpen, onMessage, onRemoteStream, onClose }) {
    Object.assign(this, { sessionId, token, name, clientId, onOpen, onMessage,
      onRemoteStream, onClose });
    this.ws = null;
    this.context = null;
    this.source = null;
    this.capture = null;
    this.player = null;
    this.muted = false;
    this.closed = false;
  }

  // Start audio and open the socket; resolves once it is open, rejects if it cannot.
  async start(stream) {
    const context = new AudioContext({ sampleRate: SAMPLE_RATE });
    this.context = context;
    await context.audioWorklet.addModule(WORKLET_URL);
    this.capture = new AudioWorkletNode(context, "pcm-capture");
    this.capture.port.onmessage = (e) => this.#sendAudio(e.data);
    this.player = new AudioWorkletNode(context, "pcm-player");
    const out = context.createMediaStreamDestination();
    this.player.connect(out);
    this.setStream(stream);
    if (context.state === "suspended") await context.resume().catch(() => {});
    this.onRemoteStream(out.stream);
    await this.#open();
  }

  // Capture another microphone stream (the previous source is disconnected).
  setStream(stream) {
    this.source?.disconnect();
    this.source = this.context.createMediaStreamSource(stream);
    this.source.connect(this.capture);
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
    this.ws?.close();
    this.source?.disconnect();
    this.context?.close().catch(() => {});
    this.ws = null;
    this.context = null;
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
      ws.onopen = () => {
        this.onOpen();
        resolve();
      };
      ws.onmessage = (e) => {
        if (typeof e.data === "string") {
          this.#onText(e.data);
        } else {
          this.player?.port.postMessage(e.data, [e.data]);
        }
      };
      ws.onclose = () => {
        if (ws !== this.ws) return;
        reject(new Error("the server refused the WebSocket connection"));
        if (!this.closed) this.onClose();
      };
    });
  }

  #onText(text) {
    try {
      if (JSON.parse(text)?.type === "ai.interrupted") this.player?.port.postMessage("flush");
    } catch {
      // not JSON: the call's handler drops it as the DataChannel's does
    }
    this.onMessage(text);
  }

  #sendAudio(buffer) {
    if (!this.muted && this.ws?.readyState === WebSocket.OPEN) this.ws.send(buffer);
  }
}
