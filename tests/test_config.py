import pathlib
import re

import pytest

from appliance.config import SETTINGS, SETTINGS_BY_NAME, find_config_file, load_config
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


def readme_section(title):
    """The README's ``## title`` section, up to the next ``## `` heading."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def test_every_setting_is_documented_in_the_readme():
    table = readme_section("Configuration")
    missing = [s.name for s in SETTINGS if f"\n| `{s.name}` |" not in table]
    assert not missing, f"settings missing from README.md's configuration table: {missing}"


def test_the_readme_example_config_names_every_setting_at_its_default(tmp_path):
    """The complete hexvault.toml in the README's Configuration section, loaded by the real
    loader: it names every setting once, nothing else, each at the default the code has."""
    blocks = re.findall(r"```toml\n(.*?)```", readme_section("Configuration"), re.S)
    assert blocks, "no ```toml block in the README's Configuration section"
    example = blocks[0]
    named = re.findall(r"^([a-z0-9_]+) = ", example, re.M)
    assert sorted(named) == sorted(s.name for s in SETTINGS), \
        f"missing: {sorted(set(s.name for s in SETTINGS) - set(named))}, unknown or twice: " \
        f"{sorted(n for n in named if named.count(n) > 1 or n not in SETTINGS_BY_NAME)}"
    commented = [line for line in example.splitlines() if " = " in line and not line.startswith("#")
                 and "  # " not in line]
    assert not commented, f"settings without a one-line comment: {commented}"
    path = tmp_path / "hexvault.toml"
    path.write_text(example)
    loaded = load_config(str(path), environ={})
    defaults = load_config(environ={})
    differ = [s.name for s in SETTINGS if getattr(loaded, s.name) != getattr(defaults, s.name)]
    assert not differ, f"the README's example differs from the defaults in: {differ}"


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


def test_the_cli_finds_hexvault_toml_here_or_in_a_parent_unless_told_otherwise(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "deep" / "er").mkdir(parents=True)
    (checkout / "hexvault.toml").write_text("port = 9123\n")
    found = str(checkout / "hexvault.toml")
    assert find_config_file(environ={}, cwd=checkout) == found
    assert find_config_file(environ={}, cwd=checkout / "deep" / "er") == found
    assert find_config_file(environ={}, cwd=tmp_path) is None
    # HEXVAULT_CONFIG wins, and set but empty it means no file at all.
    assert find_config_file(environ={"HEXVAULT_CONFIG": "/etc/hexvault/hexvault.toml"}, cwd=checkout) == \
        "/etc/hexvault/hexvault.toml"
    assert find_config_file(environ={"HEXVAULT_CONFIG": ""}, cwd=checkout) is None


def test_the_cli_reads_the_hexvault_toml_of_its_working_directory(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from appliance.cli import main

    (tmp_path / "hexvault.toml").write_text(f'port = 9123\ndata_dir = "{tmp_path / "data"}"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEXVAULT_CONFIG")
    shown = CliRunner().invoke(main, ["show-config"])
    assert shown.exit_code == 0, shown.output
    assert f"# config file: {tmp_path / 'hexvault.toml'}" in shown.output
    assert "port = 9123" in shown.output and "base_url = 'http://127.0.0.1:9123'" in shown.output
    explicit = CliRunner().invoke(main, ["show-config"], env={"HEXVAULT_CONFIG": ""})
    assert "# config file: none" in explicit.output and "port = 8000" in explicit.output
