"""What every voxrelay service shares: config parsing, ICE setup, logging, lifecycle."""

from .config import ConfigError, Secret, env_bool, env_float, env_int, env_list, env_str
from .ice import (
                  configure_ice_hosts,
                  prompt_triggered_checks,
                  rtc_configuration,
                  strip_mdns_candidates,
)
from .lifecycle import run_configured, run_service
from .logs import setup_logging

__all__ = [
                  "ConfigError",
                  "Secret",
                  "configure_ice_hosts",
                  "env_bool",
                  "env_float",
                  "env_int",
                  "env_list",
                  "env_str",
                  "prompt_triggered_checks",
                  "rtc_configuration",
                  "run_configured",
                  "run_service",
                  "setup_logging",
                  "strip_mdns_candidates",
]
