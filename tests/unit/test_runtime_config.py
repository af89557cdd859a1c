import pytest

from services.openai_sim.config import from_env
from services.openai_sim.replies import ReplyMode
from services.runtime import ConfigError, env_bool, env_int, env_list, strip_mdns_candidates


def test_bad_values_name_the_variable():
    with pytest.raises(ConfigError, match="VOXRELAY_X"):
        env_int("VOXRELAY_X", 1, {"VOXRELAY_X": "ten"})
    with pytest.raises(ConfigError, match="VOXRELAY_X"):
        env_int("VOXRELAY_X", 1, {"VOXRELAY_X": "70000"}, maximum=65535)
    with pytest.raises(ConfigError, match="VOXRELAY_B"):
        env_bool("VOXRELAY_B", False, {"VOXRELAY_B": "maybe"})


def test_lists_are_comma_separated_and_unset_is_none():
    assert env_list("K", {"K": "127.0.0.1, ::1,"}) == ("127.0.0.1", "::1")
    assert env_list("K", {}) is None


def test_sim_config_from_env(tmp_path):
    script = tmp_path / "s.toml"
    script.write_text('[[turn]]\nuser = "a"\nreply = "b"\n')
    config = from_env({
        "VOXRELAY_SIM_PORT": "9000",
        "VOXRELAY_SIM_SCRIPT": str(script),
        "VOXRELAY_SIM_RESPONSE_LATENCY_MS": "50",
        "VOXRELAY_ICE_HOSTS": "127.0.0.1",
        "VOXRELAY_SIM_API_KEY": "sk-pinned",
    })
    assert config.port == 9000 and config.reply_mode is ReplyMode.SCRIPT
    assert config.response_latency_s == 0.05 and config.ice_hosts == ("127.0.0.1",)
    assert "sk-pinned" not in repr(config)


def test_unknown_reply_mode_is_refused():
    with pytest.raises(ConfigError, match="VOXRELAY_SIM_REPLY_MODE"):
        from_env({"VOXRELAY_SIM_REPLY_MODE": "chatty"})


def test_mdns_candidates_are_stripped():
    sdp = ("v=0\r\na=candidate:1 1 udp 2122260223 abcd-1234.local 54321 typ host\r\n"
           "a=candidate:2 1 udp 2122260223 127.0.0.1 54322 typ host\r\n")
    stripped = strip_mdns_candidates(sdp)
    assert ".local" not in stripped and "127.0.0.1 54322" in stripped


def test_join_links_from_an_all_interfaces_bind_use_a_reachable_address():
    from services.signaling.config import SignalingConfig, lan_address

    config = SignalingConfig(http_host="0.0.0.0", http_port=8443, tls=True)
    expected = lan_address() or "127.0.0.1"
    assert config.base_url == f"https://{expected}:8443"
    assert SignalingConfig(public_url="https://voice.example/").base_url == "https://voice.example"
