"""mixer: each session's uplink mix of its clients, one 20 ms frame on ``aud/mix`` per tick."""

import os

# Before numpy loads (``python -m services.mixer`` imports this package first): OpenBLAS
# threads can busy-spin a core, and the mixer needs none of them.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .activity import ActivitySettings, VoiceActivity  # noqa: E402
from .config import MixerConfig, from_env  # noqa: E402
from .echo import EchoGate, EchoSettings, Heard, ModelReference, Verdict  # noqa: E402
from .jitter import DropReason, Frame, JitterBuffer, JitterSettings  # noqa: E402
from .mix import attenuate, mix, soft_limit  # noqa: E402
from .mixer import Mixer, main  # noqa: E402
from .session import MixerSession, MixFrame, SessionSettings  # noqa: E402

__all__ = [
    "ActivitySettings",
    "DropReason",
    "EchoGate",
    "EchoSettings",
    "Frame",
    "Heard",
    "JitterBuffer",
    "JitterSettings",
    "MixFrame",
    "Mixer",
    "MixerConfig",
    "MixerSession",
    "ModelReference",
    "SessionSettings",
    "Verdict",
    "VoiceActivity",
    "attenuate",
    "from_env",
    "main",
    "mix",
    "soft_limit",
]
