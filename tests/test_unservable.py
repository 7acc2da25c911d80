"""A package the registry cannot serve (rows an older Hexvault let in) degrades only itself:
every other package is built, served and published, the server starts, `check` names it, and
`check --repair` moves it to quarantine without losing its tarballs."""

import json

from click.testing import CliRunner

from appliance import audit, orgs, packages, registry_builder, serving
from appliance.cli import main
from appliance.db import write_tx
from appliance.models import AuditLog, Package, PendingBuild, Release
from tests.driver import erlang_package
from tests.procserver import ServerProcess
from tests.webclient import WebSession

LONG = "a" * 300  # what an older Hexvault accepted; no file name can carry it


def plant(rt, org, name, version, source=("good", "1.0.0")):
    """Rows for a release as an older version would have written them (its tarball is a real
    stored one), plus the pending build its publish left behind."""
    template = packages.get_release(org, *source)
    with write_tx():
        package, _ = Package.get_or_create(organization=org, name=name)
        Release.create(package=package, version=version, inner_checksum=template.inner_checksum,
                       outer_checksum=template.outer_checksum, size=template.size, metadata=template.metadata,
                       published_at=template.published_at, updated_at=template.updated_at)
        PendingBuild.create(organization=org, package_name=name)


def cli(config, *args):
    env = {"HEXVAULT_DATA_DIR": str(config.data_path), "HEXVAULT_BCRYPT_ROUNDS": "4", "HEXVAULT_CONFIG": ""}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_one_unservable_package_blocks_nothing_else(hv):
    rt, org = hv.runtime, orgs.get("acme")
    assert hv.publish(erlang_package("good", "1.0.0")).status_code == 201
    plant(rt, org, LONG, "1.0.0")
    # Publishing, retiring and reverting other packages go on, and their files are written.
    assert hv.publish(erlang_package("good", "1.1.0")).status_code == 201
    assert hv.publish(erlang_package("other", "0.1.0")).status_code == 201
    assert hv.api("POST", "repos/acme/packages/good/releases/1.0.0/retire",
                  body={"reason": "security", "message": "CVE-1"}).status_code == 204
    assert hv.api("DELETE", "repos/acme/packages/other/releases/0.1.0").status_code == 204
    releases = hv.registry_package("good")["releases"]
    assert [r["version"] for r in releases] == ["1.0.0", "1.1.0"] and releases[0]["retired"]
    listed = [p["name"] for p in hv.registry_names()["packages"]]
    assert listed == ["good"]  # the unservable name is never listed
    # Only its own pending row is left, and it is reported with the reason.
    assert [p.package_name for p in PendingBuild.select()] == [LONG]
    assert "not a valid package name" in registry_builder.failing_packages(rt, org)[LONG]


def test_server_starts_and_serves_with_an_unservable_package(runtime, tmp_path):
    org = orgs.create("acme")
    packages.publish(runtime, org, erlang_package("good", "1.0.0"), actor=audit.CLI)
    plant(runtime, org, LONG, "1.0.0")
    _repaired, failed = registry_builder.repair_pending(runtime)
    assert list(failed) == ["acme"] and LONG in failed["acme"]
    server = ServerProcess(runtime.config.data_path).start()
    try:
        import requests

        from appliance import keys

        _key, secret = keys.create(runtime.app_secret, "read", [["repository", "acme"]], organization=org)
        response = requests.get(f"{server.url}/repos/acme/packages/good", headers={"authorization": secret})
        assert response.status_code == 200
    finally:
        server.stop()


def test_check_reports_it_and_repair_quarantines_it(runtime):
    org = orgs.create("acme")
    packages.publish(runtime, org, erlang_package("good", "1.0.0"), actor=audit.CLI)
    plant(runtime, org, LONG, "1.0.0")
    serving.recover(runtime)  # logs and carries on

    result = cli(runtime.config, "check")
    assert result.exit_code == 1
    assert "cannot be built" in result.output and "check --repair" in result.output

    result = cli(runtime.config, "check", "--repair")
    assert result.exit_code == 0, result.output
    assert "quarantined" in result.output
    assert Package.get_or_none(Package.name == LONG) is None
    assert PendingBuild.select().count() == 0
    assert cli(runtime.config, "check").exit_code == 0
    assert cli(runtime.config, "registry", "rebuild").exit_code == 0

    folder, = (runtime.config.data_path / "quarantine" / "acme").iterdir()
    record = json.loads((folder / "record.json").read_text())
    assert record["package"]["name"] == LONG and [r["version"] for r in record["releases"]] == ["1.0.0"]
    outer = record["releases"][0]["outer_checksum"]
    assert (folder / f"{outer}.tar").read_bytes() == runtime.store.get(packages.tarball_key(outer))
    assert AuditLog.select().where(AuditLog.action == "package.quarantine").count() == 1
    # the good package was untouched
    assert [r.version for r in packages.releases_of(packages.get_package(org, "good"))] == ["1.0.0"]


def test_repair_quarantines_only_the_bad_release_of_a_good_package(runtime):
    org = orgs.create("acme")
    packages.publish(runtime, org, erlang_package("good", "1.0.0"), actor=audit.CLI)
    plant(runtime, org, "good", "1.0.0\n")
    assert "good" in registry_builder.failing_packages(runtime, org)

    result = cli(runtime.config, "check", "--repair")
    assert result.exit_code == 0, result.output
    assert [r.version for r in packages.releases_of(packages.get_package(org, "good"))] == ["1.0.0"]
    assert registry_builder.failing_packages(runtime, org) == {}
    assert cli(runtime.config, "check").exit_code == 0


def test_registry_rebuild_names_what_it_cannot_build(runtime):
    org = orgs.create("acme")
    packages.publish(runtime, org, erlang_package("good", "1.0.0"), actor=audit.CLI)
    plant(runtime, org, LONG, "1.0.0")
    result = cli(runtime.config, "registry", "rebuild")
    assert result.exit_code == 1
    assert "could not be built" in result.output and "check --repair" in result.output
    assert runtime.store.exists(registry_builder.package_key("acme", "good"))


def test_admin_sees_the_organization_as_degraded(hv):
    assert hv.publish(erlang_package("good", "1.0.0")).status_code == 201
    web = WebSession(hv.url)
    web.login()
    assert "registry-degraded" not in web.get("/admin/orgs/acme").text
    plant(hv.runtime, orgs.get("acme"), LONG, "1.0.0")
    page = web.get("/admin/orgs/acme").text
    assert 'id="registry-degraded"' in page and "check --repair" in page
