// AudioWorklet processors for the WebSocket transport (ws-call.js), in an AudioContext
// running at 24 kHz: "pcm-capture" posts the microphone as 20 ms Int16 frames (480
// samples); "pcm-player" plays the Int16 frames it is given, a bounded queue of them
// ("flush" empties it when the AI is interrupted).

const FRAME_SAMPLES = 480;
const MAX_QUEUED_FRAMES = 50; // 1 s: beyond it the oldest audio is dropped

class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0]?.[0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i += 1) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === FRAME_SAMPLES) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
        this.frame = new Int16Array(FRAME_SAMPLES);
        this.filled = 0;
      }
    }
    return true;
  }
}

class PcmPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;
    this.port.onmessage = (e) => {
      if (e.data === "flush") {
        this.queue = [];
        this.offset = 0;
        return;
      }
      this.queue.push(new Int16Array(e.data));
      if (this.queue.length > MAX_QUEUED_FRAMES) {
        this.queue.shift();
        this.offset = 0;
      }
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    for (let i = 0; i < out.length; i += 1) {
      const frame = this.queue[0];
      if (!frame) {
        out[i] = 0;
        continue;
      }
      out[i] = frame[this.offset++] / 0x8000;
      if (this.offset >= frame.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
registerProcessor("pcm-player", PcmPlayer);
