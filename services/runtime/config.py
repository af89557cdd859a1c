"""Typed configuration from ``VOXRELAY_*`` environment variables.

Each service builds one frozen config object at start, through these helpers, so
a bad value fails once, early, with an error that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


def _raw(key: str, env: Mapping[str, str] | None) -> str | None:
    return (os.environ if env is None else env).get(key)


def env_str(key: str, default: str, env: Mapping[str, str] | None = None) -> str:
    value = _raw(key, env)
    return default if value is None else value


def env_int(
    key: str,
    default: int,
    env: Mapping[str, str] | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    value = _raw(key, env)
    if value is None or value == "":
        result = default
    else:
        try:
            result = int(value)
        except ValueError as e:
            raise ConfigError(key, f"must be an integer (got {value!r})") from e
    if minimum is not None and result < minimum:
        raise ConfigError(key, f"must be >= {minimum} (got {result})")
    if maximum is not None and result > maximum:
        raise ConfigError(key, f"must be <= {maximum} (got {result})")
    return result


def env_float(
    key: str,
    default: float,
    env: Mapping[str, str] | None = None,
    *,
    minimum: float | None = None,
) -> float:
    value = _raw(key, env)
    if value is None or value == "":
        result = default
    else:
        try:
            result = float(value)
        except ValueError as e:
            raise ConfigError(key, f"must be a number (got {value!r})") from e
    if minimum is not None and result < minimum:
        raise ConfigError(key, f"must be >= {minimum} (got {result})")
    return result


def env_bool(key: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    value = _raw(key, env)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(key, f"must be a boolean such as 1/0 or true/false (got {value!r})")


def env_list(key: str, env: Mapping[str, str] | None = None) -> tuple[str, ...] | None:
    """A comma-separated list; ``None`` when the variable is unset."""
    value = _raw(key, env)
    if value is None:
        return None
    return tuple(part.strip() for part in value.split(",") if part.strip())
