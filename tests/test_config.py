import pathlib

import pytest

from appliance.config import SETTINGS, load_config
from appliance.errors import ConfigError

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_defaults_are_safe():
    config = load_config(environ={})
    assert config.host == "127.0.0.1"
    assert config.max_tarball_size == 16 * 1024 * 1024
    assert config.external_url == "http://127.0.0.1:8000"


def test_file_then_environment_precedence(tmp_path):
    path = tmp_path / "hexvault.toml"
    path.write_text('port = 9000\nbase_url = "http://hex.corp:9000/"\ndata_dir = "/srv/hex"\n')
    config = load_config(str(path), environ={"HEXVAULT_PORT": "9100"})
    assert config.port == 9100
    assert config.data_dir == "/srv/hex"
    assert config.external_url == "http://hex.corp:9000"


def test_unknown_key_and_bad_value_name_the_setting(tmp_path):
    path = tmp_path / "hexvault.toml"
    path.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_config(str(path), environ={})
    with pytest.raises(ConfigError, match="HEXVAULT_PORT"):
        load_config(environ={"HEXVAULT_PORT": "eighty"})
    with pytest.raises(ConfigError, match="secure_cookies"):
        load_config(environ={"HEXVAULT_SECURE_COOKIES": "maybe"})


def test_every_setting_is_documented_in_the_readme():
    text = README.read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in text]
    assert not missing, f"settings missing from README.md: {missing}"


def test_metrics_settings_take_networks_and_a_token_hash(tmp_path):
    path = tmp_path / "hexvault.toml"
    path.write_text('metrics_allow = ["10.0.0.0/8", "2001:db8::/32"]\nmetrics_token_sha256 = "' + "AB" * 32 + '"\n')
    config = load_config(str(path), environ={})
    assert config.metrics_allow == ("10.0.0.0/8", "2001:db8::/32") and config.metrics_token_sha256 == "ab" * 32
    assert load_config(environ={"HEXVAULT_METRICS_ALLOW": "127.0.0.1/32, 10.1.0.0/16"}).metrics_allow == \
        ("127.0.0.1/32", "10.1.0.0/16")
    assert load_config(environ={"HEXVAULT_METRICS_ALLOW": ""}).metrics_allow == ()
    for bad in ("10.0.0.1/8", "localhost"):  # host bits set; not a network
        with pytest.raises(ConfigError, match="HEXVAULT_METRICS_ALLOW"):
            load_config(environ={"HEXVAULT_METRICS_ALLOW": bad})
    with pytest.raises(ConfigError, match="metrics_token_sha256"):
        load_config(environ={"HEXVAULT_METRICS_TOKEN_SHA256": "the-token-itself"})
