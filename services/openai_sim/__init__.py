"""openai_sim: a local server speaking the GA OpenAI Realtime API (REST, WebRTC, WebSocket)."""

from .app import create_app
from .config import SimConfig
from .replies import ReplyMode

__all__ = ["ReplyMode", "SimConfig", "create_app"]
