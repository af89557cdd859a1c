import pytest

from services.openai_sim.keys import AuthError, KeyStore, mask
from services.runtime import Secret
from tests.support.clock import ManualClock


def test_any_sk_key_is_accepted_unless_one_is_pinned():
    assert not KeyStore(None).check("Bearer sk-anything").ephemeral
    pinned = KeyStore(Secret("sk-right"))
    assert not pinned.check("Bearer sk-right").ephemeral
    with pytest.raises(AuthError) as info:
        pinned.check("Bearer sk-wrong-key-123")
    assert info.value.code == "invalid_api_key"
    assert "sk-wrong-key-123" not in info.value.message
    assert mask("sk-wrong-key-123") in info.value.message


def test_missing_or_malformed_authorization_is_refused():
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(AuthError):
            KeyStore(None).check(header)


def test_ephemeral_keys_work_until_they_expire():
    clock = ManualClock(1_000_000.0)
    keys = KeyStore(None, clock=clock)
    value, expires_at = keys.mint({"type": "realtime"}, 60)
    assert value.startswith("ek_") and expires_at == int(clock.now + 60)
    assert keys.check(f"Bearer {value}").session == {"type": "realtime"}
    clock.now += 61
    with pytest.raises(AuthError) as info:
        keys.check(f"Bearer {value}")
    assert info.value.code == "invalid_api_key"


def test_unknown_ephemeral_key_is_refused():
    with pytest.raises(AuthError):
        KeyStore(None).check("Bearer ek_0123456789abcdef0123456789abcdef")


def test_secret_never_shows_itself():
    secret = Secret("sk-live-verysecret")
    assert "verysecret" not in repr(secret) and "verysecret" not in str(secret)
    assert "verysecret" not in f"{secret} {[secret]}"
