"""Drive Debian's real rebar3 (and the real rebar3_hex plugin) against a live Hexvault in an
isolated HOME and cache."""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

REBAR3 = shutil.which("rebar3")
# The real clients sit beside the project root (<repo>/../shared/clients), in CI too; they are
# linked from there, never copied into the project (their README.md gives the recipe).
CLIENTS = Path(__file__).resolve().parents[2] / "shared" / "clients"
REBAR3_HEX_VERSIONS = ("7.0.11", "7.2.0")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def erlang_binary(text):
    return '<<"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '">>'


def client_env(home, **extra):
    """The caller's environment without any Hex, rebar3 or mix setting, HOME moved to ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEX_", "REBAR_", "MIX_"))}
    env.update(HOME=str(home), no_proxy="*", http_proxy="", https_proxy="", HTTP_PROXY="", HTTPS_PROXY="")
    env.update(extra)
    return env


def run_command_line(line, cwd, env, *, input=None, timeout=300):
    """Run one command line as a user types it (leading NAME=value words set the environment);
    the result's ``output`` is stdout and stderr without colours."""
    words = shlex.split(line)
    env = dict(env)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    result = subprocess.run(words, cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=timeout)
    result.output = _ANSI.sub("", result.stdout + result.stderr)
    return result


def write_global_config(home, text):
    """rebar3's global config: $REBAR_GLOBAL_CONFIG_DIR (here HOME)/.config/rebar3/rebar.config."""
    config_dir = home / ".config" / "rebar3"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "rebar.config").write_text(text + "\n")


def rebar3_project(workdir, global_config, deps, *, extra_env=None, task="compile"):
    """A project depending on ``deps`` ([(name, version)]) under the global config text
    ``global_config``; run ``rebar3 TASK`` and return the CompletedProcess."""
    home = workdir / "home"
    write_global_config(home, global_config)
    project = workdir / "project"
    project.mkdir(parents=True, exist_ok=True)
    dep_terms = ", ".join(f'{{{name}, "{version}"}}' for name, version in deps)
    (project / "rebar.config").write_text(f"{{deps, [{dep_terms}]}}.\n")
    env = client_env(home, REBAR_CACHE_DIR=str(workdir / "cache"), **(extra_env or {}))
    return subprocess.run([REBAR3, task], cwd=project, env=env, capture_output=True, text=True, timeout=300)


def rebar3_compile(workdir, *, repo_name, repo_url, public_key_pem, repo_key, deps, api_url=None,
                   verify_origin=True, extra_env=None, task="compile", extra_repos=(), extra_global=""):
    """Write a global rebar3 config naming only our repo (and ``extra_repos``, dicts of binary
    fields), a project depending on ``deps`` ([(name, version)]), run ``rebar3 TASK`` (compile by
    default) and return the CompletedProcess. ``extra_global`` is appended to the global config
    (e.g. ``{ssl_cacerts_path, "ca.pem"}.``)."""
    entry = [f"name => {erlang_binary(repo_name)}", f"repo_url => {erlang_binary(repo_url)}",
             f"repo_public_key => {erlang_binary(public_key_pem)}", f"repo_key => {erlang_binary(repo_key)}",
             f"api_url => {erlang_binary(api_url or repo_url)}"]
    if not verify_origin:
        entry.append("repo_verify_origin => false")
    entries = ["#{" + ", ".join(entry) + "}"]
    for extra in extra_repos:
        entries.append("#{" + ", ".join(f"{k} => {erlang_binary(v)}" for k, v in extra.items()) + "}")
    return rebar3_project(workdir, "{hex, [{repos, replace, [" + ", ".join(entries) + "]}]}.\n" + extra_global,
                          deps, extra_env=extra_env, task=task)


def run_erlang(workdir, expr):
    """Evaluate an expression with the project's compiled deps on the code path."""
    ebins = [str(p) for p in (workdir / "project" / "_build" / "default" / "lib").glob("*/ebin")]
    args = ["erl", "-noshell"] + [a for e in ebins for a in ("-pa", e)] + ["-eval", expr, "-s", "init", "stop"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def rebar3_hex_missing(version):
    """Why rebar3_hex VERSION cannot run here (a one-line skip reason), or None."""
    if REBAR3 is None:
        return "rebar3 is not installed (scripts/test.sh installs it)"
    if not (CLIENTS / f"rebar3_hex-{version}" / "rebar3_hex").is_dir():
        return f"rebar3_hex {version} is not in {CLIENTS} (the real clients folder beside the project)"
    return None


class Rebar3HexProject:
    """An Erlang library that publishes with the real rebar3_hex VERSION, linked into its
    ``_checkouts/`` from the clients folder (rebar3 then fetches no plugin and contacts neither
    hex.pm nor git). HOME, the global config dir and the cache are private to the project."""

    def __init__(self, workdir, version, global_config, project_config, name="erl_lib"):
        self.name = name
        self.home = workdir / "home"
        write_global_config(self.home, global_config)
        self.dir = workdir / name
        (self.dir / "src").mkdir(parents=True)
        (self.dir / "rebar.config").write_text(project_config + "\n")
        checkouts = self.dir / "_checkouts"
        checkouts.mkdir()
        for app in ("rebar3_hex", "hex_core", "verl"):
            (checkouts / app).symlink_to((CLIENTS / f"rebar3_hex-{version}" / app).resolve())
        self.env = client_env(self.home, REBAR_GLOBAL_CONFIG_DIR=str(self.home),
                              REBAR_CACHE_DIR=str(workdir / "rebar3-cache"), REBAR_COLOR="none")
        self.write_app("0.1.0")

    def write_app(self, version, greeting=None):
        """The library's sources at ``version``; greet/0 returns ``greeting``."""
        greeting = greeting or f"hello from {self.name} {version}"
        (self.dir / "src" / f"{self.name}.app.src").write_text(
            f'{{application, {self.name}, [{{description, "An Erlang library"}}, {{vsn, "{version}"}},\n'
            '  {registered, []}, {applications, [kernel, stdlib]}, {env, []},\n'
            '  {licenses, ["Apache-2.0"]}, {links, [{"Source", "https://git.corp/erl_lib"}]}]}.\n')
        (self.dir / "src" / f"{self.name}.erl").write_text(
            f"%% @doc A greeting for the docs.\n-module({self.name}).\n-export([greet/0]).\n\n"
            f'%% @doc Says hello.\ngreet() -> <<"{greeting}">>.\n')

    def tarball(self, version, docs=False):
        """The tarball `rebar3 hex publish` built (and uploaded) for ``version``."""
        suffix = "-docs" if docs else ""
        return self.dir / "_build" / "default" / "lib" / self.name / "hex" / f"{self.name}-{version}{suffix}.tar"

    def run(self, line, *, input=None):
        return run_command_line(line, self.dir, self.env, input=input)
