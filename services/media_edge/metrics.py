"""The edge's metrics: audio frames through it, what it dropped and why, and where the
time goes between a browser and voxrelay.

The bus hop from the link (``voxrelay_bus_hop_seconds{stage="link_to_edge"}``) and the
age of model audio when it reaches a client's encoder
(``voxrelay_frame_age_seconds{at="client"}``) are the shared ones of
``services/runtime/metrics.py``; the rest are the edge's own. Voice to voice has a
bucket boundary at its 800 ms target.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ICE_CONNECT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 15.0)
ROUND_TRIP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
VOICE_TO_VOICE_BUCKETS = (0.25, 0.5, 0.75, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)

FRAMES = Counter("voxrelay_edge_frames_total",
                 "20 ms audio frames: in = browser mic published on aud/in, "
                 "out = model audio played to a browser", ["direction"])
FRAMES_DROPPED = Counter("voxrelay_edge_frames_dropped_total",
                         "Audio frames dropped: hwm = publish queue full, decode = unusable "
                         "frame, stale = a client's playout queue overflowed, catch_up = a "
                         "silent frame skipped to shorten a client's playout backlog, gap = "
                         "model audio lost on the way from the link (sequence gaps)",
                         ["reason"])
CHANNEL_DROPPED = Counter("voxrelay_edge_channel_messages_dropped_total",
                          "DataChannel messages dropped: from a browser, rate (over its "
                          "channel's limit), binary, oversized, malformed, unexpected_channel "
                          "(on a channel other than its events channel); to a browser, "
                          "backlog (the channel was not draining)", ["reason"])
MIC_SLOTS_LEFT_OUT = Counter("voxrelay_edge_mic_slots_left_out_total",
                             "20 ms microphone slots a browser did not send: Opus DTX while "
                             "it is quiet (usedtx=1), or packets lost on the way; passed on "
                             "as silence")
DOWNLINK_DTX_PACKETS = Counter("voxrelay_edge_downlink_dtx_packets_total",
                               "DTX packets sent to browsers in the model's pauses, each in "
                               "place of 20 silence packets (clients whose offer said "
                               "usedtx=1)")
CLIENTS = Gauge("voxrelay_edge_clients", "Browser peers connected to this edge")
ICE_CONNECT = Histogram("voxrelay_edge_ice_connect_seconds",
                        "A browser's offer applied → its peer connection connected",
                        buckets=ICE_CONNECT_BUCKETS)
ROUND_TRIP = Histogram("voxrelay_edge_round_trip_seconds",
                       "Round trip edge → browser → edge of a latency.ping on the events "
                       "DataChannel", buckets=ROUND_TRIP_BUCKETS)
VOICE_TO_VOICE = Histogram("voxrelay_voice_to_voice_seconds",
                           "User speech end (captured at its edge) → the first audible frame "
                           "of the AI's reply handed to a client's encoder, per client",
                           buckets=VOICE_TO_VOICE_BUCKETS)
PEER_REBUILDS = Counter("voxrelay_edge_peer_rebuilds_total",
                        "Client peer connections replaced by a new one for the same client "
                        "(a reconnect)")
RELAYED_CLIENTS = Counter("voxrelay_edge_relayed_clients_total",
                          "Clients whose connection runs through a TURN relay (counted once "
                          "per client, when it connects)")

FRAMES_IN = FRAMES.labels("in")
FRAMES_OUT = FRAMES.labels("out")
DROPPED_HWM = FRAMES_DROPPED.labels("hwm")
DROPPED_DECODE = FRAMES_DROPPED.labels("decode")
DROPPED_STALE = FRAMES_DROPPED.labels("stale")
DROPPED_CATCH_UP = FRAMES_DROPPED.labels("catch_up")
DROPPED_GAP = FRAMES_DROPPED.labels("gap")
CHANNEL_DROPPED_RATE = CHANNEL_DROPPED.labels("rate")
CHANNEL_DROPPED_UNEXPECTED = CHANNEL_DROPPED.labels("unexpected_channel")
DATACHANNEL_AUDIO_DROPPED = Counter(
    "voxrelay_edge_datachannel_audio_dropped_total",
    "Audio of datachannel-transport clients dropped: in = from the browser (size: not whole "
    "10-200 ms of PCM16; ahead: running ahead of real time; text), out = to it (stale: "
    "its queue overflowed; backpressure: its channel was not draining; interrupted: "
    "barge-in; closed: no open channel)", ["direction", "reason"])
LOST = Counter("voxrelay_edge_clients_lost_total",
               "Peers ended because the browser went silent (no audio, no channel message)")
