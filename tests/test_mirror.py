"""The air-gapped hex.pm mirror: bundle script against a fake upstream, import, real rebar3."""

import io
import os
import subprocess
import sys
import tarfile

import pytest

from appliance import importer
from tests.fake_hexpm import FakeHexpm
from tests.rebar3 import REBAR3, rebar3_compile, run_erlang

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "hexpm_bundle.py")
UPSTREAM = {
    "upa": [("1.0.0", [("upb", "~> 2.0")])],
    "upb": [("2.0.0", []), ("2.1.0", [])],
    "unrelated": [("0.1.0", [])],
}


@pytest.fixture
def upstream(tmp_path):
    with FakeHexpm(tmp_path / "upstream", UPSTREAM) as fake:
        (tmp_path / "hexpm.pem").write_bytes(fake.public_pem)
        yield fake


def make_bundle(upstream, tmp_path, out, *args):
    result = subprocess.run([sys.executable, SCRIPT, "--repo-url", upstream.url, "--public-key",
                             str(tmp_path / "hexpm.pem"), "--out", str(out), *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return out


def drop(hv, bundle):
    folder = hv.runtime.config.import_path / "hexpm"
    folder.mkdir(parents=True, exist_ok=True)
    os.replace(bundle, folder / bundle.name)
    return importer.scan(hv.runtime, settle_seconds=0.01)


def test_bundle_resolves_the_closure_and_keeps_signed_records_byte_for_byte(hv, upstream, tmp_path):
    bundle = make_bundle(upstream, tmp_path, tmp_path / "one.tar", "upa")
    with tarfile.open(bundle) as tar:
        names = sorted(tar.getnames())
        record = tar.extractfile("packages/upb").read()
    assert names == ["manifest.json", "packages/upa", "packages/upb", "public_key", "tarballs/upa-1.0.0.tar",
                     "tarballs/upb-2.1.0.tar"]
    assert record == (upstream.root / "packages" / "upb").read_bytes()
    assert [r[1] for r in drop(hv, bundle)] == ["done"]
    served = hv.http.get(f"{hv.url}/mirror/hexpm/packages/upb", headers={"authorization": hv.repo_key})
    assert served.status_code == 200 and served.content == record and "ETag" in served.headers
    assert hv.http.get(f"{hv.url}/mirror/hexpm/packages/upb").status_code == 401
    assert hv.http.get(f"{hv.url}/mirror/hexpm/packages/unrelated",
                       headers={"authorization": hv.repo_key}).status_code == 404


def test_later_bundles_add_releases(hv, upstream, tmp_path):
    drop(hv, make_bundle(upstream, tmp_path, tmp_path / "one.tar", "upa"))
    assert hv.http.get(f"{hv.url}/mirror/hexpm/tarballs/upb-2.0.0.tar",
                       headers={"authorization": hv.repo_key}).status_code == 404
    drop(hv, make_bundle(upstream, tmp_path, tmp_path / "two.tar", "upb:2.0.0"))
    response = hv.http.get(f"{hv.url}/mirror/hexpm/tarballs/upb-2.0.0.tar", headers={"authorization": hv.repo_key})
    assert response.content == (upstream.root / "tarballs" / "upb-2.0.0.tar").read_bytes()


def test_tampered_bundle_is_refused_and_nothing_is_served(hv, upstream, tmp_path):
    bundle = make_bundle(upstream, tmp_path, tmp_path / "bad.tar", "upb:2.0.0")
    members = {}
    with tarfile.open(bundle) as tar:
        for m in tar:
            members[m.name] = tar.extractfile(m).read()
    members["tarballs/upb-2.0.0.tar"] = members["tarballs/upb-2.0.0.tar"][:-10] + b"0" * 10
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    bundle.write_bytes(buf.getvalue())
    assert [r[1] for r in drop(hv, bundle)] == ["failed"]
    reason = (hv.runtime.config.import_path / "hexpm" / "failed" / "bad.tar.reason").read_text()
    assert "does not match the manifest" in reason
    assert hv.http.get(f"{hv.url}/mirror/hexpm/packages/upb", headers={"authorization": hv.repo_key}).status_code == 404


@pytest.mark.skipif(REBAR3 is None, reason="rebar3 is not installed")
def test_rebar3_fetches_public_packages_through_the_mirror_with_upstream_signature(hv, upstream, tmp_path):
    drop(hv, make_bundle(upstream, tmp_path, tmp_path / "deps.tar", "upa"))
    work = tmp_path / "client"
    work.mkdir()
    mirror_url = f"{hv.url}/mirror/hexpm"
    # rebar3 takes the hexpm repo's URL from HEX_CDN (or rebar_packages_cdn), not from repo_url.
    result = rebar3_compile(work, repo_name="hexpm", repo_url=mirror_url, public_key_pem=upstream.public_pem.decode(),
                            repo_key=hv.repo_key, deps=[("upa", "1.0.0")], extra_env={"HEX_CDN": mirror_url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_erlang(work, 'io:format("~s", [upb:greet()])').stdout == "hello from upb 2.1.0"
