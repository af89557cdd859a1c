"""Built-in tools every session is offered (unless ``VOXRELAY_TOOLS`` leaves them out)."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

from . import tool


@tool(description="The current date and time, in a time zone (an IANA name such as "
                  "'Europe/Paris'; UTC when not given).",
      parameters={"type": "object",
                  "properties": {"timezone": {"type": "string",
                                              "description": "IANA time zone name"}}},
      timeout_s=2.0)
def get_time(timezone: str = "UTC") -> dict[str, Any]:
    zone: datetime.tzinfo
    try:  # UTC needs no tz database (a slim image may have none)
        zone = datetime.timezone.utc if timezone == "UTC" else zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return {"error": f"unknown time zone {timezone!r}"}
    now = datetime.datetime.now(zone)
    return {"timezone": timezone, "iso": now.isoformat(timespec="seconds"),
            "weekday": now.strftime("%A"), "time": now.strftime("%H:%M")}
