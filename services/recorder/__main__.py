"""``python -m services.recorder``: every event into ``$VOXRELAY_DATA_DIR/recorder.sqlite3``."""

import sys

from services.runtime import run_service, setup_logging

from .config import from_env
from .recorder import main

setup_logging()
config = from_env()
sys.exit(run_service(lambda: main(config)))
