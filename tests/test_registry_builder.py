"""Registry rebuilds, crash recovery and `check`, on a real data directory."""

import pytest

from appliance import audit, check, orgs, packages, registry_builder, serving
from appliance.models import PendingBuild
from appliance.protocol import registry, signing
from tests.driver import erlang_package


def _public_key():
    from appliance.models import SigningKey

    return signing.load_public_key(SigningKey.current().public_pem.encode())


def test_publish_writes_signed_files_and_check_is_clean(runtime):
    org = orgs.create("acme")
    packages.publish(runtime, org, erlang_package("hello", "1.0.0"), actor=audit.CLI)
    payload = registry.decode_signed(runtime.store.get("registry/acme/packages/hello"), _public_key())
    assert registry.decode_package(payload, "acme", "hello")["releases"][0]["version"] == "1.0.0"
    assert PendingBuild.select().count() == 0
    assert check.run(runtime) == []


def test_interrupted_build_is_finished_at_start_up(runtime):
    org = orgs.create("acme")
    packages.publish(runtime, org, erlang_package("hello", "1.0.0"), actor=audit.CLI)
    # As if the process died after the commit of 1.1.0 and before its registry files were written:
    before = runtime.store.get("registry/acme/packages/hello")
    packages.publish(runtime, org, erlang_package("hello", "1.1.0"), actor=audit.CLI)
    runtime.store.put("registry/acme/packages/hello", before)
    PendingBuild.create(organization=org, package_name="hello")
    problems = check.run(runtime, settle_seconds=0)  # no server to finish it: don't wait for one
    assert any("pending" in p.what for p in problems)
    assert any("packages/hello" in p.what for p in problems)
    serving.recover(runtime)
    assert check.run(runtime) == []
    payload = registry.decode_signed(runtime.store.get("registry/acme/packages/hello"), _public_key())
    assert [r["version"] for r in registry.decode_package(payload, "acme", "hello")["releases"]] == ["1.0.0", "1.1.0"]


def test_check_finds_tampered_and_stale_files_and_full_rebuild_repairs(runtime):
    org = orgs.create("acme")
    packages.publish(runtime, org, erlang_package("hello", "1.0.0"), actor=audit.CLI)
    runtime.store.put("registry/acme/names", b"tampered")
    runtime.store.put("registry/acme/packages/ghost", runtime.store.get("registry/acme/packages/hello"))
    whats = [p.what for p in check.run(runtime)]
    assert any(w.startswith("names does not verify") for w in whats)
    assert any("ghost" in w for w in whats)
    registry_builder.full(runtime, org)
    assert check.run(runtime) == []


def test_check_reports_a_corrupted_tarball_as_not_repairable(runtime):
    org = orgs.create("acme")
    release, _ = packages.publish(runtime, org, erlang_package("hello", "1.0.0"), actor=audit.CLI)
    runtime.store.put(packages.tarball_key(release.outer_checksum), b"corrupted")
    problems = check.run(runtime)
    assert [(p.what, p.repairable) for p in problems] == [("tarball hello-1.0.0.tar does not match its checksum", False)]


def test_signing_key_rotation_resigns_everything(runtime):
    from appliance.runtime import create_signing_key

    org = orgs.create("acme")
    packages.publish(runtime, org, erlang_package("hello", "1.0.0"), actor=audit.CLI)
    old_key = _public_key()
    create_signing_key(runtime.config)
    registry_builder.rebuild_all(runtime)
    data = runtime.store.get("registry/acme/packages/hello")
    assert registry.decode_package(registry.decode_signed(data, _public_key()), "acme", "hello")
    with pytest.raises(registry.SignatureError, match="bad_signature: signature does not verify"):
        registry.decode_signed(data, old_key)
    assert check.run(runtime) == []


def test_incremental_index_is_byte_identical_to_a_fresh_build(runtime):
    org = orgs.create("acme")
    for name in ("zeta", "alpha", "mid"):
        packages.publish(runtime, org, erlang_package(name, "1.0.0"), actor=audit.CLI)
    packages.publish(runtime, org, erlang_package("alpha", "1.1.0-rc.1"), actor=audit.CLI)
    packages.retire(runtime, org, "alpha", "1.0.0", "deprecated", "use 2.x", actor=audit.CLI)
    packages.revert(runtime, org, "zeta", "1.0.0", actor=audit.CLI)
    _row, key = runtime.signing_key()
    warm = runtime.index_cache[org.id]
    assert registry_builder.build_index(org, key, warm) == registry_builder.build_index(org, key)
    payload = registry.decode_signed(registry_builder.build_index(org, key, warm)[1], _public_key())
    versions = registry.decode_versions(payload, "acme")["packages"]
    assert [(p["name"], p["versions"], p["retired"]) for p in versions] == [
        ("alpha", ["1.0.0", "1.1.0-rc.1"], [0]), ("mid", ["1.0.0"], [])]
    # the assembled payload equals what encoding the whole message at once gives
    assert payload == registry.encode_versions("acme", [
        {"name": "alpha", "versions": ["1.0.0", "1.1.0-rc.1"], "retired": [0]},
        {"name": "mid", "versions": ["1.0.0"], "retired": []}])


def test_index_cache_notices_a_package_remade_by_another_process(runtime, config):
    """The CLI (another process, its own caches) reverts a package's only release, which deletes
    the package, and publishes the name again: a new row that may carry the same revision."""
    from appliance.runtime import open_runtime

    org = orgs.create("acme")
    packages.publish(runtime, org, erlang_package("hello", "1.0.0"), actor=audit.CLI)
    assert runtime.index_cache[org.id]["hello"]  # this server has hello 1.0.0's entries cached
    cli = open_runtime(config)
    packages.revert(cli, org, "hello", "1.0.0", actor=audit.CLI)
    packages.publish(cli, org, erlang_package("hello", "2.0.0"), actor=audit.CLI)
    packages.publish(runtime, org, erlang_package("other", "1.0.0"), actor=audit.CLI)  # the server rebuilds
    payload = registry.decode_signed(runtime.store.get("registry/acme/versions"), _public_key())
    assert {p["name"]: p["versions"] for p in registry.decode_versions(payload, "acme")["packages"]} == {
        "hello": ["2.0.0"], "other": ["1.0.0"]}
