"""Recorded audio over HTTP: a session's ``index.json`` and its WAV files, read-only.

The recorder writes them into the recordings directory (``services/runtime/recordings.py``
is the layout); signaling reads the same directory (``VOXRELAY_RECORDINGS_DIR``, by
default ``recordings`` in the data dir both are given), so recordings are served for any
session, live or long ended, whichever recorder wrote them. Access is as for the
transcript (``Authorizer.readable``). A file is served only under a name the recorder
gives its files (``mix.wav``, ``model.wav``, ``client-<id>.wav``) or one its index lists,
and only from the session's own folder.

    GET /v1/sessions/{sid}/recordings          the index (404 ``not_found`` if none)
    GET /v1/sessions/{sid}/recordings/{file}   the WAV file (``audio/wav``)
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from proto.ids import is_id
from services.runtime.recordings import FILE_NAME, INDEX_FILE

from .auth import Authorizer
from .conductor import ApiError

logger = logging.getLogger(__name__)

WAV_CONTENT_TYPE = "audio/wav"


def add_recording_routes(app: web.Application, root: Path, authorizer: Authorizer) -> None:
    """Serve the recordings under ``root`` (``VOXRELAY_RECORDINGS_DIR``)."""

    async def index(request: web.Request) -> web.Response:
        await authorizer.readable(request)
        sid = request.match_info["sid"]
        return web.json_response(await _index(root, sid))

    async def recording(request: web.Request) -> web.StreamResponse:
        await authorizer.readable(request)
        sid, name = request.match_info["sid"], request.match_info["file"]
        if not FILE_NAME.match(name):
            listed = {s.get("file") for s in (await _index(root, sid)).get("streams", [])
                      if isinstance(s, dict)}
            if name not in listed or Path(name).name != name or not name.endswith(".wav"):
                raise ApiError(404, "not_found", f"session {sid} has no recording {name!r}")
        path = _folder(root, sid) / name
        if not await asyncio.to_thread(path.is_file):
            raise ApiError(404, "not_found", f"session {sid} has no recording {name!r}")
        return web.FileResponse(path, headers={"Content-Type": WAV_CONTENT_TYPE})

    app.router.add_get("/v1/sessions/{sid}/recordings", index)
    app.router.add_get("/v1/sessions/{sid}/recordings/{file}", recording)


def _folder(root: Path, sid: str) -> Path:
    if not is_id(sid):
        raise ApiError(404, "not_found", f"no recording of session {sid[:40]!r}")
    return root / sid


async def _index(root: Path, sid: str) -> dict[str, Any]:
    index = await asyncio.to_thread(_read_index, _folder(root, sid) / INDEX_FILE)
    if index is None:
        raise ApiError(404, "not_found", f"no recording of session {sid}")
    return index


def _read_index(path: Path) -> dict[str, Any] | None:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        logger.warning("cannot read %s: %s", path, e)
        return None
    return index if isinstance(index, dict) else None
