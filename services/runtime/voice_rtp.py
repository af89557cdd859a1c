"""aiortc's RTP path made lean for a relay's voice peers (the edge's and the link's).

:func:`install_voice_rtp` installs, for the whole process, each of voxrelay's changes to
how aiortc moves voice:

- :func:`~.voice_codec.install_inline_decoding`: received Opus decoded on the event
  loop, straight to the bus format, not in a thread per receiver;
- :func:`~.voice_codec.install_prompt_jitter`: each received packet decoded as it
  arrives, not 80 ms later;
- :func:`~.rtp_send.install_lean_rtp_send`: ready voice packets sent with the header
  built once;
- :func:`~.rtp_receive.install_lean_rtp_receive`: received SRTP handled in the socket's
  callback, with no task woken a packet.

Each falls back to aiortc's own way, with a warning, where aiortc has another shape.
"""

from __future__ import annotations

from .rtp_receive import install_lean_rtp_receive
from .rtp_send import install_lean_rtp_send
from .voice_codec import install_inline_decoding, install_prompt_jitter


def install_voice_rtp() -> None:
    """Install all four (see the module docs); call it before any peer connection."""
    install_inline_decoding()
    install_prompt_jitter()
    install_lean_rtp_send()
    install_lean_rtp_receive()
