"""How much a client may send: the token bucket both client paths share, and the edge's
settings for it."""

from __future__ import annotations

import pytest

from services.media_edge.config import from_env
from services.runtime import ConfigError
from services.runtime.ratelimit import TokenBucket
from tests.support.clock import ManualClock


def test_a_full_bucket_lets_a_burst_through_then_only_the_rate():
    clock = ManualClock()
    bucket = TokenBucket(rate=50, burst=100, clock=clock)
    assert sum(bucket.take() for _ in range(500)) == 100
    clock.now += 1.0
    assert sum(bucket.take() for _ in range(500)) == 50
    clock.now += 0.01
    assert bucket.take() is False, "half a token is not one"
    clock.now += 0.01
    assert bucket.take() is True


def test_an_idle_bucket_refills_only_up_to_its_burst():
    clock = ManualClock()
    bucket = TokenBucket(rate=50, burst=100, clock=clock)
    clock.now += 3600.0
    assert sum(bucket.take() for _ in range(500)) == 100


def test_a_cost_too_big_spends_nothing():
    clock = ManualClock()
    bucket = TokenBucket(rate=48_000, burst=96_000, clock=clock)  # 2 s of PCM16 24 kHz
    assert bucket.take(96_000) is True
    assert bucket.take(960) is False
    clock.now += 0.025
    assert bucket.take(9600) is False, "200 ms of audio in 25 ms: ahead"
    assert bucket.take(960) is True, "the refill was not spent by the refused message"


def test_a_clock_going_back_does_not_mint_tokens():
    clock = ManualClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.take() is True
    clock.now -= 10.0
    assert bucket.take() is False
    clock.now += 10.5
    assert bucket.take() is False
    clock.now += 0.5
    assert bucket.take() is True


@pytest.mark.parametrize(("rate", "burst", "field"), [(0, 10, "'rate'"), (5, 0.5, "'burst'")])
def test_a_bucket_that_could_never_pass_anything_is_refused(rate, burst, field):
    with pytest.raises(ValueError, match=field):
        TokenBucket(rate, burst)


def test_the_edge_reads_its_channel_limit_and_names_bad_keys():
    config = from_env({})
    assert (config.channel_rate, config.channel_burst) == (50.0, 100.0)
    config = from_env({"VOXRELAY_EDGE_CHANNEL_RATE": "5", "VOXRELAY_EDGE_CHANNEL_BURST": "8"})
    assert (config.channel_rate, config.channel_burst) == (5.0, 8.0)
    with pytest.raises(ConfigError, match="VOXRELAY_EDGE_CHANNEL_RATE"):
        from_env({"VOXRELAY_EDGE_CHANNEL_RATE": "0"})
    with pytest.raises(ConfigError, match="VOXRELAY_EDGE_CHANNEL_BURST"):
        from_env({"VOXRELAY_EDGE_CHANNEL_BURST": "lots"})
