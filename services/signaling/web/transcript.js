// The live transcript: one entry per turn, in the order turns started.
//
// turn.start opens an entry (speaker known, text pending); transcript.delta grows the
// AI's live line; transcript.done finalises an entry's text and speaker (a user turn's
// speaker is the client's name, joined with "+" when several spoke); turn.end closes
// a reply and marks one that was interrupted.

const MAX_ENTRIES = 400;
const ASSISTANT = "Assistant";

export class Transcript {
  constructor(log, empty) {
    this.log = log;
    this.empty = empty;
    this.entries = new Map();
  }

  handle(event) {
    const p = event.payload ?? {};
    switch (event.type) {
      case "turn.start":
        this.#entry(p.turn_id, p.role, p.speaker);
        break;
      case "transcript.delta":
        if (p.role === "assistant") this.#append(this.#entry(p.turn_id, p.role), p.delta ?? "");
        break;
      case "transcript.done":
        this.#finish(this.#entry(p.turn_id, p.role, p.speaker), p.text ?? "");
        break;
      case "turn.end":
        this.#end(p.turn_id, p.role, p.status);
        break;
      default:
        break;
    }
  }

  clear() {
    this.entries.clear();
    this.log.replaceChildren();
    this.empty.hidden = false;
  }

  #entry(turnId, role, speaker) {
    const key = String(turnId ?? "");
    let entry = this.entries.get(key);
    if (!entry) {
      entry = this.#create(role === "assistant" ? "assistant" : "user");
      this.entries.set(key, entry);
    }
    if (speaker && speaker !== "assistant") entry.speaker.textContent = speaker;
    return entry;
  }

  #create(role) {
    const item = document.createElement("article");
    item.className = `turn ${role} pending`;
    const speaker = document.createElement("span");
    speaker.className = "speaker";
    speaker.textContent = role === "assistant" ? ASSISTANT : "Someone";
    const text = document.createElement("p");
    text.className = "text";
    item.append(speaker, text);
    const stick = this.#nearBottom();
    this.log.append(item);
    this.empty.hidden = true;
    while (this.log.childElementCount > MAX_ENTRIES) this.#forgetFirst();
    if (stick) this.log.scrollTop = this.log.scrollHeight;
    return { item, speaker, text };
  }

  #append(entry, delta) {
    const stick = this.#nearBottom();
    entry.text.textContent += delta;
    if (stick) this.log.scrollTop = this.log.scrollHeight;
  }

  #finish(entry, text) {
    const stick = this.#nearBottom();
    if (text) entry.text.textContent = text;
    entry.item.classList.remove("pending");
    if (!entry.text.textContent) entry.item.classList.add("inaudible");
    if (stick) this.log.scrollTop = this.log.scrollHeight;
  }

  // A user turn waits for its transcription; a reply is complete (or cut off) now, and one
  // cut off before it said anything leaves no entry.
  #end(turnId, role, status) {
    const entry = this.#entry(turnId, role);
    if (status === "cancelled") entry.item.classList.add("interrupted");
    if (role !== "assistant") return;
    if (entry.text.textContent) {
      entry.item.classList.remove("pending");
    } else {
      this.entries.delete(String(turnId ?? ""));
      entry.item.remove();
      this.empty.hidden = this.log.childElementCount > 0;
    }
  }

  #forgetFirst() {
    const first = this.log.firstElementChild;
    for (const [key, entry] of this.entries) {
      if (entry.item === first) {
        this.entries.delete(key);
        break;
      }
    }
    first.remove();
  }

  #nearBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 48;
  }
}
