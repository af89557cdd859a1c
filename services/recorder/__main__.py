"""``python -m services.recorder``: every event into ``$VOXRELAY_DATA_DIR/recorder.sqlite3``,
or into the PostgreSQL database of ``$VOXRELAY_DATABASE_URL``."""

import sys

from services.runtime import run_configured, setup_logging

from .config import from_env
from .recorder import main

setup_logging()
sys.exit(run_configured("recorder", from_env, main))
