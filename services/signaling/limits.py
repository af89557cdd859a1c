"""What one request, one offer or one address may ask of signaling.

Every limit refuses with a clear JSON error (413 for too large, 429 for too many or too
fast, 400 for a malformed or over-full offer) and counts the refusal in
``voxrelay_http_rejected_total{limit}``:

============================  ======  ====================================================
limit                         status  what
============================  ======  ====================================================
``body``                      413     a request body over ``max_body_bytes`` (256 KiB)
``sdp_bytes``, ``sdp_lines``  413     an offer over 64 KiB or 1000 lines
``candidates``                400     an offer with more than 64 ICE candidates
``session_rate``              429     new sessions from one address beyond 30 a minute
                                      (burst 10); ``Retry-After`` says when to try again
``tenant_sessions``           429     a tenant's active sessions at the limit (100)
``session_clients``           409     a session's clients at the limit (8)
============================  ======  ====================================================

Addresses are the connection's peer: behind a reverse proxy every client shares the
proxy's, so set the session rate there or raise it here.
"""

from __future__ import annotations

import collections
import math

from prometheus_client import Counter

from services.runtime.ratelimit import TokenBucket

from .conductor import ApiError

REJECTED = Counter("voxrelay_http_rejected_total", "HTTP requests refused by a limit",
                   ["limit"])
for _limit in ("body", "sdp_bytes", "sdp_lines", "candidates", "session_rate",
               "tenant_sessions", "session_clients"):
    REJECTED.labels(_limit)

MAX_SDP_BYTES = 64 * 1024
MAX_ADDRESSES = 10_000
"Addresses whose session rate is tracked; the least recently seen is forgotten first."


def refuse(limit: str, status: int, code: str, message: str) -> ApiError:
    REJECTED.labels(limit).inc()
    return ApiError(status, code, message)


def check_offer(sdp: str, max_lines: int, max_candidates: int) -> None:
    """Refuse an SDP offer too large or too full to answer."""
    if len(sdp) > MAX_SDP_BYTES:
        raise refuse("sdp_bytes", 413, "sdp_too_large",
                     f"'sdp' is larger than {MAX_SDP_BYTES} bytes")
    lines = sdp.count("\n") + 1
    if lines > max_lines:
        raise refuse("sdp_lines", 413, "sdp_too_large",
                     f"'sdp' has {lines} lines (limit {max_lines})")
    candidates = sdp.count("a=candidate:")
    if candidates > max_candidates:
        raise refuse("candidates", 400, "too_many_candidates",
                     f"the offer carries {candidates} ICE candidates (limit {max_candidates})")


class RatePerAddress:
    """A token bucket per address, for the addresses seen most recently."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()

    def take(self, address: str) -> None:
        """Spend one for ``address``, or refuse with 429 and when to try again."""
        bucket = self._buckets.pop(address, None) or TokenBucket(self.rate, self.burst)
        self._buckets[address] = bucket
        while len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)
        if not bucket.take():
            REJECTED.labels("session_rate").inc()
            retry = math.ceil(1.0 / self.rate)
            raise RateLimited(retry, f"too many new sessions from {address}; "
                                     f"try again in {retry} s")


class RateLimited(ApiError):
    """429 ``rate_limited``, answered with ``Retry-After``."""

    def __init__(self, retry_after_s: int, message: str) -> None:
        super().__init__(429, "rate_limited", message)
        self.retry_after_s = retry_after_s
