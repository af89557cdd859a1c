"""Session and tenant tokens (services/signaling/tokens.py), where the secrets live, and
which process holds the OpenAI key."""

from __future__ import annotations

import base64
import json
import stat

import pytest

from services.runtime import ConfigError
from services.signaling.config import from_env, with_secrets
from services.signaling.tokens import MAX_TOKEN_CHARS, TokenError, TokenSigner
from services.supervisor.config import UpConfig
from services.supervisor.supervisor import child_specs

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_a_minted_token_verifies_with_its_claims():
    token, claims = TokenSigner(SECRET).mint("session", "acme", "ab" * 16, 60, now=NOW)
    assert TokenSigner(SECRET).verify(token, now=NOW + 59) == claims
    assert (claims.scope, claims.tenant, claims.sub, claims.exp) == ("session", "acme",
                                                                     "ab" * 16, NOW + 60)


def test_expired_tokens_are_refused_as_expired():
    token, _ = TokenSigner(SECRET).mint("tenant", "acme", "acme", 60, now=NOW)
    with pytest.raises(TokenError) as e:
        TokenSigner(SECRET).verify(token, now=NOW + 60)
    assert e.value.code == "token_expired"


def _forgeries() -> list[str]:
    token, _ = TokenSigner(SECRET).mint("session", "acme", "ab" * 16, 60, now=NOW)
    header, claims, signature = token.split(".")
    other, _ = TokenSigner(b"x" * 32).mint("session", "acme", "ab" * 16, 60, now=NOW)
    widened = _b64({"scope": "tenant", "tenant": "acme", "sub": "acme", "iat": int(NOW),
                    "exp": int(NOW) + 60, "jti": "x"})
    return [
        other,                                                    # another server's secret
        f"{header}.{widened}.{signature}",                        # claims changed
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{claims}.",       # alg none, no signature
        f"{header}.{claims}",                                     # no signature part
        f"{header}.{claims}.{signature}.extra",
        f"{header}.{claims}.{signature[:-2]}",                    # truncated signature
        "a" * (MAX_TOKEN_CHARS + 1),
        "not a token", "", "..", "%%%.%%%.%%%", "é.é.é",
    ]


@pytest.mark.parametrize("forged", _forgeries())
def test_forged_and_malformed_tokens_are_refused(forged):
    with pytest.raises(TokenError) as e:
        TokenSigner(SECRET).verify(forged, now=NOW)
    assert e.value.code == "invalid_token"


def test_claims_signed_right_but_of_the_wrong_shape_are_refused():
    signer = TokenSigner(SECRET)
    header = _b64({"alg": "HS256", "typ": "JWT"})
    for claims in ({"scope": "admin", "tenant": "a", "sub": "a", "iat": 1, "exp": 2**40,
                    "jti": "x"},
                   {"scope": "tenant", "tenant": 7, "sub": "a", "iat": 1, "exp": 2**40,
                    "jti": "x"},
                   {"scope": "tenant", "tenant": "a"}):
        signing_input = f"{header}.{_b64(claims)}"
        signature = base64.urlsafe_b64encode(signer._sign(signing_input)).rstrip(b"=").decode()
        with pytest.raises(TokenError, match="not valid"):
            signer.verify(f"{signing_input}.{signature}", now=NOW)


def test_loopback_without_an_admin_key_is_dev_mode_and_any_other_address_is_not(tmp_path):
    assert from_env({}).dev_mode
    assert not from_env({"VOXRELAY_ADMIN_KEY": "k" * 40}).dev_mode
    public = from_env({"VOXRELAY_HTTP_HOST": "0.0.0.0", "VOXRELAY_DATA_DIR": str(tmp_path)})
    assert not public.dev_mode
    filled = with_secrets(public)
    key_file = tmp_path / "admin-key"
    assert filled.admin_key.reveal() == key_file.read_text().strip()
    assert len(filled.admin_key.reveal()) >= 32 and not filled.dev_mode
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "token-secret").stat().st_mode) == 0o600
    assert with_secrets(public).admin_key == filled.admin_key  # kept across restarts
    assert filled.admin_key.reveal() not in repr(filled)


def test_a_short_token_secret_names_its_variable():
    with pytest.raises(ConfigError, match="VOXRELAY_TOKEN_SECRET"):
        from_env({"VOXRELAY_TOKEN_SECRET": "short"})


def test_voxrelay_up_hands_the_openai_key_to_the_link_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-only-for-the-link")
    config = UpConfig(host="127.0.0.1", http_port=0, data_dir=tmp_path, edges=2,
                      bus_publish="tcp://127.0.0.1:1", bus_subscribe="tcp://127.0.0.1:2",
                      use_simulator=False, sim_port=0, ice_hosts=None, metrics_base_port=0)
    holders = {spec.name for spec in child_specs(config) if "OPENAI_API_KEY" in spec.env}
    assert holders == {"openai_link-1"}
