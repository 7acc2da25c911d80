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


def test_an_unreachable_postgresql_is_one_line_naming_it_without_its_password(tmp_path):
    """PostgreSQL down or the URL wrong: every command says so in one line (the URL with its
    password masked, and what libpq answered), never a traceback."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret_key").write_text("an initialized data directory\n")
    url = f"postgresql://hexvault:s3cret-pw@/hexvault?host={tmp_path}/no-server&port=5432"
    env = {"HEXVAULT_DATA_DIR": str(data), "HEXVAULT_CONFIG": "", "HEXVAULT_DATABASE_URL": url,
           "PATH": "/usr/bin:/bin"}
    for command in (["org", "list"], ["migrate"], ["check"], ["serve", "--port", "0"]):
        result = subprocess.run([sys.executable, "-m", "appliance", *command], env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 1, command
        assert "Traceback" not in result.stderr and "s3cret-pw" not in result.stderr + result.stdout, command
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, (command, result.stderr)
        assert errors[0].startswith("error: cannot reach the database postgresql://hexvault:***@/hexvault?"), errors
        assert "no-server/.s.PGSQL.5432" in errors[0]


def test_show_config_masks_a_database_password_in_either_spelling(tmp_path):
    for url in ("postgresql://hexvault:s3cret-pw@db.corp/hexvault",
                "postgresql://hexvault@db.corp/hexvault?sslmode=require&password=s3cret-pw"):
        result = subprocess.run([sys.executable, "-m", "appliance", "show-config"], capture_output=True, text=True,
                                env={"HEXVAULT_DATA_DIR": str(tmp_path), "HEXVAULT_CONFIG": "",
                                     "HEXVAULT_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "s3cret-pw" not in result.stdout and "***" in result.stdout
