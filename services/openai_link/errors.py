"""Why a Realtime connection could not be had, and keeping the API key out of every report."""

from __future__ import annotations

REDACTED = "sk-…redacted"
MIN_SECRET_CHARS = 8
"Shorter 'secrets' are not searched for: replacing them would mangle ordinary text."


class RealtimeUnavailable(Exception):
    """The Realtime API could not be reached or refused the call; the message says which."""


class CallRefused(RealtimeUnavailable):
    """``POST /realtime/calls`` answered something other than 201."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"the Realtime API refused the call: HTTP {status} {code}: {message}")
        self.status = status
        self.code = code


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced."""
    if len(secret) < MIN_SECRET_CHARS or secret not in text:
        return text
    return text.replace(secret, REDACTED)
