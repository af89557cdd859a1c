// Audio levels: the microphone and the AI's voice, through Web Audio AnalyserNodes.
//
// Levels are read on a timer (at most 10 times a second), not every animation frame:
// enough for a meter, and cheap on a phone. The analysers only listen; what you hear
// plays through the page's <audio> element.

const UPDATE_MS = 100;
const FLOOR_DB = -60;
const SPEAKING_DB = -50; // above this the AI counts as audible (comfort noise stays far below)

export class Meters {
  constructor(onUpdate) {
    this.onUpdate = onUpdate;
    this.context = null;
    this.mic = null;
    this.remote = null;
    this.timer = null;
  }

  // Create (or wake) the AudioContext; call from a user gesture such as the Join click.
  async open() {
    if (!this.context) this.context = new AudioContext();
    await this.resume();
  }

  async resume() {
    if (this.context && this.context.state === "suspended") {
      try {
        await this.context.resume();
      } catch {
        // not allowed yet (no gesture): the next visibility change or click tries again
      }
    }
  }

  setMic(stream) {
    this.mic = this.#attach(this.mic, stream);
  }

  setRemote(stream) {
    this.remote = this.#attach(this.remote, stream);
  }

  start() {
    if (this.timer === null) this.timer = setInterval(() => this.#tick(), UPDATE_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.mic = this.#attach(this.mic, null);
    this.remote = this.#attach(this.remote, null);
    this.onUpdate({ mic: 0, ai: 0, aiAudible: false });
  }

  #attach(previous, stream) {
    if (previous) previous.source.disconnect();
    if (!stream || !this.context || stream.getAudioTracks().length === 0) return null;
    const source = this.context.createMediaStreamSource(stream);
    const analyser = this.context.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    return { source, analyser, buffer: new Float32Array(analyser.fftSize) };
  }

  #tick() {
    const micDb = levelDb(this.mic);
    const aiDb = levelDb(this.remote);
    this.onUpdate({ mic: toUnit(micDb), ai: toUnit(aiDb), aiAudible: aiDb > SPEAKING_DB });
  }
}

function levelDb(meter) {
  if (!meter) return -Infinity;
  meter.analyser.getFloatTimeDomainData(meter.buffer);
  let sum = 0;
  for (const v of meter.buffer) sum += v * v;
  const rms = Math.sqrt(sum / meter.buffer.length);
  return rms > 0 ? 20 * Math.log10(rms) : -Infinity;
}

function toUnit(db) {
  return Math.min(1, Math.max(0, (db - FLOOR_DB) / -FLOOR_DB));
}
