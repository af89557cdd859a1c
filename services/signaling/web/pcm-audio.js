// The page's own audio pipeline, for transports that carry PCM16 rather than a WebRTC
// track (the WebSocket fallback, ws-call.js, and the `audio` DataChannel, call.js):
// one AudioContext at 24 kHz with the processors of pcm-worklet.js. The microphone
// comes out as 20 ms Int16 frames (onFrame, an ArrayBuffer of 960 bytes); the AI's voice
// goes in as frames (play) and comes out as a MediaStream (stream), handed to the page
// like a WebRTC track. Chromium cancels echo only against audio a peer connection's
// track plays, so on these transports use headphones or a device with its own AEC.

const SAMPLE_RATE = 24000;
const WORKLET_URL = "/static/pcm-worklet.js";

export class PcmAudio {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.context = null;
    this.source = null;
    this.capture = null;
    this.player = null;
    this.stream = null;
  }

  async start(micStream) {
    const context = new AudioContext({ sampleRate: SAMPLE_RATE });
    this.context = context;
    await context.audioWorklet.addModule(WORKLET_URL);
    this.capture = new AudioWorkletNode(context, "pcm-capture");
    this.capture.port.onmessage = (e) => this.onFrame(e.data);
    this.player = new AudioWorkletNode(context, "pcm-player");
    const out = context.createMediaStreamDestination();
    this.player.connect(out);
    this.setStream(micStream);
    if (context.state === "suspended") await context.resume().catch(() => {});
    this.stream = out.stream;
    return out.stream;
  }

  // Capture another microphone stream (the previous source is disconnected).
  setStream(micStream) {
    this.source?.disconnect();
    this.source = this.context.createMediaStreamSource(micStream);
    this.source.connect(this.capture);
  }

  // One frame of the AI's voice (an ArrayBuffer of PCM16, handed over).
  play(buffer) {
    this.player?.port.postMessage(buffer, [buffer]);
  }

  // Drop what is queued to play (the AI was interrupted).
  flush() {
    this.player?.port.postMessage("flush");
  }

  close() {
    this.source?.disconnect();
    this.context?.close().catch(() => {});
    this.context = null;
  }
}
