"""Every Hex archive in ../shared/clients (2.0 to main) against one live Hexvault: publish with
docs, deps.get and compile from a private organization, the revoked-key refusal, the hex.pm-style
organization form, and from Hex 2.4 on the OAuth exchange. The assertions pin what each version
prints that a user would notice; docs/clients.md states the same per version."""

import shutil

import pytest

from appliance import docs, keys, orgs, packages, registry_builder
from tests.driver import erlang_package
from tests.mixclient import MixClient, at_least, hex_archives, mix_project, run_elixir, skip_reason

VERSIONS = list(hex_archives()) or [pytest.param("none", marks=pytest.mark.skip(reason=skip_reason()))]
pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

STORED_KEY_WARNING = "Authenticating to the {org} repository with a stored key is deprecated"


def org_for(hv, version, purpose):
    """A fresh organization for one version and purpose, with the admin as member and a repo key."""
    name = f"{purpose}_{version.replace('.', '_').replace('-', '_')}"
    org = orgs.create(name)
    orgs.add_member(org, hv.admin, "admin")
    registry_builder.ensure_index(hv.runtime, org)
    _row, repo_key = keys.create(hv.runtime.app_secret, f"{name}-read", [["repository", name]], organization=org)
    return org, repo_key


def consumer(hv, hex_installs, path, version, org, key):
    client = MixClient(path, version, hex_installs)
    added = client.repo_add(org.name, f"{hv.url}/repos/{org.name}", public_key_pem=hv.public_key_pem, auth_key=key)
    assert added.ok, added
    return client


@pytest.mark.parametrize("version", VERSIONS)
def test_publish_then_fetch_and_compile_then_revoked_key_refused(module_hv, hex_installs, tmp_path, version):
    hv = module_hv
    org, repo_key = org_for(hv, version, "pub")
    publisher = MixClient(tmp_path / "publisher", version, hex_installs)
    project = mix_project(tmp_path / "publisher", "greeter", "1.0.0")
    published = publisher.mix("hex.publish", "--organization", org.name, "--yes", cwd=project,
                              env={"HEX_API_URL": f"{hv.url}/api", "HEX_API_KEY": hv.api_key})
    assert published.ok, published
    assert f"Package published to {hv.url}/admin/orgs/{org.name}/packages/greeter/1.0.0" in published.output
    docs_said = "Docs will soon be available at" if at_least(version, "2.4") else "Docs published to"
    assert f"{docs_said} {hv.url}/docs/{org.name}/greeter/1.0.0/" in published.output, published
    assert docs.read_file(hv.runtime, org, "greeter", "1.0.0", "index.html")[0] == b"<h1>greeter 1.0.0</h1>"
    assert packages.get_release(org, "greeter", "1.0.0").package.name == "greeter"

    client = consumer(hv, hex_installs, tmp_path / "consumer", version, org, repo_key)
    app = mix_project(tmp_path / "consumer", "app", deps=[f'{{:greeter, "~> 1.0", repo: "{org.name}"}}'], docs=False)
    got = client.mix("deps.get", cwd=app)
    assert got.ok and "* Getting greeter (Hex package)" in got.output, got
    assert "deprecated" not in got.output, got  # a repo of its own with a stored key: no version warns
    assert client.mix("compile", cwd=app).ok
    ran = run_elixir(client, app, "IO.puts(Greeter.greet())")
    assert ran.output.strip().endswith("hello from greeter 1.0.0"), ran

    row, revoked = keys.create(hv.runtime.app_secret, "soon-gone", [["repository", org.name]], organization=org)
    keys.revoke(row)
    refused_client = consumer(hv, hex_installs, tmp_path / "revoked", version, org, revoked)
    refused_app = mix_project(tmp_path / "revoked", "app", deps=[f'{{:greeter, "~> 1.0", repo: "{org.name}"}}'],
                              docs=False)
    refused = refused_client.mix("deps.get", cwd=refused_app)
    assert refused.code == 1, refused
    assert f"Failed to fetch record for {org.name}/greeter from registry" in refused.output
    # Hex < 2.4 prints the server's message; later versions their own guess.
    if at_least(version, "2.4"):
        assert "you don't have permissions to it" in refused.output, refused
        assert "No authenticated user found. Run `mix hex.user auth` to authenticate" in refused.output
        assert "API key revoked" not in refused.output
    else:
        assert "API key revoked" in refused.output, refused
    assert "No package with name greeter (from: mix.exs) in registry" in refused.output
    assert not (refused_app / "deps" / "greeter").exists()
    assert not list(refused_client.hex_home.rglob("greeter-*.tar"))


def stored_key_warns(version, form):
    """Whether deps.get warns about a key stored for hexpm:ORG. Hex 2.5.1 warns for any stored
    key; later builds ask GET /api/auth who owns a key given to `hex.organization auth` and stay
    quiet for an organization's key, but still warn for one stored by `hex.repo add --auth-key`.
    Earlier versions never warn."""
    if version.startswith("2.5.1"):
        return True
    return at_least(version, "2.5.2") and form == "repo_add_auth_key"


@pytest.mark.parametrize("form", ["organization_auth", "repo_add_auth_key"])
@pytest.mark.parametrize("version", VERSIONS)
def test_hex_pm_style_organization_form(module_hv, hex_installs, tmp_path, version, form):
    """organization: "ORG" through <hexpm URL>/repos/ORG, the README's recipe, with the key stored
    by `hex.organization auth ORG --key` or by `hex.repo add hexpm:ORG ... --auth-key`: every
    version fetches; which ones warn is pinned here."""
    hv = module_hv
    org, repo_key = org_for(hv, version, "org" if form == "organization_auth" else "add")
    assert hv.publish(erlang_package("inhouse", "1.0.0"), org=org.name).status_code == 201
    client = MixClient(tmp_path, version, hex_installs)
    (tmp_path / "org.pem").write_text(hv.public_key_pem)
    mirror = f"{hv.url}/mirror/hexpm"
    add = ("hex.repo", "add", f"hexpm:{org.name}", f"{mirror}/repos/{org.name}", "--public-key", str(tmp_path / "org.pem"))
    if form == "repo_add_auth_key":
        add += ("--auth-key", repo_key)
    for args in (("hex.repo", "set", "hexpm", "--url", mirror), add):
        done = client.mix(*args)
        assert done.ok, done
    if form == "organization_auth":
        authed = client.mix("hex.organization", "auth", org.name, "--key", repo_key,
                            env={"HEX_API_URL": f"{hv.url}/api"})
        assert authed.ok, authed
        # Hex after 2.5.1 asks GET /api/auth who owns the key, and says what 2.6 will change.
        said = "Starting with Hex 2.6 this command will exchange the organization key" in authed.output
        assert said == at_least(version, "2.5.2"), authed
    app = mix_project(tmp_path, "app", deps=[f'{{:inhouse, "~> 1.0", organization: "{org.name}"}}'], docs=False)
    got = client.mix("deps.get", cwd=app)
    assert got.ok and "* Getting inhouse (Hex package)" in got.output, got
    assert (STORED_KEY_WARNING.format(org=org.name) in got.output) == stored_key_warns(version, form), got
    assert client.mix("compile", cwd=app).ok
    assert run_elixir(client, app, "IO.puts(:inhouse.greet())").output.strip().endswith("hello from inhouse 1.0.0")
    assert client.oauth_tokens() == []  # `hex.repo add hexpm:ORG` turned the exchange off: the key is sent


@pytest.mark.parametrize("version", VERSIONS)
def test_mirror_requires_key_with_the_key_stored_for_hexpm(module_hv, module_mirror, hex_installs, tmp_path, version):
    """The README's form for mirror_requires_key = true. `--no-oauth-exchange` exists from Hex 2.4
    on; older versions refuse the option, and never exchange, so they take the line without it."""
    hv = module_hv
    org, repo_key = org_for(hv, version, "keyed")
    client = MixClient(tmp_path, version, hex_installs)
    assert client.mix("hex.repo", "set", "hexpm", "--public-key", str(module_mirror.pem_path)).ok
    line = ("hex.repo", "set", "hexpm", "--url", f"{hv.url}/mirror/hexpm", "--auth-key", repo_key, "--no-oauth-exchange")
    done = client.mix(*line)
    if at_least(version, "2.4"):
        assert done.ok, done
    else:
        assert done.code == 1 and "--no-oauth-exchange" in done.output, done
        assert client.mix(*line[:-1]).ok
    app = mix_project(tmp_path, "app", deps=['{:upa, "~> 1.0"}'], docs=False)
    before = hv.runtime.config
    hv.runtime.config = before.with_updates(mirror_requires_key=True)
    try:
        got = client.mix("deps.get", cwd=app)
    finally:
        hv.runtime.config = before
    assert got.ok and "* Getting upb (Hex package)" in got.output, got
    assert client.oauth_tokens() == []


@pytest.mark.parametrize("version", VERSIONS)
def test_trusted_mirror_with_hex_repos_key_and_the_oauth_exchange(module_hv, module_mirror, hex_installs, tmp_path,
                                                                  version):
    """HEX_TRUSTED_MIRROR + HEX_REPOS_KEY with mirror_requires_key = true: Hex >= 2.4 exchanges the
    key at HEX_API_URL/oauth/token and saves only the token; older versions send the key. A
    revoked key's saved token then fetches nothing."""
    hv = module_hv
    client = MixClient(tmp_path, version, hex_installs)
    assert client.mix("hex.repo", "set", "hexpm", "--public-key", str(module_mirror.pem_path)).ok
    org, repo_key = org_for(hv, version, "mirror")
    env = {"HEX_TRUSTED_MIRROR": f"{hv.url}/mirror/hexpm", "HEX_REPOS_KEY": repo_key, "HEX_API_URL": f"{hv.url}/api"}
    app = mix_project(tmp_path, "app", deps=['{:upa, "~> 1.0"}'], docs=False)
    before = hv.runtime.config
    hv.runtime.config = before.with_updates(mirror_requires_key=True)
    try:
        got = client.mix("deps.get", cwd=app, env=env)
        assert got.ok and "* Getting upb (Hex package)" in got.output, got
        # Hex 2.4 sometimes also writes HEX_REPOS_KEY itself into hex.config next to the token
        # (docs/clients.md); later versions keep only the token.
        if not version.startswith("2.4."):
            assert repo_key not in client.hex_config, client.hex_config
        tokens = client.oauth_tokens()
        if not at_least(version, "2.4"):
            assert tokens == []
            return
        [token] = tokens
        key, scope = keys.authenticate_token(hv.runtime.app_secret, token)
        assert key.name == f"{org.name}-read" and scope == (("repositories", None),)

        keys.revoke(key)
        shutil.rmtree(app / "deps")
        shutil.rmtree(client.hex_home / "packages")
        (client.hex_home / "cache.ets").unlink()
        (app / "mix.lock").unlink()
        refused = client.mix("deps.get", cwd=app, env=env)
        assert refused.code == 1, refused
        if "Failed to fetch record for upa from registry" not in refused.output:
            # Hex 2.4 sometimes files the token under a repo named "" (see above), finds none for
            # hexpm, exchanges the revoked key again, is refused, and crashes after a 60 s wait.
            assert version.startswith("2.4.") and "Failed to exchange API key for OAuth token" in refused.output, \
                refused
        assert token in client.oauth_tokens()
        assert not (app / "deps" / "upa").exists()
    finally:
        hv.runtime.config = before
