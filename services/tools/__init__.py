"""Tools the model may call, run by the link: plain Python callables registered by name.

A tool is a function (sync or ``async``) whose keyword arguments are the JSON
``arguments`` the model sends, registered with :func:`tool`::

    from services.tools import tool

    @tool(description="Look a word up in the household dictionary.",
          parameters={"type": "object", "properties": {"word": {"type": "string"}},
                      "required": ["word"]})
    def define(word: str) -> dict:
        return {"word": word, "meaning": "..."}

It returns anything JSON can carry (a string goes as it is). A function that takes a
``context`` argument is given a :class:`ToolContext` (the session, and a ``state`` dict
the session keeps between calls). Sync tools run in a worker thread, so a slow one
never stalls the link's audio; every call has a timeout (``timeout_s``, default
:data:`DEFAULT_TIMEOUT_S`); ``cancel_on_barge_in`` marks a tool whose result is worth
nothing once the user talks over the reply (it is then cancelled).

Which modules register tools: ``VOXRELAY_TOOLS`` (comma-separated module names,
default :data:`DEFAULT_MODULES`: the built-in ``get_time`` and the interview profile's
``next_question``), and every module named by
an entry point in the ``voxrelay.tools`` group of an installed package. Importing a
module runs its ``@tool`` decorators. :func:`load` imports them and returns the
:class:`ToolRegistry` of the tools defined in them.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MODULES = ("services.tools.builtin", "services.tools.interview")
ENTRY_POINT_GROUP = "voxrelay.tools"
NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"What the Realtime API accepts as a function name."
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class ToolError(ValueError):
    """A tool that cannot be registered or loaded (a clear startup error)."""


def _nowhere(event: Any) -> None:
    pass


@dataclass
class ToolContext:
    """What a tool may know about the conversation that called it."""

    session_id: str
    state: dict[str, Any] = field(default_factory=dict)
    "Kept by the session between calls (the interview's position, say)."
    profile: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    "The session's profile settings (the interview's questions, say)."
    publish: Callable[[Any], None] = _nowhere
    "Put a voxrelay event on the bus for this session (safe from a tool's thread)."


@dataclass(frozen=True)
class Tool:
    name: str
    function: Callable[..., Any]
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: dict(NO_PARAMETERS))
    timeout_s: float = DEFAULT_TIMEOUT_S
    cancel_on_barge_in: bool = False
    profiles: tuple[str, ...] = ()
    "Only sessions of these profiles are offered it; empty: every session."

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ToolError(f"tool name {self.name!r}: 1–64 letters, digits, '_' or '-'")
        if not self.timeout_s > 0:
            raise ToolError(f"tool {self.name}: 'timeout_s' must be > 0 (got {self.timeout_s})")
        if self.parameters.get("type") != "object":
            raise ToolError(f"tool {self.name}: 'parameters' must be a JSON schema of type "
                            "'object'")

    @property
    def wants_context(self) -> bool:
        return "context" in inspect.signature(self.function).parameters

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    def schema(self) -> dict[str, Any]:
        """The tool as ``session.update`` declares it."""
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": dict(self.parameters)}


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def __repr__(self) -> str:
        return f"ToolRegistry({', '.join(self._tools)})"

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def add(self, t: Tool) -> None:
        existing = self._tools.get(t.name)
        if existing is not None and existing.function is not t.function:
            raise ToolError(f"two tools are named {t.name!r}")
        self._tools[t.name] = t

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def for_profile(self, profile: str) -> list[Tool]:
        """The tools a session of ``profile`` ("" for the default) is offered."""
        return [t for t in self._tools.values() if not t.profiles or profile in t.profiles]


REGISTERED = ToolRegistry()
"Every tool registered with :func:`tool` (in the modules imported so far)."


def tool(name: str = "", *, description: str = "",
         parameters: Mapping[str, Any] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
         cancel_on_barge_in: bool = False, profiles: Iterable[str] = ()
         ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as a tool (its name, unless ``name`` is given)."""
    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        REGISTERED.add(Tool(
            name or function.__name__, function,
            description=description or inspect.getdoc(function) or "",
            parameters=dict(parameters) if parameters is not None else dict(NO_PARAMETERS),
            timeout_s=timeout_s, cancel_on_barge_in=cancel_on_barge_in,
            profiles=tuple(profiles)))
        return function
    return register


def load(modules: Iterable[str] = DEFAULT_MODULES, *, plugins: bool = True) -> ToolRegistry:
    """Import ``modules`` (and, with ``plugins``, the ``voxrelay.tools`` entry points);
    a registry of the tools defined in them. Raises ToolError naming what failed."""
    names = [m.strip() for m in modules if m.strip()]
    if plugins:
        names += [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]
    for module in names:
        try:
            importlib.import_module(module)
        except Exception as e:  # whatever a tool module raises, the operator must see it
            raise ToolError(f"tool module {module!r} failed to load: "
                            f"{type(e).__name__}: {e}") from e
    return ToolRegistry(t for t in REGISTERED if t.function.__module__ in names)
