"""`mix hex.user auth` with the real mix client (Hex 2.5.1, which logs in with the OAuth device
flow): the user approves the printed code on the verification page, then `mix hex.publish` works
with the token Hex saved, and after `mix hex.user deauth` a publish is refused."""

import os
import re
import stat
import subprocess
import time

from appliance import accounts, orgs
from appliance.models import OAuthGrant, Package, Release
from tests import readme_commands
from tests.mixclient import MixClient, mix_project, requires_hex
from tests.webclient import WebSession

VERSION = "2.5.1"
pytestmark = requires_hex(VERSION)


def no_browser(path):
    """A PATH dir whose xdg-open only writes down the URL mix wanted to open."""
    path.mkdir()
    opener = path / "xdg-open"
    opener.write_text(f'#!/bin/sh\necho "$1" >> {path}/opened\n')
    opener.chmod(opener.stat().st_mode | stat.S_IXUSR)
    return path


def wait_for(pattern, log, proc, deadline=120):
    """The first match of ``pattern`` in what the running mix printed so far."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        match = re.search(pattern, log.read_text())
        if match:
            return match
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"mix never printed {pattern!r}:\n{log.read_text()}")


def test_mix_logs_in_with_the_device_flow_publishes_and_logs_out(module_hv, hex_installs, tmp_path):
    hv = module_hv
    dora = accounts.create_user("dora", "dora-password", rounds=4)
    orgs.add_member(hv.org, dora, "write")
    client = MixClient(tmp_path / "machine", VERSION, hex_installs)
    assert client.repo_add("acme", f"{hv.url}/repos/acme", public_key_pem=hv.public_key_pem,
                           auth_key=hv.repo_key).ok
    bin_dir = no_browser(tmp_path / "bin")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    auth_line, publish_line, deauth_line = (readme_commands.command(f"HEX_API_URL=http://hex.corp:8000/api {cmd}",
                                                                    url=hv.url)
                                            for cmd in ("mix hex.user auth", "mix hex.publish --organization acme",
                                                        "mix hex.user deauth"))

    log = tmp_path / "auth.log"
    with open(log, "w") as out:  # in the background, as the user waits in the terminal
        auth = subprocess.Popen(["bash", "-euo", "pipefail", "-c", auth_line], cwd=client.workdir,
                                env=dict(client.env, **env), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    try:
        url = wait_for(r"To authenticate, visit: (\S+)", log, auth).group(1)
        printed = wait_for(r"\b([A-Z]{4})-+([A-Z]{4})\b", log, auth)
        assert url.startswith(f"{hv.url}/admin/device?user_code=")
        web = WebSession(hv.url)
        login = web.get(url.replace(hv.url, ""))  # not signed in: the login form, then back to the code
        assert "Log in" in login.text
        page = web.post(login.url.replace(hv.url, ""), {"username": "dora", "password": "dora-password"})
        code = f"{printed.group(1)}-{printed.group(2)}"
        assert code in page.text, "the page must show the code mix printed"
        assert re.search(r'class="client-name">[^<]+<', page.text)
        approved = web.post("/admin/device", {"user_code": code, "decision": "approve"})
        assert "logged in as dora" in approved.text
        assert auth.wait(timeout=120) == 0, log.read_text()
    finally:
        if auth.poll() is None:
            auth.kill()
    assert "You are authenticated!" in log.read_text()
    assert (bin_dir / "opened").read_text().split() == [url]  # mix tried the browser, harmlessly
    assert client.oauth_tokens() and client.oauth_tokens()[0].startswith("hvo_")

    project = mix_project(tmp_path, "devicepub", "1.0.0")
    published = client.shell(publish_line, cwd=project, env=env, input="Y\n", timeout=120)  # answers "Proceed?"
    assert published.ok, published
    release = (Release.select().join(Package)
               .where((Package.name == "devicepub") & (Release.version == "1.0.0")).get())
    assert release.publisher_id == dora.id  # the token acts as the user who approved it
    grant = OAuthGrant.get(OAuthGrant.user == dora.id)
    assert grant.revoked_at is None

    token = client.oauth_tokens()[0]
    deauth = client.shell(deauth_line, env=env, timeout=120)
    assert deauth.ok, deauth
    assert OAuthGrant.get_by_id(grant.id).revoked_at is not None
    # Revoked on the server, not just forgotten by the client: a copy of the token is worthless.
    assert hv.api("GET", "users/me", key="Bearer " + token).status_code == 401

    project = mix_project(tmp_path, "devicepub", "1.0.1")
    # Hex asks "No authenticated user found. Do you want to authenticate now?" before "Proceed?": no.
    refused = client.shell(publish_line, cwd=project, env=env, input="n\n", timeout=120)
    assert not refused.ok, refused
    assert "No authenticated user found" in refused.output
    assert not Release.select().where(Release.version == "1.0.1").exists()
