"""The disk guard (appliance/ops/disk.py) on a small file system made for the test: fill it, see
every bulk write refused with 507 and a message clients print while reads go on, fill it to the
last byte and see a write fail cleanly, free space, publish again, and `hexvault check` is clean."""

import errno
import os
import shutil
import subprocess

import pytest
import requests
from click.testing import CliRunner

from appliance import importer
from appliance.cli import main
from appliance.config import load_config
from appliance.db import database
from appliance.models import Release
from appliance.protocol import tarball
from tests.driver import erlang_package
from tests.webclient import WebSession

MiB = 1024 * 1024
FS_SIZE = 48 * MiB
RESERVE = 8 * MiB


def _mount(point, image):
    """A tmpfs at ``point``, else a loop-mounted ext4 image; a reason string if neither works."""
    tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(point)],
                           capture_output=True, text=True)
    if tmpfs.returncode == 0:
        return None
    if shutil.which("mkfs.ext4"):
        with open(image, "wb") as fh:
            fh.truncate(FS_SIZE)
        made = subprocess.run(["mkfs.ext4", "-q", "-m", "0", "-F", str(image)], capture_output=True, text=True)
        looped = made.returncode == 0 and subprocess.run(
            ["mount", "-o", "loop", str(image), str(point)], capture_output=True, text=True).returncode == 0
        if looped:
            return None
    return f"cannot mount a small file system here ({tmpfs.stderr.strip() or 'mount failed'})"


@pytest.fixture
def small_fs(tmp_path):
    point = tmp_path / "small"
    point.mkdir()
    reason = _mount(point, tmp_path / "small.img")
    if reason:
        pytest.skip(reason)
    yield point
    database.close()
    subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def config(small_fs):
    return load_config(environ={}, data_dir=str(small_fs / "data"), bcrypt_rounds=4, port=8000,
                       min_free_bytes=RESERVE)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(point, leave):
    """Write a filler file until about ``leave`` bytes are free (0: until the disk is full)."""
    filler = point / f"filler-{len(list(point.glob('filler-*')))}"
    with open(filler, "wb") as fh:
        try:
            while free_bytes(point) > leave:
                fh.write(b"\0" * min(MiB, max(4096, free_bytes(point) - leave)))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_refuses_writes_with_507_keeps_reads_and_recovers(hv, small_fs, tmp_path):
    assert hv.publish(erlang_package("before", "1.0.0")).status_code == 201
    fill(small_fs, RESERVE // 2)

    # mix and rebar3 print `message` from the ETF body (hex-protocol.md §5.4)
    refused = hv.publish(erlang_package("during", "1.0.0"))
    assert refused.status_code == 507, refused.content
    assert "publishing is paused: the server's disk is nearly full" in refused.term["message"]
    as_json = hv.api("POST", "repos/acme/packages/during/releases", data=erlang_package("during", "1.0.0"),
                     accept="application/json")
    assert as_json.status_code == 507 and "free space" in as_json.json()["message"]
    docs = hv.api("POST", "repos/acme/packages/before/releases/1.0.0/docs",
                  data=tarball.create_docs({"index.html": b"<h1>docs</h1>"}))
    assert docs.status_code == 507 and "uploading docs is paused" in docs.term["message"]

    drop = hv.runtime.config.import_path / "acme"
    drop.mkdir(parents=True)
    (drop / "dropped-1.0.0.tar").write_bytes(erlang_package("dropped", "1.0.0"))
    outcome, message = importer.import_file(hv.runtime, "acme", drop / "dropped-1.0.0.tar")
    assert outcome == "waiting" and "nearly full" in message
    assert (drop / "dropped-1.0.0.tar").exists() and not (drop / "failed").exists()  # taken again later
    mirror_drop = hv.runtime.config.import_path / importer.MIRROR_DIR
    mirror_drop.mkdir()
    (mirror_drop / "deps.tar").write_bytes(b"\0" * 1024)
    outcome, message = importer.import_bundle_file(hv.runtime, mirror_drop / "deps.tar")
    assert outcome == "waiting" and "importing the hex.pm mirror bundle is paused" in message

    backup = CliRunner().invoke(main, ["backup", str(small_fs / "backup")],
                                env={"HEXVAULT_DATA_DIR": hv.runtime.config.data_dir, "HEXVAULT_CONFIG": "",
                                     "HEXVAULT_MIN_FREE_BYTES": str(RESERVE)})
    assert backup.exit_code == 1 and "the backup is paused" in backup.output, backup.output
    assert not (small_fs / "backup").exists() and not (small_fs / "backup.partial").exists()

    # Reads go on, and so do small writes that use the reserve (retiring, revoking, logging in).
    assert hv.repo("names").status_code == 200
    assert hv.repo("tarballs/before-1.0.0.tar").status_code == 200
    assert hv.api("GET", "repos/acme/packages/before").status_code == 200
    retired = hv.api("POST", "repos/acme/packages/before/releases/1.0.0/retire", body={"reason": "other"})
    assert retired.status_code == 204
    web = WebSession(hv.url)
    web.login()
    page = web.get("/admin/")
    assert 'id="disk"' in page.text and "below its reserve" in page.text

    # The guard off and the disk full to the last byte: the write itself fails, cleanly.
    hv.runtime.config = hv.runtime.config.with_updates(min_free_bytes=0)
    last = fill(small_fs, 0)
    full = hv.publish(erlang_package("overflow", "1.0.0"))
    assert full.status_code == 507 and "filled up during the write" in full.term["message"]
    assert not [p for p in hv.runtime.config.blob_path.rglob(".tmp-*")]  # no half-written blob
    rotated = web.post("/admin/signing-key", {"confirm": "rotate"})  # writes a key file in its transaction
    assert rotated.status_code == 507 and "filled up during the write" in rotated.text
    database.connect(reuse_if_open=True)
    assert not Release.select().join(Release.package.rel_model).where(
        Release.package.rel_model.name == "overflow").exists()

    for filler in small_fs.glob("filler-*"):
        filler.unlink()
    assert not last.exists()
    hv.runtime.config = hv.runtime.config.with_updates(min_free_bytes=RESERVE)
    assert hv.publish(erlang_package("during", "1.0.0")).status_code == 201
    assert importer.import_file(hv.runtime, "acme", drop / "dropped-1.0.0.tar")[0] == "done"
    names = [p["name"] for p in hv.registry_names()["packages"]]
    assert names == ["before", "dropped", "during"]
    checked = CliRunner().invoke(main, ["check"], env={"HEXVAULT_DATA_DIR": hv.runtime.config.data_dir,
                                                       "HEXVAULT_CONFIG": ""})
    assert checked.exit_code == 0 and "ok:" in checked.output, checked.output


def test_the_automatic_reserve_is_the_larger_of_1_gib_and_5_percent(config):
    from appliance.ops import disk

    auto = config.with_updates(min_free_bytes=None)
    assert disk.reserve_for(auto, 10 * disk.GiB) == disk.GiB
    assert disk.reserve_for(auto, 100 * disk.GiB) == 5 * disk.GiB
    assert disk.reserve_for(config.with_updates(min_free_bytes=0), 100 * disk.GiB) == 0
    assert load_config(environ={"HEXVAULT_MIN_FREE_BYTES": "auto"}).min_free_bytes is None
    # On a 48 MiB disk "auto" keeps 1 GiB, so nothing could be published: the guard says so.
    usage = disk.usage(auto, config.data_path.parent)
    assert usage.reserve == disk.GiB and usage.low


def test_serving_a_registry_file_needs_no_free_space(hv, small_fs):
    assert hv.publish(erlang_package("readable", "1.0.0")).status_code == 201
    hv.runtime.config = hv.runtime.config.with_updates(min_free_bytes=0)
    fill(small_fs, 0)
    session = requests.Session()
    for path in ("names", "versions", "packages/readable", "tarballs/readable-1.0.0.tar"):
        response = session.get(f"{hv.url}/repos/acme/{path}", headers={"authorization": hv.repo_key}, timeout=30)
        assert response.status_code == 200, path
