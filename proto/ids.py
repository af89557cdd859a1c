"""Session and client ids: 32 lowercase hex characters (a uuid4 without dashes)."""

from __future__ import annotations

import re
import uuid

ID_LENGTH = 32
_ID = re.compile(r"[0-9a-f]{32}")


def new_id() -> str:
    return uuid.uuid4().hex


def is_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def check_id(value: str, what: str = "id") -> str:
    if not is_id(value):
        raise ValueError(f"'{what}' must be 32 lowercase hex characters (got {value!r})")
    return value
