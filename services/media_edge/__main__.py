"""``python -m services.media_edge``: the media edge, configured from ``VOXRELAY_*``."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402

from services.runtime import run_configured, setup_logging  # noqa: E402

from .config import from_env  # noqa: E402
from .edge import main  # noqa: E402

setup_logging()
sys.exit(run_configured("media_edge", from_env, main))
