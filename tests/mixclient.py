"""Drive the real mix client against a live Hexvault: the Hex archives in ../shared/clients
(built from hexpm/hex, see its README.md) on Debian's Elixir, fully offline.

Every ``MixClient`` has its own HOME, MIX_HOME and HEX_HOME, so Hex never reads the developer's
~/.mix, ~/.hex or ~/.netrc, and tests never see each other's hex.config. Installing an archive
is done once per version and session (``Installs``) and copied into each client's MIX_HOME.
HEX_UNSAFE_REGISTRY and HEX_OFFLINE are never set: the first would stop the signature checks
under test, the second any contact with the registry under test.
"""

import dataclasses
import os
import re
import shutil
import subprocess
import textwrap
import threading
from pathlib import Path

import pytest

# Beside the project root, in CI too (a copy of shared/ sits beside the clone).
CLIENTS = Path(__file__).resolve().parents[2] / "shared" / "clients"
MIX = shutil.which("mix")
REBAR3 = shutil.which("rebar3") or "/usr/bin/rebar3"


def hex_archives():
    """{version: path} of every hex-X.ez in the shared clients folder, oldest first."""
    found = {p.name[len("hex-"):-len(".ez")]: p for p in CLIENTS.glob("hex-*.ez")} if CLIENTS.is_dir() else {}
    return dict(sorted(found.items(), key=lambda item: version_key(item[0])))


def version_key(version):
    """Sort key for "2.5.1" and "2.5.2-dev" (a -dev build sorts after its base release)."""
    numbers = [int(n) for n in re.findall(r"\d+", version.split("-")[0])]
    return (numbers, version)


def at_least(version, minimum):
    return version_key(version)[0] >= [int(n) for n in minimum.split(".")]


def skip_reason(version=None):
    """Why mix tests cannot run here, or None."""
    if MIX is None:
        return "mix is not installed (scripts/test.sh installs Debian's elixir)"
    if not CLIENTS.is_dir():
        return f"no Hex archives: {CLIENTS} is absent"
    if version is not None and version not in hex_archives():
        return f"hex-{version}.ez is not in {CLIENTS}"
    return None


def requires_hex(version=None):
    reason = skip_reason(version)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


@dataclasses.dataclass
class Result:
    code: int
    output: str  # stdout and stderr interleaved, as the user sees them

    @property
    def ok(self):
        return self.code == 0

    def __str__(self):
        return f"exit {self.code}:\n{self.output}"


class Installs:
    """One MIX_HOME per Hex version with the archive installed, made once per session."""

    def __init__(self, root):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._done = {}

    def mix_home(self, version):
        with self._lock:
            if version not in self._done:
                archive = hex_archives()[version]
                home = self.root / f"hex-{version}"
                env = clean_env(home / "home", home / "mix", home / "hex")
                (home / "home").mkdir(parents=True)
                done = subprocess.run([MIX, "archive.install", str(archive), "--force"], env=env,
                                      capture_output=True, text=True, timeout=120, cwd=home)
                assert done.returncode == 0, done.stdout + done.stderr
                self._done[version] = home / "mix"
            return self._done[version]


def clean_env(home, mix_home, hex_home):
    """The environment without the caller's Hex, mix and proxy settings, with private homes."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HEX_", "MIX_", "REBAR", "ERL_", "ELIXIR_")) and "proxy" not in k.lower()}
    env.update(HOME=str(home), MIX_HOME=str(mix_home), HEX_HOME=str(hex_home), MIX_REBAR3=REBAR3,
               LC_ALL="C.UTF-8", LANG="C.UTF-8", no_proxy="*")
    return env


class MixClient:
    """A user's machine with one Hex version: private homes, a `mix` to run in any project."""

    def __init__(self, workdir, version, installs):
        self.workdir = Path(workdir)
        self.version = version
        self.home = self.workdir / "home"
        self.mix_home = self.workdir / "mix"
        self.hex_home = self.workdir / "hex"
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copytree(installs.mix_home(version), self.mix_home)
        self.env = clean_env(self.home, self.mix_home, self.hex_home)

    def mix(self, *args, cwd=None, env=None, input=None, timeout=300):
        """Run `mix ARGS` in ``cwd`` (the workdir by default) and return its exit code and output."""
        run_env = dict(self.env, **(env or {}))
        done = subprocess.run([MIX, *args], cwd=cwd or self.workdir, env=run_env, input=input or "",
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        return Result(done.returncode, done.stdout)

    def shell(self, command, *, cwd=None, env=None, input=None, timeout=300):
        """Run a command line as a user types it (README and set-up page commands), with
        `mix` and `curl` resolving as on their machine; ``input`` answers its prompts."""
        run_env = dict(self.env, **(env or {}))
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd or self.workdir, env=run_env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              input=input or "")
        return Result(done.returncode, done.stdout)

    @property
    def hex_config(self):
        path = self.hex_home / "hex.config"
        return path.read_text() if path.exists() else ""

    def oauth_tokens(self):
        """The access tokens Hex saved in hex.config (an Erlang term file; the map keys are
        binaries in Hex 2.4, atoms from 2.5)."""
        return re.findall(r'(?:<<")?access_token(?:">>)?\s*=>\s*<<"([^"]+)">>', self.hex_config)

    def repo_add(self, name, url, *, public_key_pem=None, auth_key=None, fetch_public_key=None, extra=()):
        args = ["hex.repo", "add", name, url]
        if public_key_pem is not None:
            pem = self.workdir / f"{name.replace(':', '_')}.pem"
            pem.write_text(public_key_pem)
            args += ["--public-key", str(pem)]
        if fetch_public_key is not None:
            args += ["--fetch-public-key", fetch_public_key]
        if auth_key is not None:
            args += ["--auth-key", auth_key]
        return self.mix(*args, *extra)


def mix_project(root, app, version="0.1.0", *, deps=(), organization=None, body=None, docs=True,
                description=None):
    """Write a tiny Elixir project ``root/app``: mix.exs with package metadata, lib/APP.ex with
    ``greet/0``, and (``docs``) a `docs` alias that writes doc/index.html, because mix hex.publish
    runs `mix docs` and ex_doc is not available offline. ``deps`` are literal mix.exs terms."""
    project = Path(root) / app
    (project / "lib").mkdir(parents=True, exist_ok=True)
    module = "".join(part.capitalize() for part in app.split("_"))
    body = body or f'def greet, do: "hello from {app} {version}"'
    (project / "lib" / f"{app}.ex").write_text(f"defmodule {module} do\n  {body}\nend\n")
    package = ['licenses: ["Apache-2.0"]', 'links: %{"Source" => "https://git.corp/' + app + '"}',
               'files: ["lib", "mix.exs"]']
    if organization:
        package.append(f'organization: "{organization}"')
    aliases = "[docs: &docs/1]" if docs else "[]"
    docs_fun = (f'defp docs(_args) do\n    File.mkdir_p!("doc")\n'
                f'    File.write!("doc/index.html", "<h1>{app} {version}</h1>")\n  end') if docs else ""
    (project / "mix.exs").write_text(textwrap.dedent(f"""\
        defmodule {module}.MixProject do
          use Mix.Project

          def project do
            [app: :{app}, version: "{version}", elixir: "~> 1.14", deps: deps(),
             description: "{description or app + ' test package'}", package: package(),
             aliases: {aliases}]
          end

          def application, do: [extra_applications: [:logger]]

          defp deps, do: [{", ".join(deps)}]

          defp package, do: [{", ".join(package)}]

          {{docs_fun}}
        end
        """).replace("{docs_fun}", docs_fun))
    return project


def run_elixir(client, project, expr):
    """Evaluate ``expr`` in the compiled project (mix run, no recompile, no deps check)."""
    return client.mix("run", "--no-compile", "--no-deps-check", "-e", expr, cwd=project)
