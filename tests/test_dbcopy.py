"""`hexvault db copy --to postgresql://...`: an appliance moved from SQLite to a real PostgreSQL
(tests/pgcluster.py) serves the same registry, and a copy that does not match is refused."""

import re

import psycopg
import requests

from appliance.protocol import registry, signing
from appliance.registry_builder import package_key
from storage import open_store
from tests.driver import erlang_package
from tests.procserver import ServerProcess
from tests.test_cli import run


def init_with_packages(tmp_path):
    init = run(tmp_path, "init", "--admin", "root", "--org", "acme")
    assert init.exit_code == 0, init.output
    keys = {kind: re.search(rf"{kind} key:\s+([0-9a-f]{{32}})", init.output).group(1) for kind in ("Repository", "API")}
    tarballs = []
    for name, version, deps in (("base", "1.0.0", ()), ("base", "1.1.0", ()), ("app", "0.1.0", (("base", "~> 1.0"),))):
        path = tmp_path / f"{name}-{version}.tar"
        path.write_bytes(erlang_package(name, version, requirements=[
            {"name": dep, "app": dep, "requirement": req, "optional": False} for dep, req in deps]))
        tarballs.append(str(path))
    imported = run(tmp_path, "import", "acme", *tarballs)
    assert imported.exit_code == 0, imported.output
    assert run(tmp_path, "user", "create", "carol", "--password", "carol-password-1").exit_code == 0
    return keys


def table_counts(url):
    with psycopg.connect(url) as conn:
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def test_copy_to_postgresql_proves_itself_and_the_appliance_serves_from_it(tmp_path, postgres, monkeypatch):
    monkeypatch.delenv("HEXVAULT_DATABASE_URL", raising=False)
    keys = init_with_packages(tmp_path)
    url = postgres.create_database("copy")

    copied = run(tmp_path, "db", "copy", "--to", url)
    assert copied.exit_code == 0, copied.output
    assert re.search(r"^release: 3 rows copied, 3 in the target$", copied.output, re.M)
    assert re.search(r"^user: 2 rows copied", copied.output, re.M)
    # names, versions, packages/base, packages/app
    assert "4 registry files rebuilt from the copy are byte-identical" in copied.output
    counts = table_counts(url)
    assert counts["release"] == 3 and counts["package"] == 2 and counts["requirement"] == 1 and counts["user"] == 2

    again = run(tmp_path, "db", "copy", "--to", url)
    assert again.exit_code == 1 and "is not empty" in again.output

    server = ServerProcess(tmp_path / "data", env={"HEXVAULT_DATABASE_URL": url}).start()
    try:
        auth = {"authorization": keys["Repository"]}
        pem = requests.get(f"{server.url}/repos/acme/public_key", timeout=10).content
        names = requests.get(f"{server.url}/repos/acme/names", headers=auth, timeout=10)
        assert names.status_code == 200
        decoded = registry.decode_names(registry.decode_signed(names.content, signing.load_public_key(pem)), "acme")
        assert [p["name"] for p in decoded["packages"]] == ["app", "base"]
        # New rows get new ids: the sequences were moved past the copied ones.
        published = requests.post(f"{server.url}/api/repos/acme/packages/extra/releases",
                                  data=erlang_package("extra", "1.0.0"), timeout=30,
                                  headers={"authorization": keys["API"], "content-type": "application/octet-stream"})
        assert published.status_code == 201, published.text
        tar = requests.get(f"{server.url}/repos/acme/tarballs/extra-1.0.0.tar", headers=auth, timeout=10)
        assert tar.status_code == 200
    finally:
        server.stop()
    assert table_counts(url)["release"] == 4


def test_a_copy_whose_registry_files_do_not_match_is_refused(tmp_path, postgres, monkeypatch):
    monkeypatch.delenv("HEXVAULT_DATABASE_URL", raising=False)
    init_with_packages(tmp_path)
    store = open_store(tmp_path / "data" / "blobs")
    stored = store.get(package_key("acme", "base"))
    store.put(package_key("acme", "base"), stored[:-1] + bytes([stored[-1] ^ 1]))  # one bit off
    copied = run(tmp_path, "db", "copy", "--to", postgres.create_database("bad"))
    assert copied.exit_code == 1
    assert "registry/acme/packages/base" in copied.output or "packages/base" in copied.output
    assert "differs from the stored file" in copied.output
