"""`hexvault check` beside a live server: changes in flight are no problems, real damage is."""

import os
import subprocess
import sys
import threading

from appliance import packages
from appliance.protocol import tarball
from tests.driver import erlang_package

CHECK_RUNS = 8  # at least this many while changes are in flight (the attack run saw 2 of 8 fail)
MAX_CHANGES = 400  # the publisher's bound, should the checks be slow


def hexvault_check(runtime):
    """`hexvault check` as its own process, as an operator runs it next to the server."""
    env = dict(os.environ, HEXVAULT_DATA_DIR=str(runtime.config.data_path), HEXVAULT_CONFIG="")
    return subprocess.run([sys.executable, "-m", "appliance", "check"], env=env, capture_output=True, text=True,
                          timeout=300)


def keep_changing(hv, stop, done):
    """Publish, replace, retire, upload and delete docs, revert: every kind of change that
    moves registry files and blobs, round after round, until told to stop."""
    docs = tarball.create_docs({"index.html": b"<h1>docs</h1>"})
    try:
        for n in range(MAX_CHANGES):
            if stop.is_set():
                break
            name, version = f"pkg{n % 3}", f"1.0.{n}"
            assert hv.publish(erlang_package(name, version)).status_code == 201
            assert hv.publish(erlang_package(name, version, description=f"again {n}"), replace=True).status_code == 200
            path = f"repos/acme/packages/{name}/releases/{version}"
            assert hv.api("POST", f"{path}/docs", data=docs).status_code == 201
            retired = hv.api("POST", f"{path}/retire", body={"reason": "other", "message": "superseded"})
            assert retired.status_code == 204, retired.term
            if n % 2:
                assert hv.api("DELETE", f"{path}/docs").status_code == 204
                assert hv.api("DELETE", path).status_code == 204
    finally:
        done.set()


def test_check_beside_publishes_reports_nothing_and_still_finds_real_damage(hv):
    stop, done = threading.Event(), threading.Event()
    publisher = threading.Thread(target=keep_changing, args=(hv, stop, done), daemon=True)
    publisher.start()
    runs = []
    try:
        while len(runs) < CHECK_RUNS and not done.is_set():
            result = hexvault_check(hv.runtime)
            runs.append((result.returncode, result.stdout + result.stderr))
    finally:
        stop.set()
        publisher.join(timeout=120)
    assert not publisher.is_alive()
    assert len(runs) == CHECK_RUNS, "the publisher stopped early (see its assertion)"
    assert [out for code, out in runs if code != 0] == []
    # Real damage, with nothing in flight: a tarball that no longer matches, a stale names file.
    release = packages.get_release(hv.org, "pkg0", "1.0.0")
    hv.runtime.store.put(packages.tarball_key(release.outer_checksum), b"bit rot")
    hv.runtime.store.put("registry/acme/names", hv.runtime.store.get("registry/acme/versions"))
    damaged = hexvault_check(hv.runtime)
    assert damaged.returncode == 1
    assert "acme: tarball pkg0-1.0.0.tar does not match its checksum" in damaged.stdout
    assert "acme: names " in damaged.stdout
    assert damaged.stdout.count("acme: ") == 2, damaged.stdout
