"""``python -m services.signaling``."""

import sys

from services.runtime import run_service, setup_logging
from services.runtime.service import service_config

from .config import from_env
from .server import serve

setup_logging()
sys.exit(run_service(lambda: serve(from_env(), service_config("signaling"))))
