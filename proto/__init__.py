"""voxrelay's wire contract: topics, audio frames, events, RPC and heartbeats.

Imports msgspec and the standard library only. The spec is ``proto/README.md``.
"""

from . import audio, events, heartbeat, ids, rpc, topics

__all__ = ["audio", "events", "heartbeat", "ids", "rpc", "topics"]
