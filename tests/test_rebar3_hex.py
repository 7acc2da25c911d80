"""The real rebar3_hex plugin (7.0.11 and 7.2.0, from ../shared/clients) publishing an Erlang
library with edoc docs into an organization, replacing and retiring it, listing owners and
asking whoami, all with the commands and rebar.config entry the README prints
(clientsetup); then rebar3 and mix fetch what it published with verification on.

rebar3_hex reports "Published" and exits 0 for statuses it does not know (400, 409, 413), so
every case checks the server's state, never the plugin's words alone.
"""

import hashlib
import io
import random
import tarfile
from pathlib import Path

import pytest

from appliance import accounts, clientsetup, create_app, keys, orgs, registry_builder, serving
from appliance.models import SigningKey
from tests.conftest import LiveServer
from tests.driver import erlang_package
from tests.mixclient import MixClient, mix_project, requires_hex, run_elixir
from tests.rebar3 import REBAR3_HEX_VERSIONS, Rebar3HexProject, rebar3_hex_missing, rebar3_project, run_erlang

ORG = "beta"  # not the default organization (acme): a publish that ignores --repo lands elsewhere


@pytest.fixture(params=REBAR3_HEX_VERSIONS)
def version(request):
    reason = rebar3_hex_missing(request.param)
    if reason:
        pytest.skip(reason)
    return request.param


@pytest.fixture
def setup(hv):
    """The README's set-up for ORG: its repository key, the admin's api:write key for
    HEX_API_KEY and an api:read key as read_key."""
    org = orgs.create(ORG)
    orgs.add_member(org, hv.admin, "admin")
    registry_builder.ensure_index(hv.runtime, org)
    _row, repo_key = keys.create(hv.runtime.app_secret, f"{ORG}-read", [["repository", ORG]], organization=org)
    _row, read_key = keys.create(hv.runtime.app_secret, "admin-read", [["api", "read"]], user=hv.admin)
    signing = SigningKey.current()
    return clientsetup.for_org(hv.url, ORG, signing.public_pem, signing.fingerprint, repo_key=repo_key,
                               api_key=hv.api_key, read_key=read_key)


@pytest.fixture
def project(version, setup, tmp_path):
    return Rebar3HexProject(tmp_path / "publisher", version, setup.rebar3_config,
                            clientsetup.REBAR3_HEX_PROJECT_CONFIG)


def publish(project, setup, *, replace=False):
    # The README's command, answering the plugin's "Proceed?" as a user would.
    return project.run(setup.rebar3_publish(replace=replace), input="Y\n")


def served_release(hv, setup, version="0.1.0", name="erl_lib"):
    """The release as the signed registry of ORG lists it (signature and origin checked)."""
    record = hv.registry_package(name, org=ORG, key=setup.repo_key)
    return next(r for r in record["releases"] if r["version"] == version)


def served_tarball(hv, setup, version="0.1.0", name="erl_lib"):
    response = hv.repo(f"tarballs/{name}-{version}.tar", org=ORG, key=setup.repo_key)
    assert response.status_code == 200
    return response.content


def packaged_source(data, name="erl_lib"):
    """src/NAME.erl as it sits inside a package tarball."""
    with tarfile.open(fileobj=io.BytesIO(data)) as outer:
        contents = outer.extractfile("contents.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(contents), mode="r:gz") as inner:
        return inner.extractfile(f"src/{name}.erl").read()


def test_publish_with_docs_into_the_organization_then_rebar3_fetches_it(hv, setup, project, tmp_path):
    result = publish(project, setup)
    assert result.returncode == 0, result.output
    assert "Published erl_lib 0.1.0" in result.output and "Published docs for erl_lib 0.1.0" in result.output
    # The server holds the library's sources, in ORG and not in the default organization.
    served = served_tarball(hv, setup)
    assert packaged_source(served) == (project.dir / "src" / "erl_lib.erl").read_bytes()
    assert served_release(hv, setup)["outer_checksum"] == hashlib.sha256(served).digest()
    assert hv.repo("packages/erl_lib", org="acme").status_code == 404
    release = hv.api("GET", f"repos/{ORG}/packages/erl_lib/releases/0.1.0").term
    assert release["has_docs"] is True and release["publisher"]["username"] == "admin"
    docs = hv.repo("docs/erl_lib-0.1.0.tar.gz", org=ORG, key=setup.repo_key)
    assert docs.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(docs.content)) as tar:
        assert b"Says hello." in tar.extractfile("erl_lib.html").read()  # edoc's page for the module

    fetched = rebar3_project(tmp_path / "rebar3", setup.rebar3_config, [("erl_lib", "0.1.0")])
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert run_erlang(tmp_path / "rebar3", 'io:format("~s", [erl_lib:greet()])').stdout == "hello from erl_lib 0.1.0"
    lock = (tmp_path / "rebar3" / "project" / "rebar.lock").read_text()
    assert hashlib.sha256(served).hexdigest().upper() in lock


@requires_hex("2.5.1")
def test_mix_fetches_and_compiles_what_rebar3_hex_published(hv, setup, project, hex_installs, tmp_path):
    assert publish(project, setup).returncode == 0
    assert served_release(hv, setup)["version"] == "0.1.0"
    # A fresh machine with Hex 2.5.1 follows the set-up page: save the key, add the repo.
    client = MixClient(tmp_path / "mix", "2.5.1", hex_installs)
    for line in (setup.save_public_key, setup.mix_repo_add):
        assert client.shell(line).ok, line
    consumer = mix_project(tmp_path / "mix", "consumer", deps=[setup.mix_dep.replace("my_package", "erl_lib")],
                           docs=False)
    for step in ("deps.get", "compile"):
        done = client.mix(step, cwd=consumer)
        assert done.ok, str(done)
    greeted = run_elixir(client, consumer, "IO.puts(:erl_lib.greet())")
    assert greeted.ok and greeted.output.strip().splitlines()[-1] == "hello from erl_lib 0.1.0", str(greeted)
    lock = (consumer / "mix.lock").read_text()
    assert hashlib.sha256(served_tarball(hv, setup)).hexdigest() in lock and f'"{ORG}"' in lock


def test_publishing_a_version_again_needs_replace(hv, setup, project):
    assert publish(project, setup).returncode == 0
    first = served_tarball(hv, setup)
    assert b"hello from erl_lib 0.1.0" in packaged_source(first)
    project.write_app("0.1.0", greeting="hello again")

    refused = publish(project, setup)
    assert refused.returncode != 0 and "must include the --replace flag" in refused.output, refused.output
    assert served_tarball(hv, setup) == first

    replaced = publish(project, setup, replace=True)
    assert replaced.returncode == 0, replaced.output
    assert "Published erl_lib 0.1.0" in replaced.output
    swapped = served_tarball(hv, setup)
    assert b"hello again" in packaged_source(swapped)
    assert served_release(hv, setup)["outer_checksum"] == hashlib.sha256(swapped).digest()
    assert hv.api("GET", f"repos/{ORG}/packages/erl_lib/releases/0.1.0").term["has_docs"] is True


def test_retire_marks_the_release_in_the_signed_registry(hv, setup, project):
    assert hv.publish(erlang_package("erl_lib", "0.1.0"), org=ORG).status_code == 201
    result = project.run(setup.rebar3_retire("erl_lib", "0.1.0"))
    assert result.returncode == 0, result.output
    assert "Successfully retired package erl_lib 0.1.0" in result.output
    assert served_release(hv, setup)["retired"] == {"reason": "security", "message": "CVE-..."}
    assert hv.api("GET", f"repos/{ORG}/packages/erl_lib").term["retirements"] == {
        "0.1.0": {"reason": "security", "message": "CVE-..."}}


def test_whoami_and_owner_list_use_read_key_and_show_the_profile(hv, setup, project):
    # A user with no e-mail or full name: users/me leaves them out, as hexpm does, and
    # rebar3_hex prints its own "private" (it crashed on the nulls Hexvault once sent).
    bare = project.run(setup.rebar3_whoami)
    assert bare.returncode == 0, bare.output
    assert [ORG, "admin", "private", "private"] in [line.split() for line in bare.output.splitlines()]

    accounts.update_profile(hv.admin, email="admin@corp.example", full_name="Ada Admin")
    whoami = project.run(setup.rebar3_whoami)
    assert whoami.returncode == 0, whoami.output
    assert [ORG, "admin", "Ada", "Admin", "admin@corp.example"] in [line.split() for line in whoami.output.splitlines()]

    assert hv.publish(erlang_package("erl_lib", "0.1.0"), org=ORG).status_code == 201
    owners = project.run(setup.rebar3_owner_list("erl_lib"))
    assert owners.returncode == 0, owners.output
    assert "admin (admin@corp.example)" in owners.output.splitlines()


def test_api_key_in_the_entry_publishes_but_never_serves_whoami(hv, setup, version, tmp_path):
    # The README's alternative to HEX_API_KEY: api_key in the repos entry. whoami and owner list
    # read only read_key, so without it the plugin refuses, even with HEX_API_KEY set.
    config = setup.rebar3_config.replace(f'read_key => <<"{setup.read_key}">>', f'api_key => <<"{hv.api_key}">>')
    project = Rebar3HexProject(tmp_path, version, config, clientsetup.REBAR3_HEX_PROJECT_CONFIG)
    published = project.run(f"rebar3 hex publish --repo {ORG}", input="Y\n")
    assert published.returncode == 0, published.output
    assert served_release(hv, setup)["version"] == "0.1.0"
    whoami = project.run(f"HEX_API_KEY={hv.api_key} {setup.rebar3_whoami}")
    assert whoami.returncode != 0
    assert "Not authenticated as any user currently for this repository" in whoami.output, whoami.output


def test_without_api_repository_the_plugin_publishes_into_the_default_organization(hv, setup, version, tmp_path):
    # Why the README's entry carries api_repository: --repo picks the entry (keys, URLs), but
    # the plugin's API calls then go to /api/..., which means the default organization.
    config = setup.rebar3_config.replace(f'    api_repository => <<"{ORG}">>,\n', "")
    assert config != setup.rebar3_config
    project = Rebar3HexProject(tmp_path, version, config, clientsetup.REBAR3_HEX_PROJECT_CONFIG)
    result = publish(project, setup)
    assert result.returncode == 0 and f"Publishing erl_lib 0.1.0 to {ORG}" in result.output, result.output
    assert hv.registry_package("erl_lib", org="acme")["releases"][0]["version"] == "0.1.0"
    assert hv.repo("packages/erl_lib", org=ORG, key=setup.repo_key).status_code == 404


def test_an_upload_waitress_refuses_still_reads_published(hv, setup, version, tmp_path):
    # `hexvault serve` lets waitress refuse bodies over max_tarball_size + 1 MiB with a 413,
    # before Hexvault sees them; rebar3_hex knows no 413 and reports the package published.
    small = hv.runtime.config.with_updates(max_tarball_size=64 * 1024)
    hv.runtime.config = small
    server = LiveServer()
    server.start(create_app(small, hv.runtime), small,
                 max_request_body_size=serving.waitress_options(small)["max_request_body_size"])
    try:
        there = clientsetup.for_org(server.url, ORG, setup.public_key_pem, setup.fingerprint,
                                    repo_key=setup.repo_key, api_key=setup.api_key, read_key=setup.read_key)
        project = Rebar3HexProject(tmp_path, version, there.rebar3_config, clientsetup.REBAR3_HEX_PROJECT_CONFIG)
        (project.dir / "priv").mkdir()
        (project.dir / "priv" / "blob.bin").write_bytes(random.Random(7).randbytes(1200 * 1024))
        result = publish(project, there)
    finally:
        server.stop()
    assert "Published erl_lib 0.1.0" in result.output, result.output
    # Only the docs upload that follows fails, on the release that is not there.
    assert result.returncode != 0
    assert "Failed to publish docs for erl_lib - 0.1.0 : release erl_lib 0.1.0 does not exist" in result.output
    assert hv.api("GET", f"repos/{ORG}/packages/erl_lib").status_code == 404
    assert hv.repo("packages/erl_lib", org=ORG, key=setup.repo_key).status_code == 404


def test_the_readme_shows_the_rebar3_hex_setup_these_tests_run():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    shown = clientsetup.for_org("http://hex.corp:8000", "acme", "-----BEGIN PUBLIC KEY-----\n...", "SHA256:...",
                                repo_key="REPOSITORY_KEY", api_key="API_KEY", read_key="API_READ_KEY")
    assert f"```erlang\n{shown.rebar3_config}\n```" in readme
    assert f"```erlang\n{clientsetup.REBAR3_HEX_PROJECT_CONFIG}\n```" in readme
    assert f"```sh\n{shown.rebar3_hex_commands()}\n```" in readme
