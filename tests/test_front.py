"""The TLS front: Debian's real nginx, started from the site `hexvault front config` renders,
before a live Hexvault with a test CA. TLS versions, the plain-HTTP refusal, X-Accel-Redirect
for authorized tarballs and docs, the open mirror served from disk with Hexvault's ETags, and
rebar3 fetching over https with verification on."""

import hashlib
import subprocess

import pytest
import requests

from appliance import audit, keys, mirror, orgs, packages
from appliance.config import load_config
from appliance.db import database
from appliance.front import ACCEL_LOCATION, ACCEL_REQUEST_HEADER, ACCEL_REQUEST_VALUE
from appliance.runtime import initialize, open_runtime
from tests.conftest import LiveServer, make_world
from tests.driver import Driver, erlang_package
from tests.nginxfront import NGINX, NginxFront, free_port, make_tls, share_blobs_with_service, world_dir
from tests.rebar3 import REBAR3, rebar3_compile, run_erlang
from tests.webclient import WebSession

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/test.sh installs it)")


class Fronted:
    """A live Hexvault on 127.0.0.1 behind a live nginx front, and a driver through the front."""

    def __init__(self, mirror_requires_key=False):
        self.root = world_dir("hvfront")
        https_port = free_port()
        base = f"https://localhost:{https_port}"
        self.tls = make_tls(self.root / "tls")
        config = load_config(environ={}, data_dir=str(self.root / "data"), bcrypt_rounds=4, base_url=base,
                             trusted_proxy=True, secure_cookies=True, mirror_requires_key=mirror_requires_key,
                             tls_ca_file=self.tls.ca_cert)
        initialize(config)
        self.runtime = open_runtime(config)
        database.connect(reuse_if_open=True)
        self.world = make_world(self.runtime)
        self.server = LiveServer().start(__import__("appliance").create_app(config, self.runtime), config)
        share_blobs_with_service(config.blob_path)
        upstream = self.server.url.removeprefix("http://")
        self.front = NginxFront(config, upstream, self.tls, https_port=https_port).start()
        self.hv = Driver(self.front.url, self.runtime, **self.world)
        self.hv.http.verify = self.tls.ca_cert
        self.hv.http.trust_env = False  # REQUESTS_CA_BUNDLE would replace our CA
        self.direct = Driver(self.server.url, self.runtime, **self.world)

    def close(self):
        self.front.stop()
        self.server.stop()
        if not database.is_closed():
            database.close()


@pytest.fixture
def fronted():
    f = Fronted()
    yield f
    f.close()


def s_client(port, *args):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                           "-cipher", "DEFAULT:@SECLEVEL=0", *args],
                          input="", capture_output=True, text=True, timeout=30)


def test_only_tls_12_and_13_are_offered(fronted):
    port = fronted.front.https_port
    for version in ("-tls1_2", "-tls1_3"):
        result = s_client(port, version)
        assert result.returncode == 0 and "BEGIN CERTIFICATE" in result.stdout, result.stderr[-500:]
    for version in ("-tls1", "-tls1_1"):
        result = s_client(port, version)
        assert result.returncode != 0, f"{version} was accepted"
        assert "BEGIN CERTIFICATE" not in result.stdout


def test_an_untrusted_certificate_is_refused_by_a_verifying_client(fronted):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{fronted.front.url}/repos/acme/names", headers={"authorization": fronted.hv.repo_key})


def test_plain_http_refuses_client_paths_and_redirects_browsers(fronted):
    http = fronted.front.http_url
    for path in ("/api/users/me", "/repos/acme/names", "/mirror/hexpm/names"):
        response = requests.get(http + path, headers={"authorization": fronted.hv.api_key}, allow_redirects=False)
        assert response.status_code == 403, path
        assert "Location" not in response.headers
        assert "HTTPS only" in response.text and fronted.front.url in response.text
    response = requests.get(http + "/admin/login", allow_redirects=False)
    assert response.status_code == 308
    assert response.headers["Location"] == fronted.front.url + "/admin/login"


def test_https_answers_carry_hsts(fronted):
    response = fronted.hv.api("GET", "users/me")
    assert response.status_code == 200 and response.term["username"] == "admin"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_publish_and_fetch_through_the_front(fronted):
    hv = fronted.hv
    data = erlang_package("hello", "1.0.0")
    assert hv.publish(data).status_code == 201
    assert [r["version"] for r in hv.registry_package("hello")["releases"]] == ["1.0.0"]
    response = hv.repo("tarballs/hello-1.0.0.tar")
    assert response.status_code == 200 and response.content == data
    outer = hashlib.sha256(data).hexdigest()
    assert response.headers["ETag"] == f'"{outer}"'
    assert response.headers["Cache-Control"] == packages.TARBALL_CACHE
    assert "Content-Encoding" not in response.headers
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert hv.repo("tarballs/hello-1.0.0.tar", headers={"If-None-Match": f'"{outer}"'}).status_code == 304


def test_hexvault_hands_tarballs_and_docs_to_the_front_by_path(fronted):
    hv, direct = fronted.hv, fronted.direct
    data = erlang_package("hello", "1.0.0")
    assert hv.publish(data).status_code == 201
    asked = {ACCEL_REQUEST_HEADER: ACCEL_REQUEST_VALUE}
    response = direct.repo("tarballs/hello-1.0.0.tar", headers=asked)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["X-Accel-Redirect"] == ACCEL_LOCATION + packages.tarball_key(hashlib.sha256(data).hexdigest())
    # registry files are replaced in place: never handed over by path
    assert "X-Accel-Redirect" not in direct.repo("packages/hello", headers=asked).headers
    # not asked: the bytes themselves
    assert direct.repo("tarballs/hello-1.0.0.tar").content == data


def test_a_member_downloads_a_tarball_from_the_package_page_through_the_front(fronted):
    """The web UI's download is handed to nginx by path like a client's, its file name kept."""
    data = erlang_package("hello", "1.0.0")
    assert fronted.hv.publish(data).status_code == 201
    web = WebSession(fronted.front.url)
    web.http.verify, web.http.trust_env = fronted.tls.ca_cert, False
    assert web.login().status_code == 200
    response = web.get("/admin/orgs/acme/packages/hello/1.0.0/download")
    assert response.status_code == 200 and response.content == data
    assert response.headers["Content-Disposition"] == 'attachment; filename="hello-1.0.0.tar"'
    assert response.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'


def test_a_key_revoked_one_request_earlier_gets_no_bytes_from_the_front(fronted):
    hv = fronted.hv
    data = erlang_package("hello", "1.0.0")
    assert hv.publish(data).status_code == 201
    row, secret = keys.create(fronted.runtime.app_secret, "ci", [["repository", "acme"]], organization=hv.org)
    assert hv.repo("tarballs/hello-1.0.0.tar", key=secret).content == data
    keys.revoke(row)
    response = hv.repo("tarballs/hello-1.0.0.tar", key=secret)
    assert response.status_code == 401 and data not in response.content


def test_the_open_mirror_is_served_from_disk_with_hexvaults_etags(fronted):
    rt = fronted.runtime
    files = {"names": b"signed names", "packages/upa": b"signed upa record",
             "tarballs/upa-1.0.0.tar": erlang_package("upa", "1.0.0")}
    for path, data in files.items():
        rt.store.put(mirror.key_for(path), data)
    share_blobs_with_service(rt.config.blob_path)
    for path, data in files.items():
        via_front = fronted.hv.http.get(f"{fronted.front.url}/mirror/hexpm/{path}")
        direct = requests.get(f"{fronted.server.url}/mirror/hexpm/{path}")
        assert via_front.status_code == direct.status_code == 200, path
        assert via_front.content == direct.content == data
        assert via_front.headers["ETag"] == direct.headers["ETag"], path
        assert via_front.headers["Cache-Control"] == direct.headers["Cache-Control"]
        assert via_front.headers["Content-Type"] == "application/octet-stream"
        assert via_front.headers["Strict-Transport-Security"].startswith("max-age=")
        again = fronted.hv.http.get(f"{fronted.front.url}/mirror/hexpm/{path}",
                                    headers={"If-None-Match": via_front.headers["ETag"]})
        assert again.status_code == 304
    # nginx serves these itself: Hexvault never saw the request
    access = (fronted.front.dir / "access.log").read_text()
    assert "/mirror/hexpm/packages/upa" in access
    # a file the mirror does not hold gets Hexvault's own answer, not nginx's error page
    missing = fronted.hv.http.get(f"{fronted.front.url}/mirror/hexpm/packages/nothere")
    assert missing.status_code == 404 and "<html>" not in missing.text


def test_with_mirror_requires_key_the_mirror_goes_through_hexvault():
    f = Fronted(mirror_requires_key=True)
    try:
        f.runtime.store.put(mirror.key_for("names"), b"signed names")
        share_blobs_with_service(f.runtime.config.blob_path)
        assert f.hv.http.get(f"{f.front.url}/mirror/hexpm/names").status_code == 401
        assert f.hv.http.get(f"{f.front.url}/mirror/hexpm/names",
                             headers={"authorization": f.hv.repo_key}).content == b"signed names"
    finally:
        f.close()


@pytest.mark.skipif(REBAR3 is None, reason="rebar3 is not installed (scripts/test.sh installs it)")
def test_rebar3_fetches_over_https_with_the_company_ca(fronted, tmp_path):
    hv = fronted.hv
    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201

    def fetch(workdir, cacerts):
        return rebar3_compile(workdir, repo_name="acme", repo_url=f"{hv.url}/repos/acme",
                              public_key_pem=hv.public_key_pem, repo_key=hv.repo_key, deps=[("hello", "0.1.0")],
                              api_url=f"{hv.url}/api", extra_global=cacerts)

    untrusted = fetch(tmp_path / "untrusted", "")
    assert untrusted.returncode != 0
    assert not (tmp_path / "untrusted" / "project" / "_build" / "default" / "lib" / "hello").exists()
    trusted = fetch(tmp_path / "trusted", f'{{ssl_cacerts_path, "{fronted.tls.ca_cert}"}}.\n')
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    out = run_erlang(tmp_path / "trusted", 'io:format("~s", [hello:module_info(module)])')
    assert out.stdout == "hello"


def test_front_config_refuses_a_plain_http_base_url(tmp_path):
    from click.testing import CliRunner

    from appliance.cli import main

    env = {"HEXVAULT_DATA_DIR": str(tmp_path / "data"), "HEXVAULT_CONFIG": "", "HEXVAULT_BASE_URL": "http://hex.corp"}
    result = CliRunner().invoke(main, ["front", "config", "--cert", "c.pem", "--key", "k.pem"], env=env)
    assert result.exit_code == 1 and "https://" in result.output
    env["HEXVAULT_BASE_URL"] = "https://hex.corp"
    result = CliRunner().invoke(main, ["front", "config", "--cert", "c.pem", "--key", "k.pem"], env=env)
    assert result.exit_code == 0 and "server_name hex.corp;" in result.output
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in result.output


def test_the_client_setup_commands_trust_the_ca_by_its_fingerprint(fronted, tmp_path):
    """What `hexvault org client-setup` tells a developer to type, typed: fetch the CA, check its
    fingerprint, then fetch the public key with it."""
    from click.testing import CliRunner

    from appliance.cli import main
    from appliance.front.selfsigned import fingerprint
    from cryptography import x509

    config = fronted.runtime.config
    env = {"HEXVAULT_DATA_DIR": str(config.data_path), "HEXVAULT_CONFIG": "", "HEXVAULT_BASE_URL": config.base_url,
           "HEXVAULT_TLS_CA_FILE": config.tls_ca_file}
    text = CliRunner().invoke(main, ["org", "client-setup", "acme"], env=env).output
    ca_line = next(line for line in text.splitlines() if line.startswith("curl -fsSk"))
    key_line = next(line for line in text.splitlines() if line.startswith("curl -fsS --cacert"))
    assert 'mix hex.config cacerts_path "$PWD/hexvault-ca.pem"' in text
    assert '{ssl_cacerts_path, "/ABSOLUTE/PATH/hexvault-ca.pem"}.' in text
    with open(config.tls_ca_file, "rb") as fh:
        expected = fingerprint(x509.load_pem_x509_certificate(fh.read()))
    assert expected in ca_line
    env = {"PATH": "/usr/bin:/bin"}
    fetched = subprocess.run(["bash", "-c", ca_line.split("   #")[0]], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=30)
    assert fetched.returncode == 0, fetched.stderr
    assert f"Fingerprint={expected}" in fetched.stdout
    key = subprocess.run(["bash", "-c", key_line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert key.returncode == 0, key.stderr
    assert (tmp_path / "acme.pem").read_text() == fronted.hv.public_key_pem
    with open(config.tls_ca_file, "rb") as fh:
        assert (tmp_path / "hexvault-ca.pem").read_bytes() == fh.read()


def test_without_a_company_ca_there_is_no_ca_file_and_no_ca_step(hv):
    assert hv.http.get(f"{hv.url}/ca.pem").status_code == 404
    from click.testing import CliRunner

    from appliance.cli import main

    config = hv.runtime.config
    env = {"HEXVAULT_DATA_DIR": str(config.data_path), "HEXVAULT_CONFIG": ""}
    text = CliRunner().invoke(main, ["org", "client-setup", "acme"], env=env).output
    assert "hexvault-ca.pem" not in text and "curl -fsS -o acme.pem" in text


def test_the_site_reaches_a_hexvault_listening_on_every_address_on_loopback():
    """`host = "0.0.0.0"` (or "::") is where Hexvault listens, not an address nginx can connect
    to: the site names loopback instead, bracketed for IPv6; nginx accepts it."""
    tls = make_tls(world_dir("hvfrontaddr") / "tls")
    for host, upstream in (("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("10.0.0.2", "10.0.0.2"),
                           ("fe80::1", "[fe80::1]")):
        config = load_config(environ={}, data_dir=str(world_dir("hvfrontaddr") / "data"), host=host, port=8123,
                             base_url="https://hex.corp")
        site = NginxFront(config, None, tls).site
        assert f"server {upstream}:8123 max_fails=1 fail_timeout=5s;" in site, site[:400]
