"""A running server and the `hexvault` CLI are separate processes sharing one data directory:
what the CLI changes (keys, packages, registry files) must reach the server's in-memory caches
on the very next request."""

import re

import requests

from appliance.protocol import registry, signing
from tests.driver import erlang_package
from tests.procserver import ServerProcess
from tests.test_cli import run


def test_cli_changes_reach_a_running_server_at_once(tmp_path):
    init = run(tmp_path, "init", "--admin", "root", "--org", "acme")
    assert init.exit_code == 0, init.output
    repo_key = re.search(r"Repository key:\s+([0-9a-f]{32})", init.output).group(1)
    server = ServerProcess(tmp_path / "data").start()
    try:
        auth = {"authorization": repo_key}
        names_url = f"{server.url}/repos/acme/names"
        for _warm in range(3):  # the server now holds the key, the org and names in memory
            first = requests.get(names_url, headers=auth, timeout=10)
            assert first.status_code == 200
        public_key = signing.load_public_key(requests.get(f"{server.url}/repos/acme/public_key", timeout=10).content)

        def names_in(response):
            payload = registry.decode_signed(response.content, public_key)
            return [p["name"] for p in registry.decode_names(payload, "acme")["packages"]]

        assert names_in(first) == []

        tarball = tmp_path / "cross-1.0.0.tar"
        tarball.write_bytes(erlang_package("cross", "1.0.0"))
        imported = run(tmp_path, "import", "acme", str(tarball))
        assert imported.exit_code == 0, imported.output
        names = requests.get(names_url, headers=auth, timeout=10)
        assert names.status_code == 200 and names.headers["ETag"] != first.headers["ETag"]
        assert names_in(names) == ["cross"]
        tar = requests.get(f"{server.url}/repos/acme/tarballs/cross-1.0.0.tar", headers=auth, timeout=10)
        assert tar.status_code == 200 and tar.content == tarball.read_bytes()

        revoked = run(tmp_path, "key", "revoke", "acme-repository", "--org", "acme")
        assert revoked.exit_code == 0, revoked.output
        after = requests.get(names_url, headers=auth, timeout=10)
        assert after.status_code == 401 and b"cross" not in after.content
        assert requests.get(f"{server.url}/repos/acme/tarballs/cross-1.0.0.tar", headers=auth,
                            timeout=10).status_code == 401
    finally:
        server.stop()
