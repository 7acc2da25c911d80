"""mix (Hex 2.5.1) over HTTPS through the TLS front (Debian's nginx started from the site
`hexvault front config` renders, see tests/test_front.py), trusting the company CA with the
README's and the set-up page's lines; without the CA, mix refuses the certificate."""

import pytest

from appliance import clientsetup
from appliance.protocol import signing
from tests import readme_commands
from tests.driver import erlang_package
from tests.mixclient import MixClient, mix_project, requires_hex, run_elixir
from tests.nginxfront import NGINX
from tests.test_front import fronted  # noqa: F401  (the fixture: a live Hexvault behind nginx, test CA)

VERSION = "2.5.1"
pytestmark = [requires_hex(VERSION),
              pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/test.sh installs it)")]


def test_mix_trusts_the_company_ca_and_fetches_over_https(fronted, hex_installs, tmp_path):  # noqa: F811
    hv = fronted.hv
    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    ca = clientsetup.company_ca(fronted.runtime.config)
    setup = clientsetup.for_org(hv.url, "acme", hv.public_key_pem, signing.fingerprint(hv.public_key),
                                repo_key=hv.repo_key, ca=ca)
    save_ca, trust_ca = [readme_commands.command(line, url=hv.url) for line in (
        "curl -fsSk -o hexvault-ca.pem https://hex.corp/ca.pem && openssl x509 -noout -fingerprint -sha256 "
        "-in hexvault-ca.pem",
        'mix hex.config cacerts_path "$PWD/hexvault-ca.pem"')]
    assert setup.save_ca.startswith(save_ca + "   # must print ") and setup.mix_trust_ca == trust_ca

    # Without the CA: the repository cannot even be fetched.
    stranger = MixClient(tmp_path / "stranger", VERSION, hex_installs)
    assert stranger.repo_add("acme", setup.repo_url, public_key_pem=hv.public_key_pem, auth_key=hv.repo_key).ok
    app = mix_project(tmp_path / "stranger", "app", deps=['{:hello, "~> 0.1", repo: "acme"}'], docs=False)
    refused = stranger.mix("deps.get", cwd=app)
    assert refused.code == 1 and "Failed to fetch record for acme/hello from registry" in refused.output, refused
    assert "Fatal - Unknown CA" in refused.output
    assert not (app / "deps" / "hello").exists()

    client = MixClient(tmp_path / "machine", VERSION, hex_installs)
    for line in (setup.save_ca, setup.mix_trust_ca, setup.save_public_key, setup.mix_repo_add):
        done = client.shell(line)
        assert done.ok, (line, done)
        if line == setup.save_ca:
            assert f"Fingerprint={ca.fingerprint}" in done.output, done
    app = mix_project(tmp_path / "machine", "app", deps=['{:hello, "~> 0.1", repo: "acme"}'], docs=False)
    got = client.mix("deps.get", cwd=app)
    assert got.ok and "* Getting hello (Hex package)" in got.output, got
    assert client.mix("compile", cwd=app).ok
    assert run_elixir(client, app, "IO.puts(:hello.greet())").output.strip().endswith("hello from hello 0.1.0")


def test_mix_publishes_package_and_docs_over_https(fronted, hex_installs, tmp_path):  # noqa: F811
    """mix sends Expect: 100-continue on publish; nginx answers it and buffers the body, then
    Hexvault sees one whole request. Without the CA the API refuses to talk at all."""
    hv = fronted.hv
    ca = clientsetup.company_ca(fronted.runtime.config)
    setup = clientsetup.for_org(hv.url, "acme", hv.public_key_pem, signing.fingerprint(hv.public_key),
                                repo_key=hv.repo_key, api_key=hv.api_key, ca=ca)
    env = {"HEX_API_URL": setup.api_url, "HEX_API_KEY": hv.api_key}
    project = mix_project(tmp_path / "src", "greeter")

    stranger = MixClient(tmp_path / "stranger", VERSION, hex_installs)
    refused = stranger.mix("hex.publish", "--organization", "acme", "--yes", cwd=project, env=env)
    assert refused.code != 0 and "Unknown CA" in refused.output, refused
    assert hv.api("GET", "repos/acme/packages/greeter").status_code == 404

    client = MixClient(tmp_path / "machine", VERSION, hex_installs)
    for line in (setup.save_ca, setup.mix_trust_ca):
        assert client.shell(line).ok
    done = client.mix("hex.publish", "--organization", "acme", "--yes", cwd=project, env=env)
    assert done.ok and "Package published to" in done.output, done
    release = hv.api("GET", "repos/acme/packages/greeter/releases/0.1.0")
    assert release.status_code == 200 and release.term["has_docs"] is True
    assert [r["version"] for r in hv.registry_package("greeter")["releases"]] == ["0.1.0"]
