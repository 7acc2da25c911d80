"""`hexvault gc` and the orphan report of `hexvault check`, on a real data directory behind a
live server: what a failed publish, an interrupted docs upload and an interrupted mirror bundle
leave behind is found, kept while young, deleted with --delete (audited), and never taken from
a publish that is about to commit."""

import hashlib
import threading
import time

from click.testing import CliRunner

from appliance import audit, check, packages
from appliance.cli import main
from appliance.db import database, write_tx
from appliance.ops import gc
from appliance.packages import docs_key, tarball_key
from tests.driver import erlang_package
from tests.test_mirror import drop, get, make_bundle, upstream  # noqa: F401  (upstream is a fixture)


def hexvault(hv, *args, grace=None):
    env = {"HEXVAULT_DATA_DIR": hv.runtime.config.data_dir, "HEXVAULT_CONFIG": ""}
    if grace is not None:
        env["HEXVAULT_GC_GRACE_SECONDS"] = str(grace)
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def failed_publish_orphan(hv):
    """Publish hello 0.1.0, then other bytes under the same version without --replace: the 422
    comes after the tarball was stored, so its blob is referenced by nothing."""
    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    refused = erlang_package("hello", "0.1.0", module_body="greet() -> other.\n")
    assert hv.publish(refused).status_code == 422
    key = tarball_key(hashlib.sha256(refused).hexdigest())
    assert hv.runtime.store.exists(key)
    return key, len(refused)


def test_gc_lists_orphans_then_deletes_them_audited_and_keeps_what_releases_use(hv):
    store = hv.runtime.store
    tarball_orphan, tarball_size = failed_publish_orphan(hv)
    # What a kill -9 between storing docs and committing them leaves.
    docs_bytes = b"\x1f\x8b interrupted docs upload"
    docs_orphan = docs_key(hashlib.sha256(docs_bytes).hexdigest())
    store.put(docs_orphan, docs_bytes)

    dry = hexvault(hv, "gc", grace=0)
    assert dry.exit_code == 0, dry.output
    assert f"{tarball_orphan}\t{tarball_size}" in dry.output and f"{docs_orphan}\t{len(docs_bytes)}" in dry.output
    assert f"2 unreferenced blobs, {tarball_size + len(docs_bytes)} bytes" in dry.output and "dry run" in dry.output
    assert store.exists(tarball_orphan) and store.exists(docs_orphan)

    checked = hexvault(hv, "check", grace=0)
    assert checked.exit_code == 0 and "note: 2 unreferenced blobs" in checked.output

    deleted = hexvault(hv, "gc", "--delete", grace=0)
    assert deleted.exit_code == 0, deleted.output
    assert f"deleted 2 unreferenced blobs, freed {tarball_size + len(docs_bytes)} bytes" in deleted.output
    assert not store.exists(tarball_orphan) and not store.exists(docs_orphan)
    row = audit.entries(action="storage.gc")[0]
    assert row.details["blobs"] == 2 and row.details["bytes"] == tarball_size + len(docs_bytes)
    assert row.details["via"] == "cli"

    served = hv.repo("tarballs/hello-0.1.0.tar")
    assert served.status_code == 200 and served.content == erlang_package("hello", "0.1.0")
    assert "0 unreferenced blobs, 0 bytes" in hexvault(hv, "gc", grace=0).output
    clean = hexvault(hv, "check", grace=0)
    assert clean.exit_code == 0 and "note:" not in clean.output and clean.output.startswith("ok")


def test_gc_keeps_unreferenced_blobs_younger_than_the_grace_period(hv):
    orphan, _size = failed_publish_orphan(hv)
    kept = hexvault(hv, "gc", "--delete")  # the default grace period: an hour
    assert "deleted 0 unreferenced blobs, freed 0 bytes; 1 younger than gc_grace_seconds kept" in kept.output
    assert hv.runtime.store.exists(orphan)
    later = gc.collect(hv.runtime, delete=True, now=time.time() + hv.runtime.config.gc_grace_seconds + 1)
    assert [o.key for o in later.orphans] == [orphan] and not hv.runtime.store.exists(orphan)


def test_gc_never_takes_the_tarball_of_a_publish_waiting_to_commit(hv):
    """A publish stores its tarball, then waits for the write lock; gc runs in between (here it
    holds the lock itself) and deletes the still unreferenced blob. The publish must still
    commit a release whose tarball is stored."""
    data = erlang_package("inflight", "1.0.0")
    key = tarball_key(hashlib.sha256(data).hexdigest())
    outcome = []

    def publish():
        with database.connection_context():
            outcome.append(packages.publish(hv.runtime, hv.org, data))

    publisher = threading.Thread(target=publish)
    with write_tx():  # the write lock, held until gc below is done
        publisher.start()
        deadline = time.monotonic() + 8
        while not hv.runtime.store.exists(key):
            assert time.monotonic() < deadline, "the publish never stored its tarball"
            time.sleep(0.01)
        report = gc.collect(hv.runtime, delete=True, grace_seconds=0)
        assert [o.key for o in report.orphans] == [key] and not hv.runtime.store.exists(key)
    publisher.join(timeout=15)
    assert outcome and outcome[0][1] is True
    assert hv.runtime.store.exists(key)
    assert hv.repo("tarballs/inflight-1.0.0.tar").content == data
    assert check.run(hv.runtime) == []


def test_gc_deletes_mirror_tarballs_no_stored_record_lists(hv, upstream, tmp_path):  # noqa: F811
    assert [r[1] for r in drop(hv, make_bundle(upstream, tmp_path, tmp_path / "b.tar", "upb:2.0.0"))] == ["done"]
    listed = get(hv, "tarballs/upb-2.0.0.tar").content
    # A bundle interrupted after its tarballs, before upa's record was stored. (Stored records
    # list every upstream release, so upb 2.1.0's tarball would be referenced.)
    stray = "mirror/hexpm/tarballs/upa-1.0.0.tar"
    hv.runtime.store.put(stray, b"tarball of a record never stored")

    report = gc.collect(hv.runtime, delete=True, grace_seconds=0)
    assert [o.key for o in report.orphans] == [stray]
    assert not hv.runtime.store.exists(stray)
    assert get(hv, "tarballs/upb-2.0.0.tar").content == listed
