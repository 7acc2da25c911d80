"""Debian's real rebar3 fetches and compiles private packages from a live Hexvault, with
signature and origin verification on; wrong, revoked and foreign keys get nothing."""

import pytest

from appliance import keys, orgs, registry_builder
from tests.driver import erlang_package
from tests.rebar3 import REBAR3, rebar3_compile, run_erlang

pytestmark = pytest.mark.skipif(REBAR3 is None, reason="rebar3 is not installed (scripts/test.sh installs it)")


def compile_with(hv, tmp_path, key, org="acme", deps=(("hello", "0.1.0"),), **kw):
    return rebar3_compile(tmp_path, repo_name=org, repo_url=f"{hv.url}/repos/{org}", public_key_pem=hv.public_key_pem,
                          repo_key=key, deps=list(deps), api_url=f"{hv.url}/api", **kw)


def test_rebar3_fetches_and_compiles_a_private_package_with_its_dependency(hv, tmp_path):
    assert hv.publish(erlang_package("greeter", "1.2.0")).status_code == 201
    hello = erlang_package("hello", "0.1.0", module_body='greet() -> greeter:greet().\n',
                           requirements=[{"name": "greeter", "app": "greeter", "requirement": "~> 1.2",
                                          "optional": False}])
    assert hv.publish(hello).status_code == 201
    result = compile_with(hv, tmp_path, hv.repo_key)
    assert result.returncode == 0, result.stdout + result.stderr
    out = run_erlang(tmp_path, 'io:format("~s", [hello:greet()])')
    assert out.stdout == "hello from greeter 1.2.0", out.stdout + out.stderr
    # rebar.lock pins the outer checksum the registry signed
    lock = (tmp_path / "project" / "rebar.lock").read_text()
    release = hv.registry_package("hello")["releases"][0]
    assert release["outer_checksum"].hex().upper() in lock


@pytest.mark.parametrize("which", ["wrong", "revoked", "other_org"])
def test_rebar3_without_a_valid_key_for_the_org_gets_nothing(hv, tmp_path, which):
    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    if which == "wrong":
        key = "0" * 32
    elif which == "revoked":
        row, key = keys.create(hv.runtime.app_secret, "soon-gone", [["repository", "acme"]], organization=hv.org)
        keys.revoke(row)
    else:
        beta = orgs.create("beta")
        registry_builder.ensure_index(hv.runtime, beta)
        _row, key = keys.create(hv.runtime.app_secret, "beta-read", [["repository", "beta"]], organization=beta)
    result = compile_with(hv, tmp_path, key)
    assert result.returncode != 0
    assert not list((tmp_path / "cache").rglob("hello-0.1.0.tar"))
    assert not (tmp_path / "project" / "_build" / "default" / "lib" / "hello").exists()


def test_rebar3_refuses_a_registry_signed_by_another_key(hv, tmp_path):
    from appliance.protocol import signing

    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    other = signing.public_key_pem(signing.generate_private_key()).decode()
    result = rebar3_compile(tmp_path, repo_name="acme", repo_url=f"{hv.url}/repos/acme", public_key_pem=other,
                            repo_key=hv.repo_key, deps=[("hello", "0.1.0")], api_url=f"{hv.url}/api")
    assert result.returncode != 0
    assert not (tmp_path / "project" / "_build" / "default" / "lib" / "hello").exists()


def test_rebar3_refuses_a_registry_under_another_repo_name(hv, tmp_path):
    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    # The same signed files fetched by a client that calls the repo "corp": origin check fails.
    result = rebar3_compile(tmp_path, repo_name="corp", repo_url=f"{hv.url}/repos/acme",
                            public_key_pem=hv.public_key_pem, repo_key=hv.repo_key, deps=[("hello", "0.1.0")])
    assert result.returncode != 0
    assert not (tmp_path / "project" / "_build" / "default" / "lib" / "hello").exists()
