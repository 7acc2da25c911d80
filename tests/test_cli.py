"""The `hexvault` command, run in-process through click's runner on a real data directory."""

import re

from click.testing import CliRunner

from appliance.cli import main


def run(tmp_path, *args, input=None):
    env = {"HEXVAULT_DATA_DIR": str(tmp_path / "data"), "HEXVAULT_BCRYPT_ROUNDS": "4", "HEXVAULT_CONFIG": ""}
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def test_commands_refuse_an_uninitialized_data_dir(tmp_path):
    result = run(tmp_path, "org", "list")
    assert result.exit_code == 1
    assert "not initialized" in result.output and "hexvault init" in result.output


def test_init_prints_secrets_and_client_setup_once_and_refuses_twice(tmp_path):
    result = run(tmp_path, "init", "--admin", "root", "--org", "acme")
    assert result.exit_code == 0, result.output
    assert re.search(r"Admin password:\s+\S{12,}", result.output)
    repo_key = re.search(r"Repository key:\s+([0-9a-f]{32})", result.output).group(1)
    assert f"mix hex.repo add acme http://127.0.0.1:8000/repos/acme --public-key acme.pem --auth-key {repo_key}" \
        in result.output
    assert "repo_public_key => <<\"-----BEGIN PUBLIC KEY-----" in result.output
    assert "mix hex.repo set hexpm --url http://127.0.0.1:8000/mirror/hexpm\n" in result.output
    assert f"HEX_API_URL=http://127.0.0.1:8000/api mix hex.organization auth acme --key {repo_key}" in result.output
    assert "mix hex.repo add hexpm:acme http://127.0.0.1:8000/mirror/hexpm/repos/acme --public-key acme.pem" \
        in result.output
    again = run(tmp_path, "init")
    assert again.exit_code == 1 and "already initialized" in again.output


def test_org_user_key_lifecycle_and_check(tmp_path):
    assert run(tmp_path, "init", "--admin-password", "first-password").exit_code == 0
    assert run(tmp_path, "org", "create", "beta").exit_code == 0
    dup = run(tmp_path, "org", "create", "beta")
    assert dup.exit_code == 1 and "already exists" in dup.output
    assert run(tmp_path, "user", "create", "alice", "--password", "alice-password").exit_code == 0
    assert run(tmp_path, "org", "add-member", "beta", "alice", "--role", "read").exit_code == 0
    assert "alice\tread" in run(tmp_path, "org", "members", "beta").output
    assert run(tmp_path, "user", "disable", "alice").exit_code == 0
    assert "alice\t-\t-\tdisabled" in run(tmp_path, "user", "list").output  # name, e-mail, full name, flags
    assert run(tmp_path, "user", "enable", "alice").exit_code == 0
    assert "alice\t-\t-\t-" in run(tmp_path, "user", "list").output
    assert run(tmp_path, "user", "disable", "nobody").exit_code == 1
    created = run(tmp_path, "key", "create", "ci", "--org", "beta", "-p", "repository:beta")
    assert created.exit_code == 0 and re.search(r"key ci: [0-9a-f]{32}", created.output)
    assert "ci\trepository:beta\tactive" in run(tmp_path, "key", "list", "--org", "beta").output
    assert run(tmp_path, "key", "revoke", "ci", "--org", "beta").exit_code == 0
    assert "revoked" in run(tmp_path, "key", "list", "--org", "beta").output
    bad = run(tmp_path, "key", "create", "x", "--org", "beta", "-p", "repository:nope")
    assert bad.exit_code == 1 and "nope" in bad.output
    rebuilt = run(tmp_path, "registry", "rebuild")
    assert rebuilt.exit_code == 0 and "beta: 0 packages" in rebuilt.output
    checked = run(tmp_path, "check")
    assert checked.exit_code == 0 and checked.output.startswith("ok")


def test_show_config_reports_env_overrides(tmp_path):
    result = run(tmp_path, "show-config")
    assert f"data_dir = '{tmp_path / 'data'}'" in result.output
    assert "bcrypt_rounds = 4" in result.output


def test_config_errors_are_one_line_for_every_command(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("prot = 1\n")
    for args in (["--config", str(bad), "show-config"], ["--config", str(bad), "serve"],
                 ["--config", str(bad), "org", "list"]):
        result = CliRunner().invoke(main, args, env={"HEXVAULT_CONFIG": ""})
        assert result.exit_code == 1 and "unknown setting 'prot'" in result.output, (args, result.output)
        assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    threads = CliRunner().invoke(main, ["show-config"], env={"HEXVAULT_THREADS": "abc", "HEXVAULT_CONFIG": ""})
    assert threads.exit_code == 1 and "HEXVAULT_THREADS" in threads.output


def test_show_config_prints_the_url_clients_will_use(tmp_path):
    shown = run(tmp_path, "show-config").output
    assert "base_url = 'http://127.0.0.1:8000'" in shown


def test_init_closes_a_data_dir_made_beforehand_with_umask_022(tmp_path):
    """The database and private tarballs live in the data directory: others may not even list it."""
    import os
    import stat

    (tmp_path / "data").mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        assert run(tmp_path, "init").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o750


def test_admin_and_users_get_the_email_and_full_name_the_hex_api_shows(tmp_path):
    init = run(tmp_path, "init", "--admin", "root", "--admin-email", "root@corp.example",
               "--admin-full-name", "Root  Admin")
    assert init.exit_code == 0, init.output
    assert "root\troot@corp.example\tRoot Admin\tadmin" in run(tmp_path, "user", "list").output
    created = run(tmp_path, "user", "create", "alice", "--password", "alice-password", "--full-name", "Alice")
    assert created.exit_code == 0, created.output
    assert "alice\t-\tAlice\t-" in run(tmp_path, "user", "list").output
    updated = run(tmp_path, "user", "update", "alice", "--email", "alice@corp.example")
    assert updated.exit_code == 0 and "alice\talice@corp.example\tAlice" in updated.output, updated.output
    cleared = run(tmp_path, "user", "update", "alice", "--full-name", "")
    assert cleared.exit_code == 0 and "alice\talice@corp.example\t-" in cleared.output, cleared.output
    bad = run(tmp_path, "user", "update", "alice", "--email", "not an address")
    assert bad.exit_code == 1 and "email: must look like name@host" in bad.output
    control = run(tmp_path, "user", "update", "alice", "--full-name", "Alice\nmallory\tadmin")
    assert control.exit_code == 1 and "no control characters" in control.output
    assert "alice\talice@corp.example\t-" in run(tmp_path, "user", "list").output
    nothing = run(tmp_path, "user", "update", "alice")
    assert nothing.exit_code == 1 and "--email and/or --full-name" in nothing.output
    missing = run(tmp_path, "user", "update", "nobody", "--email", "n@corp.example")
    assert missing.exit_code == 1 and "no user named nobody" in missing.output
