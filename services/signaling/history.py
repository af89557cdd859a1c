"""Recorded sessions over HTTP, newest first, as the recorder lists them (``ListSessions``).

    GET /v1/history?limit=50&before=<created_at>

``{"sessions": [{session_id, name, voice, record, created_at, ended_at, end_reason,
user_turns, assistant_turns, speakers, events, state}]}``: ``state`` is ``"active"`` for a
session signaling is holding now, else ``"ended"`` (a session of an earlier run of the
stack, say, whose end was never recorded). The next page is ``before=`` the last
session's ``created_at``. The admin sees every tenant's sessions, a tenant token its
tenant's (``auth.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from proto import rpc

from .auth import Authorizer
from .conductor import ApiError, Conductor

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def add_history_routes(app: web.Application, conductor: Conductor,
                       authorizer: Authorizer) -> None:
    async def history(request: web.Request) -> web.Response:
        access = authorizer.tenant_wide(request)
        limit, before = _page(request.query)
        found = await conductor.history(limit, before, access.tenant_filter)
        return web.json_response({"sessions": [_summary(conductor, s) for s in found]})

    app.router.add_get("/v1/history", history)


def _page(query: Mapping[str, str]) -> tuple[int, float | None]:
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
        before = float(query["before"]) if "before" in query else None
    except ValueError as e:
        raise ApiError(400, "invalid_query", "'limit' must be an integer and 'before' a "
                       "number (unix seconds)") from e
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "invalid_query", f"'limit' must be in 1..{MAX_LIMIT} (got {limit})")
    if before is not None and not math.isfinite(before):
        raise ApiError(400, "invalid_query", f"'before' must be a finite number (got {before})")
    return limit, before


def _summary(conductor: Conductor, summary: rpc.SessionSummary) -> dict[str, Any]:
    held = conductor.sessions.get(summary.session_id)
    state = "active" if held is not None and held.state == "active" else "ended"
    return {**msgspec.structs.asdict(summary), "state": state}
