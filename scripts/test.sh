#!/usr/bin/env bash
# Run the whole Hexvault test suite: the one command for developers and CI.
#
#   scripts/test.sh [PYTEST ARGS...]
#
# On a fresh Debian machine (as root, or a user with sudo) it installs what the tests need
# (Erlang/OTP, rebar3, Elixir, curl, Chromium and ChromeDriver, PostgreSQL from Debian, and Prometheus's
# binary extracted from its Debian package into .cache/prometheus), creates or refreshes the
# virtualenv .venv in the repository root with `pip install -e '.[test]'`, then runs
# `.venv/bin/python -m pytest "$@"` from the repository root, on as many pytest-xdist workers as
# there are cores (setup.cfg; `-n 0` runs in one process); without arguments it then runs the
# database-backed tests a second time on PostgreSQL (section 4). Exits with pytest's status;
# "no tests collected" (pytest's exit 5) counts as a failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

say() { printf 'test.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# --- 1. system packages -----------------------------------------------------------------
apt_install() {
    # Other apt-get runs (unattended upgrades, other jobs) hold apt's locks. `install` waits for
    # the dpkg lock (DPkg::Lock::Timeout), but `update` fails at once on the lists lock whatever
    # that option says (apt 2.6), so a lock error is waited out for up to 10 minutes; any other
    # failure is retried a few times.
    local attempt=0 waited=0 err
    err="$(mktemp)"
    while :; do
        if as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q "$@" >/dev/null 2>"$err"; then
            rm -f "$err"
            return 0
        fi
        if grep -q -e "Could not get lock" -e "Unable to lock" -e "Unable to acquire" "$err" && [ "$waited" -lt 600 ]; then
            [ "$waited" -gt 0 ] || say "apt-get $*: another apt-get holds apt's lock; waiting for it"
            sleep 5
            waited=$((waited + 5))
            continue
        fi
        attempt=$((attempt + 1))
        sed 's/^/  /' "$err" >&2
        if [ "$attempt" -ge 5 ]; then
            rm -f "$err"
            die "apt-get $* kept failing"
        fi
        say "apt-get $* failed (attempt $attempt); retrying in 10 s"
        sleep 10
    done
}

# tool -> Debian package that provides it (nginx is the TLS front's tests; openssl drives s_client;
# elixir's mix runs the Hex archives from ../shared/clients, whose README also asks for
# erlang-dev; curl runs the README's key download line; slapd (with slappasswd) is the directory
# of tests/test_ldap.py, ldap-utils its command-line tools; PostgreSQL's server for
# tests/pgcluster.py and pg_dump/pg_restore for backups of it)
TOOLS=(erl rebar3 elixir mix curl chromium chromedriver nginx openssl slapd ldapwhoami postgres pg_dump)
PACKAGES=(erlang-nox erlang-dev rebar3 elixir curl chromium chromium-driver nginx openssl slapd ldap-utils
          postgresql postgresql-client)
have() {
    if [ "$1" = postgres ]; then  # not on PATH: /usr/lib/postgresql/VERSION/bin/postgres
        compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null
        return
    fi
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]
}
missing=()
for tool in "${TOOLS[@]}"; do
    have "$tool" || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "missing ${missing[*]}: installing ${PACKAGES[*]} with apt-get"
    apt_install update
    apt_install install -y "${PACKAGES[@]}"
    for tool in "${TOOLS[@]}"; do
        have "$tool" || die "$tool is still missing after apt-get install"
    done
fi

# --- 1b. Prometheus, for tests/test_metrics.py: only its binary, from Debian's package ------
# (installing the package pulls in ~300 MB of web UI assets the test never uses)
PROMETHEUS_DIR="$REPO/.cache/prometheus"
if ! command -v prometheus >/dev/null 2>&1 && [ ! -x "$PROMETHEUS_DIR/usr/bin/prometheus" ] &&
        command -v apt-get >/dev/null 2>&1; then
    say "extracting Debian's prometheus binary into .cache/prometheus (apt-get download, dpkg-deb -x)"
    download="$(mktemp -d)"
    chmod 0755 "$download"  # apt's _apt user writes the download here
    if (cd "$download" && apt-get download -q prometheus >/dev/null 2>&1) ||
            { (apt_install update) && (cd "$download" && apt-get download -q prometheus >/dev/null 2>&1); }; then
        mkdir -p "$PROMETHEUS_DIR"
        dpkg-deb -x "$download"/prometheus_*.deb "$PROMETHEUS_DIR"
    else
        say "could not download prometheus: the Prometheus scrape test will be skipped"
    fi
    rm -rf "$download"
fi

# --- 2. virtualenv ------------------------------------------------------------------------
python_ok() {  # $1: interpreter; true if it runs, is >= 3.11 and has a working venv module
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

venv_ok() {
    [ -x .venv/bin/python ] &&
        .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 &&
        .venv/bin/python -m pip --version >/dev/null 2>&1
}

if ! venv_ok; then
    PYTHON=""
    for candidate in python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            PYTHON="$candidate"
            break
        fi
    done
    if [ -z "$PYTHON" ] && command -v apt-get >/dev/null 2>&1; then
        say "no Python >= 3.11 with venv found: installing python3 python3-venv with apt-get"
        apt_install update
        apt_install install -y python3 python3-venv
        python_ok /usr/bin/python3 && PYTHON=/usr/bin/python3
    fi
    [ -n "$PYTHON" ] || die "need Python >= 3.11 with the venv module"
    if [ -e .venv ]; then
        say "recreating broken virtualenv .venv with $PYTHON"
        rm -rf .venv
    else
        say "creating virtualenv .venv with $PYTHON"
    fi
    "$PYTHON" -m venv .venv
fi

say "installing hexvault and its test dependencies into .venv (pip install -e '.[test]')"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# --- 3. tests -------------------------------------------------------------------------------
say "running pytest $*"
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    say "error: pytest collected no tests (exit 5); treating that as a failure"
    exit 1
fi

# --- 4. the database-backed tests again, on PostgreSQL ---------------------------------------
# Only for a whole-suite run (no arguments); HEXVAULT_TEST_DATABASE=postgresql makes every
# database fixture a new database in a real PostgreSQL cluster (tests/conftest.py).
POSTGRES_PASS=(tests/test_api.py tests/test_repository.py tests/test_auth_matrix.py tests/test_faults.py
               tests/test_backup.py tests/test_workers.py)
if [ "$#" -eq 0 ]; then
    say "running the PostgreSQL pass: ${POSTGRES_PASS[*]}"
    HEXVAULT_TEST_DATABASE=postgresql .venv/bin/python -m pytest -q "${POSTGRES_PASS[@]}" || status=$?
fi
exit "$status"
