"""openai_link: holds one OpenAI Realtime connection per conversation (WebRTC, or the
WebSocket transport when WebRTC is not usable).

It feeds the session's ``aud/mix`` to the model, publishes the model's voice on
``aud/model``, and turns Realtime server events into voxrelay events on the bus.
The service itself is ``services.openai_link.link`` (``python -m services.openai_link``);
this package root stays light so ``__main__`` can configure the process before the
media libraries (and numpy) load.
"""

from .config import LinkConfig, from_env
from .translate import Translator

__all__ = ["LinkConfig", "Translator", "from_env"]
