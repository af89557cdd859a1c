"""``python -m services.media_edge``: the media edge, configured from ``VOXRELAY_*``."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402

from services.runtime import ConfigError, run_service, setup_logging  # noqa: E402

from .config import from_env  # noqa: E402
from .edge import main  # noqa: E402


def _run() -> int:
    setup_logging()
    try:
        config = from_env()
    except ConfigError as e:
        sys.stderr.write(f"media_edge: {e}\n")
        return 2
    return run_service(lambda: main(config))


sys.exit(_run())
