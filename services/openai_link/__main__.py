"""``python -m services.openai_link``: the OpenAI Realtime link service."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads (through av/aiortc)

import logging  # noqa: E402
import sys  # noqa: E402

from services.runtime import ConfigError, run_service, setup_logging  # noqa: E402

from .config import from_env  # noqa: E402
from .link import main  # noqa: E402

setup_logging()
try:
    config = from_env()
except ConfigError as e:
    logging.getLogger("services.openai_link").error("bad configuration: %s", e)
    sys.exit(2)
sys.exit(run_service(lambda: main(config)))
