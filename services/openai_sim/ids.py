"""Identifier shapes of the Realtime API (``event_…``, ``item_…``, ``rtc_u1_…``, ``ek_…``)."""

from __future__ import annotations

import random
import secrets
import string
import uuid

_BASE62 = string.ascii_letters + string.digits
_rng = random.Random()


def _base62(length: int) -> str:
    return "".join(_rng.choices(_BASE62, k=length))


def event_id() -> str:
    return f"event_{_base62(21)}"


def item_id() -> str:
    return f"item_{_base62(21)}"


def response_id() -> str:
    return f"resp_{_base62(21)}"


def conversation_id() -> str:
    return f"conv_{_base62(21)}"


def session_id() -> str:
    return f"sess_{_base62(21)}"


def function_call_id() -> str:
    return f"call_{_base62(16)}"


def rtc_call_id() -> str:
    return f"rtc_u1_{uuid.uuid4().hex}"


def ephemeral_key() -> str:
    return f"ek_{secrets.token_hex(16)}"
