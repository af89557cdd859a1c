"""``python -m services.mixer``: mix each session's clients onto ``aud/mix``."""

import sys

from services.runtime import run_configured, setup_logging

from .config import from_env
from .mixer import main

setup_logging()
sys.exit(run_configured("mixer", from_env, main))
