"""The air-gapped hex.pm mirror: the bundle script against a fake upstream signed with a test key,
import through the real drop folder, /mirror/hexpm served byte for byte, real rebar3 through it."""

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest
from click.testing import CliRunner

from appliance import audit, backup, importer
from appliance.cli import main
from appliance.protocol import hexpm, signing
from tests.fake_hexpm import FakeHexpm
from tests.driver import erlang_package
from tests.rebar3 import REBAR3, rebar3_compile, run_erlang

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "hexpm_bundle.py")
UPSTREAM = {
    "upa": [("1.0.0", [("upb", "~> 2.0")])],
    "upb": [("2.0.0", []), ("2.1.0", [])],
    "unrelated": [("0.1.0", [])],
}


def load_script():
    spec = importlib.util.spec_from_file_location("hexpm_bundle", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def upstream(hv, tmp_path):
    """The fake hex.pm, and the appliance configured to trust its key as hex.pm's."""
    with FakeHexpm(tmp_path / "upstream", UPSTREAM) as fake:
        (tmp_path / "hexpm.pem").write_bytes(fake.public_pem)
        hv.runtime.config = hv.runtime.config.with_updates(mirror_public_key=str(tmp_path / "hexpm.pem"))
        yield fake


def run_script(upstream, tmp_path, *args):
    return subprocess.run([sys.executable, SCRIPT, "--repo-url", upstream.url, "--public-key",
                           str(tmp_path / "hexpm.pem"), *args], capture_output=True, text=True, timeout=120)


def make_bundle(upstream, tmp_path, out, *args):
    result = run_script(upstream, tmp_path, "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    return out


def members(bundle):
    with tarfile.open(bundle) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def drop(hv, bundle):
    folder = hv.runtime.config.import_path / "hexpm"
    folder.mkdir(parents=True, exist_ok=True)
    os.replace(bundle, folder / bundle.name)
    return importer.scan(hv.runtime, settle_seconds=0.01)


def get(hv, path, key=None, **headers):
    if key is not False:
        headers["authorization"] = key or hv.repo_key
    return hv.http.get(f"{hv.url}/mirror/hexpm/{path}", headers=headers)


def test_bundle_resolves_the_closure_and_is_served_byte_for_byte(hv, upstream, tmp_path):
    bundle = make_bundle(upstream, tmp_path, tmp_path / "one.tar", "upa")
    files = members(bundle)
    assert sorted(files) == ["manifest.json", "packages/upa", "packages/upb", "public_key",
                             "tarballs/upa-1.0.0.tar", "tarballs/upb-2.1.0.tar"]  # newest match of ~> 2.0
    assert json.loads(files["manifest.json"])["packages"] == {"upa": ["1.0.0"], "upb": ["2.1.0"]}
    assert [r[1] for r in drop(hv, bundle)] == ["done"]

    served = get(hv, "packages/upb")
    assert served.status_code == 200 and served.content == upstream.file("packages/upb")
    assert "Content-Encoding" not in served.headers and served.headers["ETag"]
    assert get(hv, "packages/upb", **{"If-None-Match": served.headers["ETag"]}).status_code == 304
    assert get(hv, "tarballs/upa-1.0.0.tar").content == upstream.file("tarballs/upa-1.0.0.tar")
    # Open by default (public packages; mix sends no key to a plain HEX_MIRROR), like repo.hex.pm.
    assert get(hv, "packages/upb", key=False).content == upstream.file("packages/upb")
    hv.runtime.config = hv.runtime.config.with_updates(mirror_requires_key=True)
    assert get(hv, "packages/upb", key=False).status_code == 401
    assert get(hv, "packages/upb", key="0" * 32).status_code == 401
    assert get(hv, "tarballs/upa-1.0.0.tar", key=False).status_code == 401
    assert get(hv, "packages/upb").status_code == 200
    for missing in ("packages/unrelated", "tarballs/upb-2.0.0.tar", "names", "versions", "manifest.json",
                    "tarballs/upb-2.0.0%20x.tar", "packages/../keys"):
        assert get(hv, missing).status_code == 404, missing
    entry = audit.entries(action="mirror.import")[0]
    assert entry.details["via"] == "import" and entry.details["records"] == 2


def test_open_mirror_index_files_public_key_and_installs(hv, upstream, tmp_path):
    assert hv.runtime.config.mirror_requires_key is False  # the default
    drop(hv, make_bundle(upstream, tmp_path, tmp_path / "idx.tar", "--with-index", "unrelated"))
    assert get(hv, "names", key=False).content == upstream.file("names")
    assert get(hv, "versions", key=False).content == upstream.file("versions")
    assert get(hv, "installs/hex-1.x.csv", key=False).content == b""
    pem = get(hv, "public_key", key=False).content
    assert signing.fingerprint(signing.load_public_key(pem)) == signing.fingerprint(upstream.key.public_key())


def test_lock_files_pin_versions_and_their_checksums_must_match_upstream(hv, upstream, tmp_path):
    upb = upstream.release("upb", "2.0.0")
    upa = upstream.release("upa", "1.0.0")
    mix_lock = tmp_path / "mix.lock"
    mix_lock.write_text(
        "%{\n"
        f'  "upa": {{:hex, :upa, "1.0.0", "{upa["inner_checksum"].hex()}", [:rebar3], '
        '[{:upb, "~> 2.0", [hex: :upb, repo: "hexpm", optional: false]}], "hexpm", '
        f'"{upa["outer_checksum"].hex()}"}},\n'
        f'  "upb": {{:hex, :upb, "2.0.0", "{upb["inner_checksum"].hex()}", [:rebar3], [], "hexpm"}},\n'
        '  "secret": {:hex, :secret, "0.1.0", "00", [:mix], [], "acme", "00"},\n'
        '  "gitdep": {:git, "https://example.invalid/x.git", "abc", []},\n'
        "}\n")
    result = run_script(upstream, tmp_path, "--out", str(tmp_path / "mix.tar"), "--lock", str(mix_lock))
    assert result.returncode == 0, result.stderr
    assert "skipped secret (repo acme)" in result.stderr
    assert sorted(n for n in members(tmp_path / "mix.tar") if n.startswith("tarballs/")) == [
        "tarballs/upa-1.0.0.tar", "tarballs/upb-2.0.0.tar"]  # the locked 2.0.0 satisfies ~> 2.0

    rebar_lock = tmp_path / "rebar.lock"
    rebar_lock.write_text(
        '{"1.2.0",\n[{<<"upa">>,{pkg,<<"upa">>,<<"1.0.0">>},0},\n {<<"upb">>,{pkg,<<"upb">>,<<"2.0.0">>},1}]}.\n'
        "[\n{pkg_hash,[\n"
        f' {{<<"upa">>, <<"{upa["inner_checksum"].hex().upper()}">>}}]}},\n'
        "{pkg_hash_ext,[\n"
        f' {{<<"upb">>, <<"{"0" * 64}">>}}]}}\n].\n')
    result = run_script(upstream, tmp_path, "--out", str(tmp_path / "rebar.tar"), "--lock", str(rebar_lock))
    assert result.returncode == 1 and not (tmp_path / "rebar.tar").exists()
    assert "upb 2.0.0 has outer checksum 000" in result.stderr


def test_lock_readers_are_tolerant_and_never_evaluate():
    script = load_script()
    pins, skipped = script.read_mix_lock(
        '%{"a_b": {:hex, :a_b, "1.0.0-rc.1", "AB", [:mix], [], "hexpm"},  # a comment\n'
        ' "old": {:hex, :old, "0.1.0", "CD", [:mix], []},\n'
        ' "new": {:hex, :new, "1.0.0", "EF", [:mix], [], "hexpm", "01"},\n'
        ' "sys": {:path, "System.cmd(\\"rm\\", [\\"-rf\\", \\"/\\"])"}}\n')
    assert [(p.name, p.version, p.inner, p.outer) for p in pins] == [
        ("a_b", "1.0.0-rc.1", "AB", None), ("old", "0.1.0", "CD", None), ("new", "1.0.0", "EF", "01")]
    assert skipped == []
    old_style, _ = script.read_rebar_lock('%% old rebar3\n[{<<"x">>,{pkg,<<"x">>,<<"1.0.0">>},0},'
                                          '{<<"g">>,{git,"https://h/g.git",{ref,"abc"}},0}].\n')
    assert [(p.name, p.version) for p in old_style] == [("x", "1.0.0")]
    with pytest.raises(script.BundleError, match="cannot read"):
        script.read_mix_lock('%{"x": {:hex, :x, "1.0.0"} <> File.rm!("/")}')


def test_an_older_record_never_hides_releases_a_newer_bundle_brought(hv, upstream, tmp_path):
    older = make_bundle(upstream, tmp_path, tmp_path / "older.tar", "upb:2.0.0")
    upstream.publish("upb", "2.2.0")
    newer = make_bundle(upstream, tmp_path, tmp_path / "newer.tar", "upb:2.2.0")
    assert [r[1] for r in drop(hv, newer)] == ["done"]
    assert drop(hv, older)[0][1:] == ("done", "mirror: 0 records, 1 new tarballs; kept the stored, fuller "
                                              "records of upb")
    assert get(hv, "packages/upb").content == upstream.file("packages/upb")  # the 3-release record
    for version in ("2.0.0", "2.2.0"):
        assert get(hv, f"tarballs/upb-{version}.tar").content == upstream.file(f"tarballs/upb-{version}.tar")


def rewrite(bundle, change):
    files = members(bundle)
    change(files)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    bundle.write_bytes(buf.getvalue())
    return bundle


def test_altered_or_foreign_bundles_are_refused_with_a_reason_and_nothing_is_stored(hv, upstream, tmp_path):
    def corrupt_tarball(files):
        files["tarballs/upb-2.0.0.tar"] = files["tarballs/upb-2.0.0.tar"][:-10] + b"0" * 10

    def consistent_forgery(files):  # manifest updated too: only the signed checksum catches it
        import hashlib
        files["tarballs/upb-2.0.0.tar"] = upstream.file("tarballs/upb-2.1.0.tar")
        manifest = json.loads(files["manifest.json"])
        manifest["sha256"]["tarballs/upb-2.0.0.tar"] = hashlib.sha256(files["tarballs/upb-2.0.0.tar"]).hexdigest()
        files["manifest.json"] = json.dumps(manifest).encode()

    def extra_member(files):
        files["../../keys/registry-1.pem"] = b"x"

    def deep_manifest(files):  # deeper than Python's json parser recurses
        files["manifest.json"] = b"[" * 100_000 + b"]" * 100_000

    cases = {"corrupt.tar": (corrupt_tarball, "does not match the manifest"),
             "forged.tar": (consistent_forgery, "does not match the outer checksum its signed record gives"),
             "extra.tar": (extra_member, "unexpected member"),
             "deep.tar": (deep_manifest, "manifest.json is unreadable")}
    for name, (change, _reason) in cases.items():
        rewrite(make_bundle(upstream, tmp_path, tmp_path / name, "upb:2.0.0"), change)
        assert [r[1] for r in drop(hv, tmp_path / name)] == ["failed"]
    failed = hv.runtime.config.import_path / "hexpm" / "failed"
    for name, (_change, reason) in cases.items():
        assert reason in (failed / f"{name}.reason").read_text(), name

    # A bundle from an upstream whose key this appliance does not trust (here: hex.pm's real key).
    hv.runtime.config = hv.runtime.config.with_updates(mirror_public_key="")
    assert [r[1] for r in drop(hv, make_bundle(upstream, tmp_path, tmp_path / "foreign.tar", "upb"))] == ["failed"]
    reason = (failed / "foreign.tar.reason").read_text()
    assert "does not verify with the trusted key" in reason and hexpm.PUBLIC_KEY_FINGERPRINT in reason
    assert get(hv, "packages/upb").status_code == 404
    assert not list(hv.runtime.store.list("mirror"))


def test_half_copied_bundles_wait_and_the_cli_imports_without_moving(hv, upstream, tmp_path):
    bundle = make_bundle(upstream, tmp_path, tmp_path / "b.tar", "upa")
    folder = hv.runtime.config.import_path / "hexpm"
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / "b.tar.part"
    part.write_bytes(bundle.read_bytes()[:4096])
    assert importer.scan(hv.runtime, settle_seconds=0.01) == []
    assert get(hv, "packages/upa").status_code == 404

    env = {"HEXVAULT_DATA_DIR": hv.runtime.config.data_dir, "HEXVAULT_CONFIG": "",
           "HEXVAULT_MIRROR_PUBLIC_KEY": str(tmp_path / "hexpm.pem")}
    result = CliRunner().invoke(main, ["import", "hexpm", str(bundle)], env=env)
    assert result.exit_code == 0, result.output
    assert "mirror: 2 records, 2 new tarballs" in result.output and bundle.exists()
    assert get(hv, "packages/upa").content == upstream.file("packages/upa")


def test_mirror_files_survive_backup_and_restore(hv, upstream, tmp_path):
    drop(hv, make_bundle(upstream, tmp_path, tmp_path / "b.tar", "--with-index", "upa"))
    before = {k: hv.runtime.store.get(k) for k in hv.runtime.store.list("mirror")}
    assert len(before) == 6
    backup.backup(hv.runtime, tmp_path / "backup")
    from appliance.db import database

    database.close()
    env = {"HEXVAULT_DATA_DIR": str(tmp_path / "restored"), "HEXVAULT_CONFIG": ""}
    result = CliRunner().invoke(main, ["restore", str(tmp_path / "backup")], env=env)
    assert result.exit_code == 0, result.output
    from storage import open_store

    restored = open_store(tmp_path / "restored" / "blobs")
    assert {k: restored.get(k) for k in restored.list("mirror")} == before


@pytest.mark.skipif(REBAR3 is None, reason="rebar3 is not installed")
def test_rebar3_fetches_public_packages_through_the_mirror_with_upstream_signature(hv, upstream, tmp_path):
    drop(hv, make_bundle(upstream, tmp_path, tmp_path / "deps.tar", "upa"))
    work = tmp_path / "client"
    work.mkdir()
    mirror_url = f"{hv.url}/mirror/hexpm"
    # rebar3 3.19 overrides repo_url of the repo named hexpm with HEX_CDN (rebar_hex_repos
    # maybe_override_default_repo_url); {rebar_packages_cdn, URL} in rebar.config did not take.
    result = rebar3_compile(work, repo_name="hexpm", repo_url=mirror_url, public_key_pem=upstream.public_pem.decode(),
                            repo_key=hv.repo_key, deps=[("upa", "1.0.0")], extra_env={"HEX_CDN": mirror_url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_erlang(work, 'io:format("~s", [upb:greet()])').stdout == "hello from upb 2.1.0"
    lock = (work / "project" / "rebar.lock").read_text()
    assert upstream.release("upb", "2.1.0")["outer_checksum"].hex().upper() in lock

    # The same client with a key that does not verify hex.pm's (test) signature gets nothing.
    other = signing.public_key_pem(signing.generate_private_key()).decode()
    work2 = tmp_path / "client2"
    work2.mkdir()
    refused = rebar3_compile(work2, repo_name="hexpm", repo_url=mirror_url, public_key_pem=other,
                             repo_key=hv.repo_key, deps=[("upa", "1.0.0")], extra_env={"HEX_CDN": mirror_url})
    assert refused.returncode != 0
    assert not (work2 / "project" / "_build" / "default" / "lib" / "upa").exists()


@pytest.mark.skipif(REBAR3 is None, reason="rebar3 is not installed")
def test_rebar3_gets_hex_pm_style_organization_repos_through_the_mirror(hv, upstream, tmp_path):
    """A `hexpm:acme` repo, as rebar3 and mix name hex.pm organizations, lives at
    <hexpm URL>/repos/acme: with hexpm pointed at the mirror, public and private deps resolve in
    one project, each verified with its own key and origin."""
    drop(hv, make_bundle(upstream, tmp_path, tmp_path / "deps.tar", "upa"))
    inhouse = erlang_package("inhouse", "1.0.0")
    assert hv.publish(inhouse).status_code == 201
    work = tmp_path / "client"
    work.mkdir()
    mirror_url = f"{hv.url}/mirror/hexpm"
    org_repo = {"name": "hexpm:acme", "repo_key": hv.repo_key, "repo_public_key": hv.public_key_pem}
    result = rebar3_compile(work, repo_name="hexpm", repo_url=mirror_url, public_key_pem=upstream.public_pem.decode(),
                            repo_key=hv.repo_key, deps=[("upa", "1.0.0"), ("inhouse", "1.0.0")],
                            extra_env={"HEX_CDN": mirror_url}, extra_repos=[org_repo])
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_erlang(work, 'io:format("~s ~s", [upb:greet(), inhouse:greet()])').stdout == \
        "hello from upb 2.1.0 hello from inhouse 1.0.0"
    lock = (work / "project" / "rebar.lock").read_text()
    assert hashlib.sha256(inhouse).hexdigest().upper() in lock  # rebar3 locks no repo name, but the hash

    # Hexvault's key is not hex.pm's: an org repo left to inherit hexpm's public key refuses it.
    work2 = tmp_path / "client2"
    work2.mkdir()
    inherits = {"name": "hexpm:acme", "repo_key": hv.repo_key}
    refused = rebar3_compile(work2, repo_name="hexpm", repo_url=mirror_url, public_key_pem=upstream.public_pem.decode(),
                             repo_key=hv.repo_key, deps=[("inhouse", "1.0.0")],
                             extra_env={"HEX_CDN": mirror_url}, extra_repos=[inherits])
    assert refused.returncode != 0
    assert not (work2 / "project" / "_build" / "default" / "lib" / "inhouse").exists()
