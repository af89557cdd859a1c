"""``python -m services.mixer``: mix each session's clients onto ``aud/mix``."""

import sys

from services.runtime import run_service, setup_logging

from .config import from_env
from .mixer import main

setup_logging()
config = from_env()
sys.exit(run_service(lambda: main(config)))
