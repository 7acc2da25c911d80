"""The mix command lines the README tells users to type, taken from the README itself, so the
tests run exactly what it says (with the live server's URL and keys filled in).

``COVERED`` names, for every mix (and curl) line in the README's ``sh`` blocks, the test that
runs it; tests/test_readme_commands.py checks that the README holds no other mix line. The set-up page's
commands come from appliance/clientsetup.py, which the tests call directly.
"""

import re
import shlex
from pathlib import Path

import click

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE_URLS = ("http://hex.corp:8000", "https://hex.corp")  # the README's server, without and with TLS

# README line (as written) -> the test that runs it.
COVERED = {
    "curl -fsS -o acme.pem http://hex.corp:8000/repos/acme/public_key":
        "test_mix.py::test_a_fresh_consumer_follows_the_readme_and_the_set_up_page",
    "mix hex.repo add acme http://hex.corp:8000/repos/acme --public-key acme.pem --auth-key REPOSITORY_KEY":
        "test_mix.py::test_a_fresh_consumer_follows_the_readme_and_the_set_up_page",
    "mix hex.repo add acme http://hex.corp:8000/repos/acme --fetch-public-key SHA256:... --auth-key REPOSITORY_KEY":
        "test_mix.py::test_a_fresh_consumer_follows_the_readme_and_the_set_up_page",
    "mix hex.repo set hexpm --url http://hex.corp:8000/mirror/hexpm":
        "test_mix_mirror.py::test_hex_pm_organizations_recipe_with_a_public_dep_through_the_mirror",
    "mix hex.repo add hexpm:acme http://hex.corp:8000/mirror/hexpm/repos/acme --public-key acme.pem":
        "test_mix_mirror.py::test_hex_pm_organizations_recipe_with_a_public_dep_through_the_mirror",
    "HEX_API_URL=http://hex.corp:8000/api mix hex.organization auth acme --key REPOSITORY_KEY":
        "test_mix_mirror.py::test_hex_pm_organizations_recipe_with_a_public_dep_through_the_mirror",
    "HEX_API_URL=http://hex.corp:8000/api HEX_API_KEY=API_KEY mix hex.publish --organization acme":
        "test_mix.py::test_publish_two_packages_with_docs_one_depending_on_the_other",
    'HEX_API_URL=http://hex.corp:8000/api HEX_API_KEY=API_KEY mix hex.retire my_package 0.1.0 security '
    '--message "CVE-..." --organization acme':
        "test_mix.py::test_retire_and_unretire",
    "HEX_MIRROR=http://hex.corp:8000/mirror/hexpm mix deps.get":
        "test_mix_mirror.py::test_plain_hex_mirror",
    "HEX_TRUSTED_MIRROR=http://hex.corp:8000/mirror/hexpm HEX_REPOS_KEY=KEY HEX_API_URL=http://hex.corp:8000/api "
    "mix deps.get":
        "test_mix_mirror.py::test_trusted_mirror_exchanges_the_key_and_stores_only_a_token",
    "mix hex.repo set hexpm --url http://hex.corp:8000/mirror/hexpm --auth-key KEY --no-oauth-exchange":
        "test_mix_mirror.py::test_mirror_requires_key",
    "curl -fsSk -o hexvault-ca.pem https://hex.corp/ca.pem && openssl x509 -noout -fingerprint -sha256 "
    "-in hexvault-ca.pem":
        "test_mix_tls.py::test_mix_trusts_the_company_ca_and_fetches_over_https",
    'mix hex.config cacerts_path "$PWD/hexvault-ca.pem"':
        "test_mix_tls.py::test_mix_trusts_the_company_ca_and_fetches_over_https",
    "HEX_API_URL=http://hex.corp:8000/api mix hex.user auth": "test_mix_device_login.py::test_mix_logs_in_with_the_device_flow_publishes_and_logs_out",
    "HEX_API_URL=http://hex.corp:8000/api mix hex.publish --organization acme": "test_mix_device_login.py::test_mix_logs_in_with_the_device_flow_publishes_and_logs_out",
    "HEX_API_URL=http://hex.corp:8000/api mix hex.user deauth": "test_mix_device_login.py::test_mix_logs_in_with_the_device_flow_publishes_and_logs_out",
}


def mix_lines(text=None):
    """Every line of a ```sh block that runs mix or fetches a key with curl, comments dropped."""
    text = README.read_text() if text is None else text
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#") and (re.search(r"(^|\s)mix\s", line) or line.startswith("curl")):
                lines.append(line)
    return lines


def command(line, *, url, repo_key=None, api_key=None, fingerprint=None, package=None):
    """README ``line`` with the live server's values in place of the examples."""
    assert line in mix_lines(), f"the README no longer says: {line}"
    assert line in COVERED, f"add {line!r} to COVERED"
    filled = line
    for example in EXAMPLE_URLS:
        filled = filled.replace(example, url)
    if "SHA256:..." in filled:
        assert fingerprint, "SHA256:... needs a value"
        filled = filled.replace("SHA256:...", fingerprint)
    # Whole words only: API_KEY is a placeholder, HEX_API_KEY is not.
    for placeholder, value in (("REPOSITORY_KEY", repo_key), ("API_KEY", api_key), ("KEY", repo_key),
                               ("my_package", package)):
        pattern = rf"(?<![\w]){placeholder}(?![\w])"
        if re.search(pattern, filled):
            assert value, f"{placeholder} needs a value"
            filled = re.sub(pattern, value, filled)
    return filled


def sh_lines(text=None):
    """Every command line of the README's ```sh blocks, comments dropped."""
    text = README.read_text() if text is None else text
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def hexvault_lines(text=None):
    """(line, arguments) for every README line that runs the hexvault CLI, directly, through
    sudo or from a checkout's .venv; environment assignments and a redirection are dropped."""
    found = []
    for line in sh_lines(text):
        words = shlex.split(line)
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            words.pop(0)
        if words[:1] == ["sudo"]:
            words = words[3:] if words[1:2] == ["-u"] else words[1:]
        if words and (words[0] == "hexvault" or words[0].endswith("/bin/hexvault")):
            args = words[1:]
            if ">" in args:
                args = args[:args.index(">")]
            found.append((line, args))
    return found


def parse_cli(args):
    """Parse ``hexvault ARGS`` down to its subcommand as click would, without running anything;
    a click.UsageError if the CLI refuses them."""
    from appliance.cli import main

    command, context = main, main.make_context("hexvault", list(args))
    while isinstance(command, click.Group):
        name, command, rest = command.resolve_command(context, context._protected_args + context.args)
        context = command.make_context(name, rest, parent=context)
    return command


def _slug(heading):
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    text = re.sub(r"```.*?```", "", Path(path).read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def local_links():
    """(document, target file, anchor or None) for every relative link of the README and docs/."""
    links = []
    for doc in [README, *sorted((README.parent / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for href in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", href):
                continue
            path, _, anchor = href.partition("#")
            links.append((doc, (doc.parent / path).resolve() if path else doc, anchor or None))
    return links
