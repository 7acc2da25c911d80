"""Drive Debian's real rebar3 against a live Hexvault in an isolated HOME and cache."""

import os
import shutil
import subprocess

REBAR3 = shutil.which("rebar3")


def erlang_binary(text):
    return '<<"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '">>'


def rebar3_compile(workdir, *, repo_name, repo_url, public_key_pem, repo_key, deps, api_url=None,
                   verify_origin=True, extra_env=None, task="compile", extra_repos=(), extra_global=""):
    """Write a global rebar3 config naming only our repo (and ``extra_repos``, dicts of binary
    fields), a project depending on ``deps`` ([(name, version)]), run ``rebar3 TASK`` (compile by
    default) and return the CompletedProcess. ``extra_global`` is appended to the global config
    (e.g. ``{ssl_cacerts_path, "ca.pem"}.``)."""
    home = workdir / "home"
    config_dir = home / ".config" / "rebar3"
    config_dir.mkdir(parents=True, exist_ok=True)
    entry = [f"name => {erlang_binary(repo_name)}", f"repo_url => {erlang_binary(repo_url)}",
             f"repo_public_key => {erlang_binary(public_key_pem)}", f"repo_key => {erlang_binary(repo_key)}",
             f"api_url => {erlang_binary(api_url or repo_url)}"]
    if not verify_origin:
        entry.append("repo_verify_origin => false")
    entries = ["#{" + ", ".join(entry) + "}"]
    for extra in extra_repos:
        entries.append("#{" + ", ".join(f"{k} => {erlang_binary(v)}" for k, v in extra.items()) + "}")
    (config_dir / "rebar.config").write_text("{hex, [{repos, replace, [" + ", ".join(entries) + "]}]}.\n"
                                             + extra_global)
    project = workdir / "project"
    project.mkdir(exist_ok=True)
    dep_terms = ", ".join(f'{{{name}, "{version}"}}' for name, version in deps)
    (project / "rebar.config").write_text(f"{{deps, [{dep_terms}]}}.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEX_", "REBAR_"))}
    env.update(HOME=str(home), REBAR_CACHE_DIR=str(workdir / "cache"),
               no_proxy="*", http_proxy="", https_proxy="", HTTP_PROXY="", HTTPS_PROXY="")
    env.update(extra_env or {})
    return subprocess.run([REBAR3, task], cwd=project, env=env, capture_output=True, text=True, timeout=300)


def run_erlang(workdir, expr):
    """Evaluate an expression with the project's compiled deps on the code path."""
    ebins = [str(p) for p in (workdir / "project" / "_build" / "default" / "lib").glob("*/ebin")]
    args = ["erl", "-noshell"] + [a for e in ebins for a in ("-pa", e)] + ["-eval", expr, "-s", "init", "stop"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)
