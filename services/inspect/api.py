"""The recorded side of a running stack, read through signaling's HTTP API.

What the inspection commands (``voxrelay sessions``, ``sessions show``, ``export``,
``replay``) need: the list of recorded sessions (``GET /v1/history``), a session's whole
event log (``GET /v1/sessions/<sid>/events``, paged by ``Voxrelay-Next-After``) and its
audio recordings (``GET /v1/sessions/<sid>/recordings`` and the WAV files). Synchronous
(urllib): these are one-shot commands, and a failure is an :class:`InspectError` whose
message says what to do, never a traceback. Requests carry ``key`` (the admin key, or a
tenant token for that tenant's sessions) as a bearer credential.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from proto import events

EVENTS_PAGE = 1000
MAX_PAGES = 10_000
"A bound on paging (ten million events), against a server that never stops."

_decoder = msgspec.json.Decoder(events.AnyEvent)


class InspectError(RuntimeError):
    """The server could not be asked, or said no: the message is for the user."""


@dataclass(frozen=True)
class EventLog:
    events: list[events.AnyEvent]
    undecodable: int
    "Lines the server sent that are not events this version knows (skipped)."


class Api:
    def __init__(self, url: str, timeout: float = 10.0, cafile: str | None = None,
                 key: str = "") -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._context = ssl.create_default_context(cafile=cafile) if cafile else None

    def get(self, path: str, **query: Any) -> tuple[bytes, dict[str, str]]:
        """The body and headers of ``GET <url><path>?<query>``; errors as InspectError."""
        params = {k: v for k, v in query.items() if v is not None}
        target = self.url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            request = urllib.request.Request(target, headers=self.headers)
            with urllib.request.urlopen(request, timeout=self.timeout,  # noqa: S310 - http(s) only
                                        context=self._context) as resp:
                return resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as e:
            raise InspectError(f"{target}: {e.code} {_error_message(e.read()) or e.reason}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise InspectError(f"cannot reach {self.url} ({reason}): is the stack running? "
                               "(voxrelay up; or pass --url)") from e

    def json(self, path: str, **query: Any) -> Any:
        body, _ = self.get(path, **query)
        try:
            return json.loads(body)
        except ValueError as e:
            raise InspectError(f"{self.url}{path}: the server sent something other than "
                               "JSON") from e

    def history(self, limit: int = 50, before: float | None = None) -> list[dict[str, Any]]:
        return list(self.json("/v1/history", limit=limit, before=before)["sessions"])

    def event_log(self, session_id: str) -> EventLog:
        found: list[events.AnyEvent] = []
        undecodable = 0
        for line in self._event_lines(session_id):
            try:
                found.append(_decoder.decode(line))
            except msgspec.DecodeError:
                undecodable += 1
        return EventLog(found, undecodable)

    def raw_event_lines(self, session_id: str) -> Iterator[bytes]:
        """Every recorded event of the session, as the JSON line the server sent."""
        return self._event_lines(session_id)

    def _event_lines(self, session_id: str) -> Iterator[bytes]:
        path = f"/v1/sessions/{_checked(session_id)}/events"
        after = 0
        for _ in range(MAX_PAGES):
            body, headers = self.get(path, after=after, limit=EVENTS_PAGE)
            lines = [line for line in body.splitlines() if line.strip()]
            yield from lines
            following = int(headers.get("Voxrelay-Next-After", after))
            if not lines or following <= after:
                return
            after = following
        raise InspectError(f"{session_id}: more than {MAX_PAGES} pages of events")

    def recordings(self, session_id: str) -> dict[str, Any] | None:
        """The session's audio index, or None when it recorded no audio."""
        try:
            return dict(self.json(f"/v1/sessions/{_checked(session_id)}/recordings"))
        except InspectError as e:
            if " 404 " in str(e):
                return None
            raise

    def download(self, session_id: str, file: str, to: Path) -> int:
        body, _ = self.get(f"/v1/sessions/{_checked(session_id)}/recordings/"
                           f"{urllib.parse.quote(file)}")
        to.write_bytes(body)
        return len(body)


def _checked(session_id: str) -> str:
    from proto.ids import is_id

    if not is_id(session_id):
        raise InspectError(f"{session_id!r} is not a session id (32 lowercase hex characters; "
                           "see voxrelay sessions)")
    return session_id


def _error_message(body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return ""
