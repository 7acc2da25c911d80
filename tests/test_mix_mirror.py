"""Hex 2.5.1's mix through Hexvault's hex.pm mirror: HEX_MIRROR, the trusted mirror with
HEX_REPOS_KEY and the OAuth exchange, mirror_requires_key, and the README's recipe for projects
coming from hex.pm organizations (organization: "acme" next to public deps).

The mirror is filled as in tests/test_mirror.py: a bundle from a fake hex.pm signed with a test
key, dropped into the import folder. Clients must trust that key instead of hex.pm's, so each
machine runs `mix hex.repo set hexpm --public-key upstream.pem` (what the README says to do when
`mirror_public_key` names another upstream) besides the README's own lines."""

import contextlib

import pytest

from appliance import clientsetup, keys
from appliance.protocol import signing
from tests import readme_commands
from tests.driver import erlang_package
from tests.mixclient import MixClient, mix_project, requires_hex, run_elixir

VERSION = "2.5.1"
pytestmark = requires_hex(VERSION)


@pytest.fixture(scope="module")
def upstream(module_hv, module_mirror):
    """The mirror holding upa 1.0.0 and upb 2.1.0 from the fake hex.pm, and acme holding inhouse."""
    assert module_hv.publish(erlang_package("inhouse", "1.0.0")).status_code == 201
    return module_mirror


@contextlib.contextmanager
def mirror_requires_key(hv):
    before = hv.runtime.config
    hv.runtime.config = before.with_updates(mirror_requires_key=True)
    try:
        yield
    finally:
        hv.runtime.config = before


def machine(hex_installs, path, upstream):
    client = MixClient(path, VERSION, hex_installs)
    trusted = client.mix("hex.repo", "set", "hexpm", "--public-key", str(upstream.pem_path))
    assert trusted.ok, trusted
    return client


def assert_public_deps(client, app, upstream):
    """upa 1.0.0 and upb 2.1.0 fetched, locked with the checksums hex.pm signed, and compiled."""
    lock = (app / "mix.lock").read_text()
    for name, version in (("upa", "1.0.0"), ("upb", "2.1.0")):
        assert (app / "deps" / name).is_dir()
        assert upstream.release(name, version)["outer_checksum"].hex() in lock
    compiled = client.mix("compile", cwd=app)
    assert compiled.ok, compiled
    ran = run_elixir(client, app, "IO.puts(:upb.greet())")
    assert ran.output.strip().endswith("hello from upb 2.1.0"), ran


def command(hv, line):
    return readme_commands.command(line, url=hv.url, repo_key=hv.repo_key)


def test_plain_hex_mirror(module_hv, upstream, hex_installs, tmp_path):
    client = machine(hex_installs, tmp_path, upstream)
    app = mix_project(tmp_path, "app", deps=['{:upa, "~> 1.0"}'], docs=False)
    got = client.shell(command(module_hv, "HEX_MIRROR=http://hex.corp:8000/mirror/hexpm mix deps.get"), cwd=app)
    assert got.ok, got
    assert "* Getting upa (Hex package)" in got.output and "* Getting upb (Hex package)" in got.output
    assert "Failed to check for new Hex version" not in got.output  # the mirror answers installs/hex-1.x.csv
    assert_public_deps(client, app, upstream)

    # A machine that trusts hex.pm's real key refuses what the fake upstream signed.
    stranger = MixClient(tmp_path / "stranger", VERSION, hex_installs)
    refused = stranger.shell(command(module_hv, "HEX_MIRROR=http://hex.corp:8000/mirror/hexpm mix deps.get"),
                             cwd=mix_project(tmp_path / "stranger", "app", deps=['{:upa, "~> 1.0"}'], docs=False))
    assert refused.code == 1 and "signature verification failed" in refused.output, refused
    assert not (tmp_path / "stranger" / "app" / "deps" / "upa").exists()


def test_trusted_mirror_exchanges_the_key_and_stores_only_a_token(module_hv, upstream, hex_installs, tmp_path):
    hv = module_hv
    client = machine(hex_installs, tmp_path, upstream)
    app = mix_project(tmp_path, "app", deps=['{:upa, "~> 1.0"}'], docs=False)
    with mirror_requires_key(hv):
        got = client.shell(command(hv, "HEX_TRUSTED_MIRROR=http://hex.corp:8000/mirror/hexpm HEX_REPOS_KEY=KEY "
                                       "HEX_API_URL=http://hex.corp:8000/api mix deps.get"), cwd=app)
    assert got.ok, got
    assert "deprecated" not in got.output  # HEX_REPOS_KEY for the hexpm repo itself is not deprecated
    assert_public_deps(client, app, upstream)
    [token] = client.oauth_tokens()
    assert hv.repo_key not in client.hex_config  # only the token, never the key
    key, scope = keys.authenticate_token(hv.runtime.app_secret, token)
    assert key.name == "acme-read" and scope == (("repositories", None),)


def test_mirror_requires_key(module_hv, upstream, hex_installs, tmp_path):
    hv = module_hv
    with mirror_requires_key(hv):
        plain = machine(hex_installs, tmp_path / "plain", upstream)
        app = mix_project(tmp_path / "plain", "app", deps=['{:upa, "~> 1.0"}'], docs=False)
        refused = plain.shell(command(hv, "HEX_MIRROR=http://hex.corp:8000/mirror/hexpm mix deps.get"), cwd=app)
        assert refused.code == 1, refused
        assert "Failed to fetch record for upa from registry" in refused.output
        # Hex 2.5 answers the 401 by offering its login (hex.pm's device flow), which is declined here.
        assert "No authenticated user found. Do you want to authenticate now?" in refused.output
        assert not (app / "deps" / "upa").exists()

        client = machine(hex_installs, tmp_path / "keyed", upstream)
        set_key = client.shell(command(hv, "mix hex.repo set hexpm --url http://hex.corp:8000/mirror/hexpm "
                                           "--auth-key KEY --no-oauth-exchange"))
        assert set_key.ok, set_key
        app = mix_project(tmp_path / "keyed", "app", deps=['{:upa, "~> 1.0"}'], docs=False)
        got = client.mix("deps.get", cwd=app)
        assert got.ok, got
        assert_public_deps(client, app, upstream)
        assert not client.oauth_tokens()  # --no-oauth-exchange: the key itself is sent


def test_hex_pm_organizations_recipe_with_a_public_dep_through_the_mirror(module_hv, upstream, hex_installs,
                                                                         tmp_path):
    """The README's recipe and the set-up page's (the same function renders both), run line by
    line: organization: "acme" and a public dep resolve in one project."""
    hv = module_hv
    readme = [command(hv, line) for line in (
        "curl -fsS -o acme.pem http://hex.corp:8000/repos/acme/public_key",
        "mix hex.repo set hexpm --url http://hex.corp:8000/mirror/hexpm",
        "mix hex.repo add hexpm:acme http://hex.corp:8000/mirror/hexpm/repos/acme --public-key acme.pem",
        "HEX_API_URL=http://hex.corp:8000/api mix hex.organization auth acme --key REPOSITORY_KEY")]
    setup = clientsetup.for_org(hv.url, "acme", hv.public_key_pem, signing.fingerprint(hv.public_key),
                                repo_key=hv.repo_key)
    # The README: with mirror_requires_key = true, add `--auth-key KEY --no-oauth-exchange` to the
    # hexpm line, and hexpm:acme inherits the key (so here without `hex.organization auth`).
    keyed = [readme[0], readme[1] + f" --auth-key {hv.repo_key} --no-oauth-exchange", readme[2]]
    ways = (("readme", readme, False), ("set-up-page", setup.mix_hexpm_org.split("\n"), False),
            ("readme-mirror-requires-key", keyed, True))
    for label, lines, requires_key in ways:
        client = machine(hex_installs, tmp_path / label, upstream)
        for line in lines:
            done = client.shell(line)
            assert done.ok, (label, line, done)
        app = mix_project(tmp_path / label, "app", docs=False,
                          deps=['{:upa, "~> 1.0"}', '{:inhouse, "~> 1.0", organization: "acme"}'])
        with mirror_requires_key(hv) if requires_key else contextlib.nullcontext():
            got = client.mix("deps.get", cwd=app)
        assert got.ok, (label, got)
        # What Hex 2.5.1 says about a key stored for hexpm:acme (docs/clients.md).
        assert "Authenticating to the acme repository with a stored key is deprecated" in got.output
        assert_public_deps(client, app, upstream)
        ran = run_elixir(client, app, "IO.puts(:inhouse.greet())")
        assert ran.output.strip().endswith("hello from inhouse 1.0.0"), ran
        assert '"hexpm:acme"' in (app / "mix.lock").read_text()
