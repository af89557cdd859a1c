"""``voxrelay export SID --out DIR``: one conversation as files a person can open.

- ``events.jsonl``: every recorded event, one JSON object per line, as stored;
- ``transcript.json``: the turns (speaker, text, times, reply status, latencies);
- ``audio/``: the recorded audio (``index.json`` and the WAV files), when the session
  recorded any;
- ``report.md`` and ``report.html``: the transcript with speakers, times and latencies,
  and players for the audio. The HTML is one self-contained file, every value escaped.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import Api
from .conversation import Conversation, clock, duration, latency


@dataclass(frozen=True)
class Exported:
    folder: Path
    events: int
    turns: int
    audio_files: int
    audio_bytes: int


def export(api: Api, session_id: str, out: Path) -> Exported:
    out.mkdir(parents=True, exist_ok=True)
    lines = list(api.raw_event_lines(session_id))
    (out / "events.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    conv = Conversation.from_events(session_id, api.event_log(session_id).events)
    (out / "transcript.json").write_text(json.dumps(transcript_json(conv), indent=2) + "\n")
    index = api.recordings(session_id)
    files, size = 0, 0
    if index is not None:
        audio = out / "audio"
        audio.mkdir(exist_ok=True)
        (audio / "index.json").write_text(json.dumps(index, indent=2) + "\n")
        for stream in index.get("streams", []):
            size += api.download(session_id, stream["file"], audio / Path(stream["file"]).name)
            files += 1
    (out / "report.md").write_text(markdown(conv, index))
    (out / "report.html").write_text(page(conv, index))
    return Exported(out, len(lines), len(conv.turns), files, size)


def transcript_json(conv: Conversation) -> dict[str, Any]:
    return {"session_id": conv.session_id, "name": conv.name, "started_at": conv.started_at,
            "ended_at": conv.ended_at, "end_reason": conv.end_reason,
            "clients": conv.clients, "turns": [
                {"turn_id": t.turn_id, "role": t.role, "speaker": t.speaker, "text": t.text,
                 "started_at": t.started_at, "ended_at": t.ended_at, "status": t.status,
                 "time_to_first_audio_s": t.summary.time_to_first_audio_s if t.summary else None,
                 "voice_to_voice_s": dict(t.summary.voice_to_voice_s) if t.summary else {}}
                for t in conv.turns]}


def _streams(index: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(index.get("streams", [])) if index else []


def _stream_label(stream: dict[str, Any]) -> str:
    kind = stream.get("kind", "")
    if kind == "client":
        return f"microphone of {stream.get('client_name') or stream.get('client_id', '?')[:8]}"
    return {"mix": "the mix sent to the model", "model": "the model's voice"}.get(kind, kind)


def markdown(conv: Conversation, index: dict[str, Any] | None) -> str:
    out = [f"# {conv.name or 'Conversation'} ({conv.session_id})", "",
           f"- Started {clock(conv.started_at)}, ended {clock(conv.ended_at)}"
           + (f" ({conv.end_reason})" if conv.end_reason else "")
           + f", lasted {duration(conv.duration_s)}",
           f"- Clients: {', '.join(conv.clients.values()) or '-'}",
           f"- {conv.events} events recorded", "", "## Transcript", "",
           "| at | speaker | said | latency |", "|---:|---|---|---|"]
    for turn in conv.turns:
        said = turn.text.replace("|", "\\|").replace("\n", " ")
        if turn.status == "cancelled":
            said += " *(interrupted)*"
        out.append(f"| {conv.offset(turn.started_at):.1f} s | {turn.speaker or turn.role} "
                   f"| {said} | {latency(turn)} |")
    if conv.errors:
        out += ["", "## Errors", ""]
        out += [f"- {conv.offset(e.ts):.1f} s `{e.code}`: {e.message}" for e in conv.errors]
    if streams := _streams(index):
        out += ["", "## Audio", ""]
        out += [f"- [{_stream_label(s)}](audio/{Path(s['file']).name}) "
                f"({s.get('duration_s', 0):.1f} s from {clock(s.get('started_at'))})"
                for s in streams]
    return "\n".join(out) + "\n"


def page(conv: Conversation, index: dict[str, Any] | None) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{conv.offset(t.started_at):.1f} s</td><td>{e(t.speaker or t.role)}</td>"
        f"<td>{e(t.text)}{' <em>(interrupted)</em>' if t.status == 'cancelled' else ''}</td>"
        f"<td>{e(latency(t))}</td></tr>" for t in conv.turns)
    audio = "".join(
        f"<p>{e(_stream_label(s))}<br><audio controls preload=\"none\" "
        f"src=\"audio/{e(Path(s['file']).name)}\"></audio></p>" for s in _streams(index))
    errors = "".join(f"<li>{conv.offset(x.ts):.1f} s <code>{e(x.code)}</code>: "
                     f"{e(x.message)}</li>" for x in conv.errors)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{e(conv.name or 'Conversation')} — voxrelay</title>
<style>body{{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;
text-align:left;vertical-align:top}}td:first-child{{text-align:right;white-space:nowrap}}</style>
</head><body>
<h1>{e(conv.name or 'Conversation')}</h1>
<p><code>{e(conv.session_id)}</code> · started {e(clock(conv.started_at))} · ended
{e(clock(conv.ended_at))}{e(f' ({conv.end_reason})' if conv.end_reason else '')} · lasted
{e(duration(conv.duration_s))} · clients: {e(', '.join(conv.clients.values()) or '-')}</p>
<h2>Transcript</h2>
<table><tr><th>at</th><th>speaker</th><th>said</th><th>latency</th></tr>{rows}</table>
{f'<h2>Errors</h2><ul>{errors}</ul>' if errors else ''}
{f'<h2>Audio</h2>{audio}' if audio else ''}
</body></html>
"""
