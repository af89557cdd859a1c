"""media_edge: browsers' WebRTC peer connections, bridged to the voxrelay bus.

A media process: OpenBLAS may busy-spin a core with its threads, so it gets one
(set here, before anything can import NumPy).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .config import EdgeConfig, from_env  # noqa: E402
from .edge import MediaEdge, main  # noqa: E402

__all__ = ["EdgeConfig", "MediaEdge", "from_env", "main"]
