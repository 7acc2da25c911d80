"""The drop folder: real files in a real import folder, imported by the real watcher."""

import time

from appliance import audit, importer, orgs
from appliance.models import AuditLog, Release
from tests.driver import erlang_package


def wait_for(predicate, seconds=20.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def folder(runtime, org="acme"):
    path = runtime.config.import_path / org
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_good_and_bad_files_are_published_or_failed_with_a_reason(runtime):
    orgs.create("acme")
    drop = folder(runtime)
    (drop / "hello-1.0.0.tar").write_bytes(erlang_package("hello", "1.0.0"))
    (drop / "broken.tar").write_bytes(b"not a tarball at all")
    results = sorted(importer.scan(runtime, settle_seconds=0.01))
    assert [r[:2] for r in results] == [("broken.tar", "failed"), ("hello-1.0.0.tar", "done")]
    assert (drop / "done" / "hello-1.0.0.tar").exists()
    reason = (drop / "failed" / "broken.tar.reason").read_text()
    assert "Validation error(s)" in reason and "tar" in reason
    assert Release.select().count() == 1
    row = AuditLog.get(AuditLog.action == "release.publish")
    assert row.details["via"] == "import" and "drop folder" in row.actor
    # the same release dropped again fails: the drop folder never replaces
    (drop / "again.tar").write_bytes(erlang_package("hello", "1.0.0"))
    assert importer.scan(runtime, settle_seconds=0.01)[0][1] == "failed"
    again = (drop / "failed" / "again.tar.reason").read_text()
    assert "hello 1.0.0 already exists in acme" in again and "never replace" in again


def test_unknown_organization_folder_fails_the_file(runtime):
    drop = folder(runtime, "nosuchorg")
    (drop / "x.tar").write_bytes(erlang_package("x_pkg", "1.0.0"))
    assert importer.scan(runtime, settle_seconds=0.01)[0][1] == "failed"
    assert "no organization named nosuchorg" in (drop / "failed" / "x.tar.reason").read_text()


def test_part_files_wait_until_renamed_and_growing_files_until_settled(runtime):
    orgs.create("acme")
    drop = folder(runtime)
    data = erlang_package("hello", "1.0.0")
    part = drop / "hello.tar.part"
    part.write_bytes(data[:500])
    assert importer.scan(runtime, settle_seconds=0.01) == []
    part.write_bytes(data)
    part.rename(drop / "hello.tar")
    assert [r[1] for r in importer.scan(runtime, settle_seconds=0.01)] == ["done"]


def test_watcher_imports_files_present_at_start_and_dropped_later(runtime):
    orgs.create("acme")
    drop = folder(runtime)
    (drop / "before.tar").write_bytes(erlang_package("before", "1.0.0"))  # arrived while "down"
    watcher = importer.DropFolderWatcher(runtime, settle_seconds=0.05, poll_seconds=30).start()
    try:
        assert wait_for(lambda: (drop / "done" / "before.tar").exists())
        tmp = drop / "after.tar.part"
        tmp.write_bytes(erlang_package("after", "1.0.0"))
        tmp.rename(drop / "after.tar")
        assert wait_for(lambda: (drop / "done" / "after.tar").exists())
    finally:
        watcher.stop()
    names = sorted(r.package.name for r in Release.select())
    assert names == ["after", "before"]
    assert audit.entries(action="release.publish")[0].details["via"] == "import"


def test_cli_import_publishes_in_place_and_reports_failures(runtime, tmp_path):
    from click.testing import CliRunner

    from appliance.cli import main
    from appliance.db import database

    orgs.create("acme")
    good, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    good.write_bytes(erlang_package("cli_pkg", "1.0.0"))
    bad.write_bytes(b"junk")
    database.close()
    env = {"HEXVAULT_DATA_DIR": runtime.config.data_dir, "HEXVAULT_CONFIG": ""}
    result = CliRunner().invoke(main, ["import", "acme", str(good), str(bad)], env=env)
    assert result.exit_code == 1
    assert "published cli_pkg 1.0.0" in result.output and "1 of 2 file(s) not imported" in result.output
    assert good.exists() and bad.exists()  # the CLI never moves the user's files
    database.connect(reuse_if_open=True)
    assert audit.entries(action="release.publish")[0].details["via"] == "import"
