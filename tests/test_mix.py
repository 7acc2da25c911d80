"""The real mix client (Hex 2.5.1 from ../shared/clients) against a live Hexvault: publishing with
docs, a dependency inside the organization, --replace, --revert, retire, owners, whoami, key
generation, package fetch and info, a fresh consumer following the README and the set-up page,
and every way of getting the key wrong. Each case asserts the exit status, what mix prints, and
what the server holds."""

import hashlib
import re
import shutil
import types

import pytest

from appliance import accounts, audit, clientsetup, docs, keys, orgs, packages, registry_builder
from appliance.errors import NotFound, Unauthenticated
from appliance.protocol import signing
from tests import readme_commands
from tests.mixclient import MixClient, mix_project, requires_hex, run_elixir

VERSION = "2.5.1"
pytestmark = requires_hex(VERSION)


def api_env(hv, key):
    return {"HEX_API_URL": f"{hv.url}/api", "HEX_API_KEY": key}


def new_client(hv, hex_installs, path, key=None):
    """A user's machine with the acme repository added as the set-up page says (key: repo key)."""
    client = MixClient(path, VERSION, hex_installs)
    if key is not False:
        added = client.repo_add("acme", f"{hv.url}/repos/acme", public_key_pem=hv.public_key_pem,
                                auth_key=key or hv.repo_key)
        assert added.ok, added
    return client


def publish(hv, client, project, key, *args):
    return client.mix("hex.publish", "--organization", "acme", "--yes", *args, cwd=project, env=api_env(hv, key))


@pytest.fixture(scope="module")
def world(module_hv, hex_installs, tmp_path_factory):
    """acme with a writer (alice, with an e-mail), and greeter 1.0.0 and hello 0.1.0 (which needs
    greeter) published by her with Hex 2.5.1 exactly as the README says."""
    hv = module_hv
    alice = accounts.create_user("alice", "alice-password", email="alice@corp", rounds=4)
    orgs.add_member(hv.org, alice, "write")
    _row, alice_key = keys.create(hv.runtime.app_secret, "alice-publish", [["api", "write"]], user=alice)
    root = tmp_path_factory.mktemp("publisher")
    publisher = new_client(hv, hex_installs, root / "machine")
    greeter = mix_project(root, "greeter", "1.0.0")
    readme_publish = readme_commands.command(
        "HEX_API_URL=http://hex.corp:8000/api HEX_API_KEY=API_KEY mix hex.publish --organization acme",
        url=hv.url, api_key=alice_key)
    setup = clientsetup.for_org(hv.url, "acme", hv.public_key_pem, signing.fingerprint(hv.public_key),
                                repo_key=hv.repo_key, api_key=alice_key)
    assert setup.mix_publish == readme_publish  # the set-up page says the same
    greeter_published = publisher.shell(readme_publish, cwd=greeter, input="Y\n")  # answers "Proceed?"
    hello = mix_project(root, "hello", "0.1.0", deps=['{:greeter, "~> 1.0", repo: "acme"}'],
                        body="def greet, do: Greeter.greet()")
    fetched = publisher.mix("deps.get", cwd=hello)
    assert fetched.ok, fetched
    hello_published = publisher.shell(readme_publish, cwd=hello, input="Y\n")
    return types.SimpleNamespace(hv=hv, alice=alice, alice_key=alice_key, publisher=publisher, root=root,
                                 greeter_published=greeter_published, hello_published=hello_published)


def assert_nothing_fetched(client, project, name="greeter"):
    assert not (project / "deps" / name).exists()
    assert not list(client.hex_home.rglob(f"{name}-*.tar"))


def test_publish_two_packages_with_docs_one_depending_on_the_other(world):
    hv = world.hv
    for name, version, result in (("greeter", "1.0.0", world.greeter_published),
                                  ("hello", "0.1.0", world.hello_published)):
        assert result.ok, result
        assert "Publishing package to private repository acme" in result.output
        assert f"Package published to {hv.url}/admin/orgs/acme/packages/{name}/{version}" in result.output
        assert f"Docs will soon be available at {hv.url}/docs/acme/{name}/{version}/" in result.output
        body, _type = docs.read_file(hv.runtime, hv.org, name, version, "index.html")
        assert body == f"<h1>{name} {version}</h1>".encode()
        release = packages.get_release(hv.org, name, version)
        assert packages.publisher_of(release).username == "alice"
    record = hv.registry_package("hello")
    assert record["repository"] == "acme"
    # A dependency in the same organization: no repository field, as hex.pm writes it.
    assert record["releases"][0]["dependencies"] == [
        {"package": "greeter", "requirement": "~> 1.0", "optional": False, "app": None, "repository": None}]
    entry = audit.entries(action="release.publish")[0]
    assert entry.details.get("via") == "api"


def test_a_fresh_consumer_follows_the_readme_and_the_set_up_page(world, hex_installs, tmp_path):
    hv = world.hv
    # The README's lines, then the set-up page's (rendered by the same function as the UI and
    # `hexvault org client-setup`), each on a clean machine.
    readme = [readme_commands.command(line, url=hv.url, repo_key=hv.repo_key) for line in (
        "curl -fsS -o acme.pem http://hex.corp:8000/repos/acme/public_key",
        "mix hex.repo add acme http://hex.corp:8000/repos/acme --public-key acme.pem --auth-key REPOSITORY_KEY")]
    setup = clientsetup.for_org(hv.url, "acme", hv.public_key_pem, signing.fingerprint(hv.public_key),
                                repo_key=hv.repo_key)
    by_fingerprint = readme_commands.command(
        "mix hex.repo add acme http://hex.corp:8000/repos/acme --fetch-public-key SHA256:... --auth-key REPOSITORY_KEY",
        url=hv.url, repo_key=hv.repo_key, fingerprint=setup.fingerprint)
    ways = {"readme": readme, "readme-fingerprint": [by_fingerprint],
            "set-up page": [setup.save_public_key, setup.mix_repo_add],
            "set-up page fingerprint": [setup.mix_repo_add_fingerprint]}
    release = hv.registry_package("hello")["releases"][0]
    for label, commands in ways.items():
        machine = tmp_path / label.replace(" ", "-")
        client = MixClient(machine, VERSION, hex_installs)
        for command in commands:
            done = client.shell(command)
            assert done.ok, (label, command, done)
        dep = setup.mix_dep.replace("my_package", "hello")
        assert dep == '{:hello, "~> 0.1", repo: "acme"}'
        app = mix_project(machine, "app", deps=[dep], docs=False)
        got = client.mix("deps.get", cwd=app)
        assert got.ok, (label, got)
        assert "* Getting hello (Hex package)" in got.output and "* Getting greeter (Hex package)" in got.output
        assert "deprecated" not in got.output  # a stored key for a repo of its own: no warning in 2.5.1
        compiled = client.mix("compile", cwd=app)
        assert compiled.ok, (label, compiled)
        ran = run_elixir(client, app, "IO.puts(Hello.greet())")
        assert ran.output.strip().endswith("hello from greeter 1.0.0"), ran
        lock = (app / "mix.lock").read_text()
        assert f'"{release["outer_checksum"].hex()}"' in lock and '"acme"' in lock


def test_publish_replace_and_revert(world, tmp_path):
    hv, client, key = world.hv, world.publisher, world.alice_key
    editable = mix_project(tmp_path, "editable", "0.1.0")
    assert publish(hv, client, editable, key).ok
    second = mix_project(tmp_path / "v2", "editable", "0.2.0")
    assert publish(hv, client, second, key).ok
    first_checksum = hv.registry_package("editable")["releases"][1]["outer_checksum"]

    changed = mix_project(tmp_path / "v2b", "editable", "0.2.0", body='def greet, do: "changed"')
    refused = publish(hv, client, changed, key)
    assert refused.code == 1, refused
    assert "Publishing failed" in refused.output
    assert "must include the --replace flag to update an existing release" in refused.output
    assert hv.registry_package("editable")["releases"][1]["outer_checksum"] == first_checksum

    replaced = publish(hv, client, changed, key, "--replace")
    assert replaced.ok, replaced
    now = hv.registry_package("editable")["releases"][1]
    assert now["version"] == "0.2.0" and now["outer_checksum"] != first_checksum

    reverted = client.mix("hex.publish", "--revert", "0.2.0", "--organization", "acme", cwd=changed,
                          env=api_env(hv, key))
    assert reverted.ok and "Reverted editable 0.2.0" in reverted.output, reverted
    assert [r["version"] for r in hv.registry_package("editable")["releases"]] == ["0.1.0"]
    # Reverting the last release deletes the package, as hex.pm does.
    last = client.mix("hex.publish", "--revert", "0.1.0", "--organization", "acme", cwd=editable,
                      env=api_env(hv, key))
    assert last.ok and "Reverted editable 0.1.0" in last.output, last
    assert "editable" not in [p["name"] for p in hv.registry_names()["packages"]]
    with pytest.raises(NotFound):
        packages.get_package(hv.org, "editable")


def test_retire_and_unretire(world, hex_installs, tmp_path):
    hv, key = world.hv, world.alice_key
    oldie = mix_project(tmp_path, "oldie", "0.1.0")
    assert publish(hv, world.publisher, oldie, key).ok
    retire = readme_commands.command(
        'HEX_API_URL=http://hex.corp:8000/api HEX_API_KEY=API_KEY mix hex.retire my_package 0.1.0 security '
        '--message "CVE-..." --organization acme', url=hv.url, api_key=key, package="oldie")
    retired = world.publisher.shell(retire)
    assert retired.ok and "oldie 0.1.0 has been retired" in retired.output, retired
    release = hv.registry_package("oldie")["releases"][0]
    assert release["retired"] == {"reason": "security", "message": "CVE-..."}

    consumer = new_client(hv, hex_installs, tmp_path / "consumer")
    app = mix_project(tmp_path / "consumer", "app", deps=['{:oldie, "~> 0.1", repo: "acme"}'], docs=False)
    got = consumer.mix("deps.get", cwd=app)
    assert got.ok and "oldie 0.1.0 RETIRED!" in got.output and "(security) CVE-..." in got.output, got

    unretired = world.publisher.mix("hex.retire", "oldie", "0.1.0", "--unretire", "--organization", "acme",
                                    env=api_env(hv, key))
    assert unretired.ok, unretired
    assert hv.registry_package("oldie")["releases"][0]["retired"] is None


def test_owner_list_and_whoami(world):
    hv = world.hv
    owners = world.publisher.mix("hex.owner", "list", "hello", "--organization", "acme",
                                 env=api_env(hv, world.alice_key))
    assert owners.ok, owners
    rows = [line.split() for line in owners.output.splitlines()]
    assert ["Email", "Level"] in rows and ["alice@corp", "full"] in rows
    whoami = world.publisher.mix("hex.user", "whoami", env=api_env(hv, world.alice_key))
    assert whoami.ok and whoami.output.strip().splitlines()[-1] == "alice", whoami


def test_organization_key_generate_then_the_key_fetches(world, hex_installs, tmp_path):
    hv = world.hv
    generated = world.publisher.mix("hex.organization", "key", "acme", "generate", "--key-name", "ci-runner",
                                    env=api_env(hv, hv.api_key))  # the admin's key: only admins make org keys
    assert generated.ok, generated
    secret = generated.output.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{32}", secret), generated
    key = keys.find(hv.runtime.app_secret, secret)
    assert key.name == "ci-runner" and key.organization.name == "acme" and key.user is None
    assert key.permissions == [["repository", "acme"]]

    consumer = new_client(hv, hex_installs, tmp_path / "ci", key=secret)
    app = mix_project(tmp_path / "ci", "app", deps=['{:greeter, "~> 1.0", repo: "acme"}'], docs=False)
    got = consumer.mix("deps.get", cwd=app)
    assert got.ok and "* Getting greeter (Hex package)" in got.output, got

    listed = world.publisher.mix("hex.organization", "key", "acme", "list", env=api_env(hv, hv.api_key))
    assert listed.ok and any(line.split()[:1] == ["ci-runner"] for line in listed.output.splitlines()), listed
    revoked = world.publisher.mix("hex.organization", "key", "acme", "revoke", "ci-runner", env=api_env(hv, hv.api_key))
    assert revoked.ok and "Revoking key ci-runner..." in revoked.output, revoked
    assert not keys.find(hv.runtime.app_secret, secret).is_active()


def test_package_fetch_and_info(world, tmp_path):
    hv, client = world.hv, world.publisher
    fetched = client.mix("hex.package", "fetch", "greeter", "1.0.0", "--repo", "acme", cwd=tmp_path)
    assert fetched.ok and "greeter v1.0.0 downloaded to" in fetched.output, fetched
    served = hv.repo("tarballs/greeter-1.0.0.tar")
    assert (tmp_path / "greeter-1.0.0.tar").read_bytes() == served.content
    assert hashlib.sha256(served.content).digest() == hv.registry_package("greeter")["releases"][0]["outer_checksum"]

    info = client.mix("hex.info", env=api_env(hv, world.alice_key))
    assert info.ok and info.output.startswith(f"Hex:    {VERSION}\n"), info
    package_info = client.mix("hex.info", "greeter", "--organization", "acme", env=api_env(hv, world.alice_key))
    assert package_info.ok, package_info
    assert "greeter test package" in package_info.output
    assert 'Config: {:greeter, "~> 1.0.0", repo: "acme"}' in package_info.output
    assert "Source: https://git.corp/greeter" in package_info.output
    # The README warns about this: Hex hardcodes hexorgs.pm for private docs.
    release_info = client.mix("hex.info", "greeter", "1.0.0", "--organization", "acme",
                              env=api_env(hv, world.alice_key))
    assert release_info.ok, release_info
    assert "Documentation at: https://acme.hexorgs.pm/greeter/1.0.0" in release_info.output, release_info


@pytest.fixture(scope="module")
def keys_for_negatives(world):
    hv = world.hv
    beta = orgs.create("beta")
    registry_builder.ensure_index(hv.runtime, beta)
    _row, beta_key = keys.create(hv.runtime.app_secret, "beta-read", [["repository", "beta"]], organization=beta)
    return {"other_org": beta_key}


NOT_FOUND = "This could be because the package does not exist, it was spelled incorrectly or you don't have permissions to it"


@pytest.mark.parametrize("case", ["wrong_public_key", "wrong_fingerprint", "repo_name_not_the_org", "revoked_key",
                                  "other_org_key", "no_key"])
def test_a_wrong_key_or_repository_gets_nothing(world, keys_for_negatives, hex_installs, tmp_path, case):
    hv = world.hv
    client = MixClient(tmp_path / "machine", VERSION, hex_installs)
    repo, url = "acme", f"{hv.url}/repos/acme"
    setup = dict(public_key_pem=hv.public_key_pem, auth_key=hv.repo_key)
    if case == "wrong_public_key":
        setup["public_key_pem"] = signing.public_key_pem(signing.generate_private_key()).decode()
    elif case == "wrong_fingerprint":
        other = signing.generate_private_key().public_key()
        setup = dict(fetch_public_key=signing.fingerprint(other), auth_key=hv.repo_key)
    elif case == "repo_name_not_the_org":
        repo = "corp"
    elif case == "other_org_key":
        setup["auth_key"] = keys_for_negatives["other_org"]
    elif case == "no_key":
        del setup["auth_key"]
    elif case == "revoked_key":
        row, setup["auth_key"] = keys.create(hv.runtime.app_secret, "soon-gone", [["repository", "acme"]],
                                             organization=hv.org)
    app = mix_project(tmp_path / "machine", "app", deps=[f'{{:greeter, "~> 1.0", repo: "{repo}"}}'], docs=False)

    added = client.repo_add(repo, url, **setup)
    if case == "wrong_fingerprint":
        assert added.code == 1 and "Public key fingerprint mismatch" in added.output, added
        got = client.mix("deps.get", cwd=app)
        assert got.code == 1 and 'Unknown repository "acme"' in got.output, got
        assert_nothing_fetched(client, app)
        return
    assert added.ok, added
    if case == "revoked_key":
        # The key works, is revoked, and a fresh deps/ and cache get nothing (mix.lock stays).
        assert client.mix("deps.get", cwd=app).ok
        keys.revoke(row)
        shutil.rmtree(app / "deps")
        shutil.rmtree(client.hex_home / "packages")
        (client.hex_home / "cache.ets").unlink()
    got = client.mix("deps.get", cwd=app)
    assert got.code == 1, got
    if case == "revoked_key":
        assert "** (Mix) Unknown package greeter in lockfile" in got.output, got
        assert NOT_FOUND in got.output and "Failed to fetch record for acme/greeter from registry" in got.output
    else:
        assert "** (Mix) No package with name greeter (from: mix.exs) in registry" in got.output, got
        assert f"Failed to fetch record for {repo}/greeter from registry" in got.output
    if case == "wrong_public_key":
        assert "Could not verify authenticity of fetched registry file because signature verification failed" \
            in got.output
    elif case == "repo_name_not_the_org":
        assert ("The configured repository name for your dependency corp/greeter does not match the repository "
                "name in the registry") in got.output
    elif case == "other_org_key":
        assert NOT_FOUND in got.output
    elif case == "no_key":
        assert "No authenticated user found. Do you want to authenticate now?" in got.output
    assert_nothing_fetched(client, app)


def test_a_revoked_keys_oauth_token_gets_nothing(world, hex_installs, tmp_path):
    """Hex >= 2.4 exchanges a repo's key for a token when the repo says --oauth-exchange and saves
    the token in hex.config; once the key is revoked, the saved token fetches nothing.
    (Without --oauth-exchange-url, Hex 2.5.1 crashes building the exchange URL: docs/clients.md.)"""
    hv = world.hv
    row, secret = keys.create(hv.runtime.app_secret, "exchanged", [["repository", "acme"]], organization=hv.org)
    client = MixClient(tmp_path / "machine", VERSION, hex_installs)
    added = client.repo_add("acme", f"{hv.url}/repos/acme", public_key_pem=hv.public_key_pem, auth_key=secret,
                            extra=("--oauth-exchange", "--oauth-exchange-url", f"{hv.url}/api"))
    assert added.ok, added
    app = mix_project(tmp_path / "machine", "app", deps=['{:greeter, "~> 1.0", repo: "acme"}'], docs=False)
    assert client.mix("deps.get", cwd=app).ok
    [token] = client.oauth_tokens()
    assert keys.authenticate_token(hv.runtime.app_secret, token)[0].id == row.id
    keys.revoke(row)
    with pytest.raises(Unauthenticated, match="revoked"):
        keys.authenticate_token(hv.runtime.app_secret, token)
    shutil.rmtree(app / "deps")
    shutil.rmtree(client.hex_home / "packages")
    (client.hex_home / "cache.ets").unlink()
    (app / "mix.lock").unlink()
    got = client.mix("deps.get", cwd=app)
    assert got.code == 1, got
    assert "Failed to fetch record for acme/greeter from registry" in got.output and NOT_FOUND in got.output, got
    assert client.oauth_tokens() == [token]  # Hex kept sending the saved token; it was refused
    assert_nothing_fetched(client, app)

