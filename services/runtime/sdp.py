"""Checking SDP offers before aiortc sees them.

aiortc accepts an empty or garbage offer and answers it with nothing, and a truncated
one can trip any of several exceptions deep inside it. Every aiortc answerer in
voxrelay (the media edges, the simulator) checks offers here first, so bad input is
a clear ``InvalidOffer``, never a crash or a 500.
"""

from __future__ import annotations

from aiortc.sdp import SessionDescription

OFFER_PARSE_ERRORS = (ValueError, KeyError, IndexError, AttributeError, TypeError, AssertionError)
"What aiortc raises on SDP it cannot use (a truncated offer can trip any of them)."


class InvalidOffer(ValueError):
    """The SDP offer cannot be used; the message says why."""


def check_offer(sdp: str) -> SessionDescription:
    """Parse an offer and check each media section has DTLS and ICE credentials."""
    if not sdp.startswith("v=0"):
        raise InvalidOffer("expected an SDP offer starting with 'v=0'")
    if "\nm=" not in sdp:
        raise InvalidOffer("the offer has no media sections")
    try:
        parsed = SessionDescription.parse(sdp)
    except OFFER_PARSE_ERRORS as e:
        raise InvalidOffer(f"unparseable SDP: {e or type(e).__name__}") from e
    for media in parsed.media:
        if media.dtls is None or not media.dtls.fingerprints:
            raise InvalidOffer(f"no DTLS fingerprint for media section '{media.kind}'")
        if not media.ice.usernameFragment or not media.ice.password:
            raise InvalidOffer(f"no ICE credentials for media section '{media.kind}'")
    return parsed
