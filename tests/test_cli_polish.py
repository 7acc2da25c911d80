"""Issue 13.6 (CLI polish): help on every command and option, a missing data directory named
with the way to point at the right one, a busy port in one line, base_url needing a scheme."""

import socket
import subprocess
import sys

import click
import pytest

from appliance.cli import main
from appliance.config import load_config
from appliance.errors import ConfigError
from tests.test_cli import run


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        yield path + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path + (name,))


def test_every_command_and_option_has_help():
    missing = []
    for path, cmd in _commands(main):
        if not (cmd.help or cmd.short_help):
            missing.append(" ".join(path))
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert missing == []


def test_a_missing_data_directory_is_named_with_how_to_point_elsewhere(tmp_path):
    result = run(tmp_path, "user", "list")
    assert result.exit_code == 1
    assert f"data directory {tmp_path / 'data'} is not initialized (does not exist)" in result.output
    assert "HEXVAULT_DATA_DIR" in result.output and "--config" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_base_url_without_a_scheme_is_refused():
    with pytest.raises(ConfigError) as refused:
        load_config(environ={"HEXVAULT_BASE_URL": "hex.corp.example:8000"})
    assert "base_url" in refused.value.message and "https://hex.corp.example" in refused.value.message
    assert load_config(environ={"HEXVAULT_BASE_URL": "https://hex.corp.example/"}).external_url == "https://hex.corp.example"


def test_a_busy_port_is_one_line(tmp_path):
    assert run(tmp_path, "init", "--admin-password", "first-password").exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "appliance", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env={"HEXVAULT_DATA_DIR": str(tmp_path / "data"), "HEXVAULT_CONFIG": "",
                                     "PATH": "/usr/bin:/bin"},
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use; stop what uses it "
                      "or choose another port (--port, or port in the config file)"]
