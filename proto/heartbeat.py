"""Service heartbeats on ``sys/hb/<instance>``: liveness, endpoints and load."""

from __future__ import annotations

import msgspec


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    "The service kind: signaling, media_edge, mixer, openai_link, recorder."
    instance: str
    pid: int
    rpc: str = ""
    "Endpoint of the instance's ROUTER."
    audio: str = ""
    "Endpoint where the instance publishes audio, if it does."
    started_at: float
    ts: float
    load: int = 0
    "Sessions (mixer, link) or clients (edge) held now."
    loop_lag_ms: float = 0.0
    metrics: str = ""
    "URL of the instance's Prometheus endpoint, if it serves one."


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Heartbeat)


def encode(beat: Heartbeat) -> bytes:
    return _encoder.encode(beat)


def decode(data: bytes) -> Heartbeat:
    return _decoder.decode(data)
