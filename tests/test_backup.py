"""Online backup while publishing, restore into a new data directory, compare bytes."""

import os
import stat
import threading

import pytest
from click.testing import CliRunner

from appliance import backup, check, registry_builder
from appliance.cli import main
from appliance.db import database
from appliance.models import Release
from tests.conftest import BACKEND
from tests.driver import erlang_package


def test_backup_during_publishes_restores_identical_registry_and_tarballs(hv, tmp_path, another_database):
    for i in range(5):
        assert hv.publish(erlang_package(f"base{i}", "1.0.0")).status_code == 201
    hv.api("POST", "repos/acme/packages/base0/releases/1.0.0/retire", body={"reason": "other", "message": "old"})
    stop, published = threading.Event(), []

    def publish_loop():
        n = 0
        while not stop.is_set():
            n += 1
            if hv.publish(erlang_package(f"during{n:03d}", "1.0.0")).status_code == 201:
                published.append(n)

    worker = threading.Thread(target=publish_loop)
    worker.start()
    try:
        manifest = backup.backup(hv.runtime, tmp_path / "backup")
    finally:
        stop.set()
        worker.join()
    assert published, "the publish loop ran during the backup"
    dumped = "hexvault.pgdump" if hv.runtime.config.database_url else "hexvault.db"
    assert dumped in manifest["files"] and "secret_key" in manifest["files"]
    assert [n for n in manifest["files"] if n.startswith("hexvault.")] == [dumped]  # one self-contained file
    original = {r.package.name: r for r in Release.select()}
    original_store = hv.runtime.store

    restore_url = another_database()
    env = {"HEXVAULT_DATA_DIR": str(tmp_path / "restored"), "HEXVAULT_CONFIG": "", "HEXVAULT_DATABASE_URL": restore_url}
    database.close()
    result = CliRunner().invoke(main, ["restore", str(tmp_path / "backup")], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "every registry file verifies" in result.output

    from appliance.config import load_config
    from appliance.runtime import open_runtime

    restored = open_runtime(load_config(environ={}, data_dir=str(tmp_path / "restored"), database_url=restore_url))
    database.connect(reuse_if_open=True)
    assert check.run(restored) == []
    names = [r.package.name for r in Release.select()]
    assert {f"base{i}" for i in range(5)} <= set(names)
    for name in names:
        release = original[name]
        tarball = f"tarballs/{release.outer_checksum[:2]}/{release.outer_checksum}.tar"
        assert restored.store.get(tarball) == original_store.get(tarball)
        # same database state + same key => byte-identical signed registry file
        key = registry_builder.package_key("acme", name)
        assert restored.store.get(key) == original_store.get(key)


def test_restore_refuses_a_used_data_dir_and_an_altered_backup(hv, tmp_path):
    backup.backup(hv.runtime, tmp_path / "b")
    env = {"HEXVAULT_DATA_DIR": hv.runtime.config.data_dir, "HEXVAULT_CONFIG": ""}
    refused = CliRunner().invoke(main, ["restore", str(tmp_path / "b")], env=env)
    assert refused.exit_code == 1 and "not empty" in refused.output
    (tmp_path / "b" / "secret_key").write_text("tampered")
    env = {"HEXVAULT_DATA_DIR": str(tmp_path / "new"), "HEXVAULT_CONFIG": ""}
    altered = CliRunner().invoke(main, ["restore", str(tmp_path / "b")], env=env)
    assert altered.exit_code == 1 and "altered" in altered.output
    again = CliRunner().invoke(main, ["backup", str(tmp_path / "b")],
                               env={"HEXVAULT_DATA_DIR": hv.runtime.config.data_dir, "HEXVAULT_CONFIG": ""})
    assert again.exit_code == 1 and "already exists" in again.output


def test_backup_is_owner_only_under_a_permissive_umask(hv, tmp_path, another_database):
    """A backup holds the database, private tarballs, signing keys and the app secret: nobody
    but its owner may read any of it, even when written under the common umask 022."""
    assert hv.publish(erlang_package("secretlib", "1.0.0")).status_code == 201
    config_file = tmp_path / "hexvault.toml"
    config_file.write_text(f'data_dir = "{hv.runtime.config.data_dir}"\n')
    os.chmod(config_file, 0o644)
    old = os.umask(0o022)
    try:
        result = CliRunner().invoke(main, ["--config", str(config_file), "backup", str(tmp_path / "b")],
                                    env={"HEXVAULT_CONFIG": ""}, catch_exceptions=False)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    paths = [tmp_path / "b"] + list((tmp_path / "b").rglob("*"))
    assert any(p.name.endswith(".tar") for p in paths) and any(p.name == "hexvault.toml" for p in paths)
    readable_by_others = [f"{p.relative_to(tmp_path)} {stat.filemode(p.stat().st_mode)}"
                          for p in paths if p.stat().st_mode & 0o077]
    assert readable_by_others == []

    # Restoring into a directory an operator made beforehand with the umask's 0755 closes it too.
    (tmp_path / "restored").mkdir(mode=0o755)
    database.close()
    old = os.umask(0o022)
    try:
        result = CliRunner().invoke(main, ["restore", str(tmp_path / "b")], catch_exceptions=False,
                                    env={"HEXVAULT_DATA_DIR": str(tmp_path / "restored"), "HEXVAULT_CONFIG": "",
                                         "HEXVAULT_DATABASE_URL": another_database()})
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "restored").stat().st_mode) == 0o750


def _cli(data_dir, *args):
    return CliRunner().invoke(main, list(args), env={"HEXVAULT_DATA_DIR": str(data_dir), "HEXVAULT_CONFIG": "",
                                                     "HEXVAULT_BACKUP_KEY": ""})


def _tamper(backup_dir):
    """What an attacker with write access to the backups does: add an admin of their own to the
    database and recompute its sum in the manifest."""
    import hashlib
    import json
    import sqlite3

    conn = sqlite3.connect(backup_dir / "hexvault.db")
    conn.execute('INSERT INTO "user" ("username", "password_hash", "is_admin", "created_at", "updated_at") '
                 "VALUES ('mallory', 'x', 1, '2026-01-01', '2026-01-01')")
    conn.commit()
    conn.close()
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    manifest["files"]["hexvault.db"] = hashlib.sha256((backup_dir / "hexvault.db").read_bytes()).hexdigest()
    (backup_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


@pytest.mark.skipif(BACKEND == "postgresql", reason="the tampering edits the backup's SQLite file")
def test_a_signed_backup_restores_only_untampered_with_the_key(hv, tmp_path):
    import secrets

    data_dir = hv.runtime.config.data_dir
    key = tmp_path / "backup.key"
    key.write_text(secrets.token_hex(32) + "\n")
    signed = _cli(data_dir, "backup", "--sign", str(key), str(tmp_path / "signed"))
    assert signed.exit_code == 0 and "signed" in signed.output, signed.output
    unsigned = _cli(data_dir, "backup", str(tmp_path / "unsigned"))
    assert unsigned.exit_code == 0, unsigned.output
    database.close()

    import shutil
    shutil.copytree(tmp_path / "signed", tmp_path / "tampered")
    _tamper(tmp_path / "tampered")
    refused = _cli(tmp_path / "r1", "restore", "--verify", str(key), str(tmp_path / "tampered"))
    assert refused.exit_code == 1 and "not signed with this key" in refused.output, refused.output
    assert not (tmp_path / "r1" / "secret_key").exists()
    # What an unsigned manifest cannot catch: the recomputed sum matches, so this restores.
    silent = _cli(tmp_path / "r2", "restore", str(tmp_path / "tampered"))
    assert silent.exit_code == 0 and "signature not checked" in silent.output, silent.output

    not_signed = _cli(tmp_path / "r3", "restore", "--verify", str(key), str(tmp_path / "unsigned"))
    assert not_signed.exit_code == 1 and "is not signed" in not_signed.output
    other_key = tmp_path / "other.key"
    other_key.write_text(secrets.token_hex(32))
    wrong = _cli(tmp_path / "r4", "restore", "--verify", str(other_key), str(tmp_path / "signed"))
    assert wrong.exit_code == 1 and "not signed with this key" in wrong.output

    (tmp_path / "signed-extra").mkdir()
    shutil.copytree(tmp_path / "signed", tmp_path / "signed-extra", dirs_exist_ok=True)
    (tmp_path / "signed-extra" / "blobs" / "planted.tar").write_bytes(b"not listed")
    planted = _cli(tmp_path / "r5", "restore", "--verify", str(key), str(tmp_path / "signed-extra"))
    assert planted.exit_code == 1 and "planted.tar is not in the manifest" in planted.output

    good = _cli(tmp_path / "r6", "restore", "--verify", str(key), str(tmp_path / "signed"))
    assert good.exit_code == 0 and "signature verified" in good.output, good.output


def test_the_backup_key_must_live_outside_the_data_dir_and_be_long_enough(hv, tmp_path):
    inside = hv.runtime.config.data_path / "backup.key"
    inside.write_text("k" * 64)
    refused = _cli(hv.runtime.config.data_dir, "backup", "--sign", str(inside), str(tmp_path / "b"))
    assert refused.exit_code == 1 and "outside the data directory" in refused.output
    short = tmp_path / "short.key"
    short.write_text("tooshort")
    refused = _cli(hv.runtime.config.data_dir, "backup", "--sign", str(short), str(tmp_path / "b"))
    assert refused.exit_code == 1 and "shorter than 32 bytes" in refused.output
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()
