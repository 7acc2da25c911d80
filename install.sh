#!/usr/bin/env bash
# Install Hexvault, either for development (--dev) or as a systemd service (run as root).
# Run `./install.sh --help` for the options.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROG="$0"

usage() {
    cat <<EOF
Usage:
  $PROG --dev [OPTIONS]      development set-up in this checkout (no root needed)
  sudo $PROG [OPTIONS]       production install as a systemd service
  $PROG --help

Development (--dev):
  Creates .venv in the repository, installs Hexvault into it (pip install -e .),
  initializes the data directory on first run (prints the generated admin password,
  the signing keys and the client set-up commands once), then serves on 127.0.0.1:PORT
  in the foreground (Ctrl-C stops it). The port, data directory and URL go into
  hexvault.toml in the repository (git ignores it): every .venv/bin/hexvault command run in
  the checkout reads it, and a re-run takes the port and data directory from it.

  --data-dir DIR      data directory (default: hexvault.toml's, else ./data in the repository)
  --port PORT         port to serve on (default: hexvault.toml's, else 8000)
  --database-url URL  keep the database in PostgreSQL (postgresql://USER:PASSWORD@HOST/DB, an
                      empty database) instead of SQLite in the data directory; written to
                      hexvault.toml if it names no database yet
  --admin NAME        admin user made on first run (default: admin)
  --admin-email ADDR  that admin's e-mail (mix hex.owner list shows owners by e-mail)
  --admin-full-name N that admin's full name (rebar3 hex user whoami shows it)
  --org NAME          organization made on first run (default: acme)
  --wheelhouse DIR    install offline from a directory of wheels (see scripts/wheelhouse.sh)
  --no-serve          set up and initialize only, do not start the server
  --tls-self-signed   also run Debian's nginx as a TLS front on https://localhost:HTTPS-PORT
                      (--https-port, default 8443; --http-port, default 8080) with a local CA
                      in DATA/tls, as on a server

Production (as root):
  Creates the system user, a virtualenv at PREFIX/venv with Hexvault in it, the data
  directory (0750, owned by the service user), CONFIG/hexvault.toml (0640 root:USER,
  written only if absent), initializes the data directory on first run (prints the
  generated admin password once: note it), installs /etc/systemd/system/hexvault.service
  and enables and (re)starts it when systemd is running.
  Re-running upgrades the package, keeps the data and the configuration, and migrates the
  database to the new schema (hexvault migrate, as the service user, with the service stopped;
  a copy of the database is kept in DATA/pre-migration).

  --prefix DIR        installation prefix (default: /opt/hexvault)
  --data-dir DIR      data directory (default: /var/lib/hexvault)
  --database-url URL  keep the database in PostgreSQL instead of SQLite in the data directory:
                      postgresql://USER:PASSWORD@HOST/DB, an empty database on the first install.
                      Several nodes: install each with the same --database-url and a shared
                      --data-dir; the first initializes both, the others find them initialized
                      and only migrate (pg_dump, Debian's postgresql-client, copies the database
                      before a schema change)
  --config-dir DIR    configuration directory (default: /etc/hexvault)
  --user NAME         system user and group the service runs as (default: hexvault)
  --host ADDR         address to listen on (default: 0.0.0.0)
  --port PORT         port to listen on (default: 8000)
  --base-url URL      URL clients use to reach the server
                      (default: http://\$(hostname -f):PORT)
  --admin NAME        admin user made on first run (default: admin)
  --admin-email ADDR  that admin's e-mail; later: hexvault user update NAME --email ADDR
  --admin-full-name N that admin's full name; later: hexvault user update NAME --full-name N
  --org NAME          organization made on first run (default: acme)
  --wheelhouse DIR    install fully offline from a directory holding the hexvault wheel and
                      all dependency wheels (made by scripts/wheelhouse.sh); without it the
                      package is built from this checkout, dependencies from PyPI
  --python PATH       Python (>= 3.11, with venv) for the virtualenv; it must be reachable
                      by the service user (default: the system python3)
  --unit-dir DIR      where to write hexvault.service (default: /etc/systemd/system)
  --bin-dir DIR       where to put the hexvault admin command, which runs the CLI as the
                      service user with the installed configuration (default: /usr/local/bin)
  --no-start          do not enable or start the service

HTTPS (production; Debian's nginx becomes a TLS front, Hexvault listens on 127.0.0.1 only):
  --tls-cert FILE     certificate chain (PEM) from your company's CA, with --tls-key
  --tls-key FILE      its private key (PEM)
  --tls-ca FILE       the CA that signed it, if clients do not trust it already (shown with its
                      fingerprint in the client set-up and served at /ca.pem)
  --tls-self-signed   instead: make a local CA (kept in CONFIG/tls) and a certificate for the
                      base URL's host; prints the CA's path and SHA-256 fingerprint
  --https-port PORT   nginx's HTTPS port (default 443)
  --http-port PORT    nginx's plain HTTP port, which redirects browsers (default 80)
  --nginx-dir DIR     nginx's configuration directory (default /etc/nginx)
  --nginx-user NAME   the user nginx's workers run as (default www-data); it may read the blobs
  Re-running with a new certificate replaces it and reloads nginx. nginx comes from the
  server's apt sources, or offline from WHEELHOUSE/debs/*.deb (scripts/wheelhouse.sh --with-nginx).

  --host, --port, --base-url and --database-url are written to the configuration file only
  when it is first created; edit CONFIG/hexvault.toml afterwards and restart the service.

Examples:
  ./install.sh --dev
  sudo ./install.sh --base-url http://hex.corp.example:8000
  sudo ./install.sh --wheelhouse ./wheelhouse          # air-gapped server
  sudo ./install.sh --base-url https://hex.corp.example --tls-cert hex.pem --tls-key hex.key
  sudo ./install.sh --tls-self-signed                   # HTTPS with a local CA
  # each of several nodes: one PostgreSQL database, one shared data directory
  sudo ./install.sh --database-url "postgresql://hexvault:PASSWORD@db.corp/hexvault" --data-dir /mnt/hexvault
EOF
}

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
# A database URL fit for messages, as appliance.db.without_password writes it: the password
# masked, in the user part or as a password= parameter.
without_password() { printf '%s\n' "$1" | sed -E -e 's#(://[^/:@]*):[^@/]*@#\1:***@#' -e 's#([?&]password=)[^&]*#\1***#g'; }

# --- options ------------------------------------------------------------------------------
MODE=prod
DATA_DIR="" PORT="" HOST="" BASE_URL="" DATABASE_URL="" WHEELHOUSE="" PYTHON=""
PREFIX="" CONFIG_DIR="" SVC_USER="" UNIT_DIR="" BIN_DIR="" DB_URL=""
ADMIN=admin ADMIN_EMAIL="" ADMIN_FULL_NAME="" ORG=acme NO_SERVE=0 NO_START=0
TLS_CERT="" TLS_KEY="" TLS_CA="" TLS_SELF=0 HTTPS_PORT="" HTTP_PORT="" NGINX_DIR="" NGINX_USER=""
prod_only=() dev_only=()

need_value() { [ "$#" -ge 2 ] || die "$1 needs a value (see --help)"; }
while [ "$#" -gt 0 ]; do
    case "$1" in
        --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    esac
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --dev) MODE=dev ;;
        --no-serve) NO_SERVE=1; dev_only+=("$1") ;;
        --no-start) NO_START=1; prod_only+=("$1") ;;
        --data-dir) need_value "$@"; DATA_DIR="$2"; shift ;;
        --database-url) need_value "$@"; DATABASE_URL="$2"; shift ;;
        --port) need_value "$@"; PORT="$2"; shift ;;
        --host) need_value "$@"; HOST="$2"; shift ;;
        --base-url) need_value "$@"; BASE_URL="$2"; shift ;;
        --admin) need_value "$@"; ADMIN="$2"; shift ;;
        --admin-email) need_value "$@"; ADMIN_EMAIL="$2"; shift ;;
        --admin-full-name) need_value "$@"; ADMIN_FULL_NAME="$2"; shift ;;
        --org) need_value "$@"; ORG="$2"; shift ;;
        --wheelhouse) need_value "$@"; WHEELHOUSE="$2"; shift ;;
        --python) need_value "$@"; PYTHON="$2"; shift ;;
        --prefix) need_value "$@"; PREFIX="$2"; prod_only+=("$1"); shift ;;
        --config-dir) need_value "$@"; CONFIG_DIR="$2"; prod_only+=("$1"); shift ;;
        --user) need_value "$@"; SVC_USER="$2"; prod_only+=("$1"); shift ;;
        --unit-dir) need_value "$@"; UNIT_DIR="$2"; prod_only+=("$1"); shift ;;
        --bin-dir) need_value "$@"; BIN_DIR="$2"; prod_only+=("$1"); shift ;;
        --tls-cert) need_value "$@"; TLS_CERT="$2"; prod_only+=("$1"); shift ;;
        --tls-key) need_value "$@"; TLS_KEY="$2"; prod_only+=("$1"); shift ;;
        --tls-ca) need_value "$@"; TLS_CA="$2"; prod_only+=("$1"); shift ;;
        --tls-self-signed) TLS_SELF=1 ;;
        --https-port) need_value "$@"; HTTPS_PORT="$2"; shift ;;
        --http-port) need_value "$@"; HTTP_PORT="$2"; shift ;;
        --nginx-dir) need_value "$@"; NGINX_DIR="$2"; prod_only+=("$1"); shift ;;
        --nginx-user) need_value "$@"; NGINX_USER="$2"; prod_only+=("$1"); shift ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

PORT_GIVEN="$PORT"  # --dev takes the port from the checkout's hexvault.toml unless one is given
case "$PORT" in
    "") PORT=8000 ;;
    *[!0-9]*) die "--port must be a number, got '$PORT'" ;;
esac
[ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "--port must be between 1 and 65535"
[ -n "$ADMIN" ] || die "--admin must not be empty"
for p in "$HTTPS_PORT" "$HTTP_PORT"; do
    case "$p" in *[!0-9]*) die "--https-port and --http-port must be numbers, got '$p'" ;; esac
done
TLS=""
if [ -n "$TLS_CERT$TLS_KEY" ]; then
    [ -n "$TLS_CERT" ] && [ -n "$TLS_KEY" ] || die "--tls-cert and --tls-key go together"
    [ "$TLS_SELF" -eq 0 ] || die "--tls-self-signed or --tls-cert/--tls-key, not both"
    [ -r "$TLS_CERT" ] || die "cannot read the certificate $TLS_CERT"
    [ -r "$TLS_KEY" ] || die "cannot read the key $TLS_KEY"
    TLS=cert
elif [ "$TLS_SELF" -eq 1 ]; then
    TLS=self
fi
[ -z "$TLS_CA" ] || [ "$TLS" = cert ] || die "--tls-ca goes with --tls-cert (--tls-self-signed makes its own CA)"
[ -z "$TLS_CA" ] || [ -r "$TLS_CA" ] || die "cannot read the CA certificate $TLS_CA"
[ -n "$ORG" ] || die "--org must not be empty"
case "$DATABASE_URL" in
    ""|postgresql://?*|postgres://?*) ;;
    *) die "--database-url must be a postgresql:// URL, got '$(without_password "$DATABASE_URL")'" ;;
esac
INIT_ARGS=(--admin "$ADMIN" --org "$ORG")
[ -z "$ADMIN_EMAIL" ] || INIT_ARGS+=(--admin-email "$ADMIN_EMAIL")
[ -z "$ADMIN_FULL_NAME" ] || INIT_ARGS+=(--admin-full-name "$ADMIN_FULL_NAME")

abspath() {  # absolute path of $1 (which need not exist), relative to the current directory
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$PWD" "${1#./}" ;;
    esac
}

if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || die "wheelhouse $WHEELHOUSE is not a directory"
    WHEELHOUSE="$(cd "$WHEELHOUSE" && pwd)"
fi

python_ok() {  # true if $1 runs, is Python >= 3.11 and can make virtualenvs with pip
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

PIP_QUIET=(--quiet --disable-pip-version-check)

# `hexvault init` writes DATA/secret_key last, with SQLite and PostgreSQL alike: with it, the data
# directory and its database are initialized, and a re-run (an upgrade), or another node sharing
# the directory and the database, only migrates. Running init there again would be refused.
is_initialized() { [ -e "$DATA_DIR/secret_key" ]; }

interrupted_init() {  # SQLite's hexvault.db without secret_key: what an init cut short left
    [ -z "$DB_URL" ] && [ -e "$DATA_DIR/hexvault.db" ] || return 1
    say "keeping $DATA_DIR/hexvault.db"
    warn "$DATA_DIR has hexvault.db but no secret_key: an earlier 'hexvault init' did not finish."
    warn "If it holds nothing yet, remove $DATA_DIR and run $PROG again."
}

already_initialized() {
    say "$DATA_DIR is already initialized${DB_URL:+ (database $(without_password "$DB_URL"))}; keeping it"
}

reconcile_database_url() {  # reconcile_database_url PYTHON [fill]: DB_URL, the database an existing config
    # names, else (with fill) --database-url's. A config file that already names its database
    # keeps it: moving one is `hexvault db copy`.
    local configured
    configured="$("$1" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("database_url", ""))' "$CONFIG_FILE")" ||
        die "cannot read $CONFIG_FILE (fix or remove it)"
    DB_URL="$configured"
    if [ -z "$configured" ] && [ "${2:-}" = fill ]; then
        DB_URL="$DATABASE_URL"
    elif [ -n "$DATABASE_URL" ] && [ "$DATABASE_URL" != "$configured" ]; then
        if [ -n "$configured" ]; then
            warn "--database-url $(without_password "$DATABASE_URL") ignored: $CONFIG_FILE has database_url = $(without_password "$configured"), which is kept (edit the file to change it)"
        else
            warn "--database-url $(without_password "$DATABASE_URL") ignored: the existing $CONFIG_FILE names no database_url (SQLite in the data directory) and is kept; to move the database, see hexvault db copy"
        fi
    fi
}

check_pg_dump() {  # check_pg_dump [RUNNER]: pg_dump for the user who migrates, with PostgreSQL
    [ -n "$DB_URL" ] || return 0
    "$@" sh -c 'command -v pg_dump' >/dev/null 2>&1 ||
        warn "pg_dump is not installed: hexvault migrate needs it to copy the PostgreSQL database before a schema change, and hexvault backup to back it up (Debian: apt-get install postgresql-client, of the server's major version or newer)"
}

# ==========================================================================================
# Development set-up
# ==========================================================================================
dev_install() {
    if [ "${#prod_only[@]}" -gt 0 ]; then
        die "${prod_only[*]}: only for a production install (without --dev)"
    fi
    [ -f "$SCRIPT_DIR/setup.cfg" ] || die "--dev needs the Hexvault source checkout ($SCRIPT_DIR has no setup.cfg)"
    local repo="$SCRIPT_DIR" venv="$SCRIPT_DIR/.venv"

    if [ -x "$venv/bin/python" ] &&
        "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
        say "using the virtualenv $venv"
    elif [ -e "$venv" ]; then
        die "$venv exists but its Python does not run or is older than 3.11: remove it (rm -rf $venv) and re-run"
    else
        if [ -z "$PYTHON" ]; then
            local c
            for c in python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
                if command -v "$c" >/dev/null 2>&1 && python_ok "$c"; then PYTHON="$c"; break; fi
            done
        fi
        [ -n "$PYTHON" ] && python_ok "$PYTHON" ||
            die "need Python >= 3.11 with the venv module (on Debian/Ubuntu: sudo apt-get install python3 python3-venv)"
        say "creating the virtualenv $venv with $("$PYTHON" -c 'import sys; print(sys.executable)')"
        "$PYTHON" -m venv "$venv"
    fi

    if [ -n "$WHEELHOUSE" ]; then
        say "installing Hexvault offline from $WHEELHOUSE"
        "$venv/bin/python" -m pip install "${PIP_QUIET[@]}" --no-index --find-links "$WHEELHOUSE" "$repo"
    else
        say "installing Hexvault into $venv (pip install -e .)"
        "$venv/bin/python" -m pip install "${PIP_QUIET[@]}" -e "$repo"
    fi
    [ -x "$venv/bin/hexvault" ] || die "pip did not install the hexvault command"

    dev_config "$venv/bin/python"
    check_pg_dump

    if is_initialized; then
        already_initialized
        "$venv/bin/hexvault" migrate || die "hexvault migrate failed; the database keeps its previous schema"
    elif interrupted_init; then
        :
    else
        say "initializing $DATA_DIR (admin: $ADMIN, organization: $ORG${DB_URL:+, database: $(without_password "$DB_URL")})"
        if [ ! -d "$DATA_DIR" ]; then
            mkdir -p "$DATA_DIR"
            chmod 0700 "$DATA_DIR"
        fi
        [ "$TLS" != self ] || "$venv/bin/hexvault" front self-signed --dir "$DATA_DIR/tls" --host localhost --host 127.0.0.1
        "$venv/bin/hexvault" init "${INIT_ARGS[@]}"
    fi

    if [ "$TLS" = self ]; then
        dev_front
        return
    fi
    if [ "$NO_SERVE" -eq 1 ]; then
        say "done. Start the server with:"
        printf '  cd %q && .venv/bin/hexvault serve\n' "$SCRIPT_DIR" >&2
        return 0
    fi
    say "serving on http://$HOST:$PORT (Ctrl-C stops)"
    exec "$venv/bin/hexvault" serve
}

dev_setting() {  # dev_setting PYTHON KEY: KEY's value in the checkout's hexvault.toml (empty if unset)
    "$1" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get(sys.argv[2], ""))' "$CONFIG_FILE" "$2" ||
        die "cannot read $CONFIG_FILE (fix or remove it)"
}

dev_config() {  # the checkout's hexvault.toml: what this run and every later command in the checkout use
    local python="$1" remembered
    CONFIG_FILE="$SCRIPT_DIR/hexvault.toml"
    if [ -f "$CONFIG_FILE" ]; then
        reconcile_database_url "$python" fill  # written below where the file named no database yet
        # A re-run keeps the port and data directory the checkout already serves, unless given.
        [ -n "$DATA_DIR" ] || DATA_DIR="$(dev_setting "$python" data_dir)"
        [ -n "$HOST" ] || HOST="$(dev_setting "$python" host)"
        if [ -z "$PORT_GIVEN" ]; then
            remembered="$(dev_setting "$python" port)"
            case "$remembered" in
                "") ;;
                *[!0-9]*) die "port in $CONFIG_FILE must be a number, got '$remembered'" ;;
                *) PORT="$remembered" ;;
            esac
        fi
    else
        printf '%s\n' "# Hexvault development settings, written by install.sh --dev (git ignores this file)." \
            "# Every .venv/bin/hexvault command run in this checkout reads it; a re-run of" \
            "# install.sh --dev keeps data_dir, host and port unless given, and rewrites base_url" \
            "# and the TLS front's settings from its options. Other settings added here are kept." >"$CONFIG_FILE"
        DB_URL="$DATABASE_URL"
    fi
    DATA_DIR="$(abspath "${DATA_DIR:-$SCRIPT_DIR/data}")"
    HOST="${HOST:-127.0.0.1}"
    local secure=false
    if [ "$TLS" = self ]; then
        have_nginx || die "--tls-self-signed needs Debian's nginx: sudo apt-get install nginx"
        HTTPS_PORT="${HTTPS_PORT:-8443}" HTTP_PORT="${HTTP_PORT:-8080}"
        BASE_URL="${BASE_URL:-https://localhost:$HTTPS_PORT}"
        secure=true
    fi
    local tls_ca=""
    [ "$TLS" != self ] || tls_ca="$DATA_DIR/tls/ca.pem"
    set_config "$python" data_dir "$(toml_string "$DATA_DIR")" host "$(toml_string "$HOST")" port "$PORT" \
        base_url "$(toml_string "$BASE_URL")" secure_cookies "$secure" trusted_proxy "$secure" \
        tls_ca_file "$(toml_string "$tls_ca")"
    [ -z "$DB_URL" ] || set_config "$python" database_url "$(toml_string "$DB_URL")"
    say "settings in $CONFIG_FILE (port $PORT, data $DATA_DIR${DB_URL:+, database $(without_password "$DB_URL")})"
    # That file alone decides, for this run as for later commands in the checkout.
    unset HEXVAULT_DATA_DIR HEXVAULT_HOST HEXVAULT_PORT HEXVAULT_BASE_URL HEXVAULT_SECURE_COOKIES \
        HEXVAULT_TRUSTED_PROXY HEXVAULT_TLS_CA_FILE HEXVAULT_DATABASE_URL
    export HEXVAULT_CONFIG="$CONFIG_FILE"
}

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
nginx_bin() { command -v nginx 2>/dev/null || echo /usr/sbin/nginx; }

dev_front() {  # --dev --tls-self-signed: nginx in the foreground's shadow, in DATA/front
    local venv="$SCRIPT_DIR/.venv" front="$DATA_DIR/front"
    [ -e "$DATA_DIR/tls/server.pem" ] ||
        "$venv/bin/hexvault" front self-signed --dir "$DATA_DIR/tls" --host localhost --host 127.0.0.1
    "$venv/bin/hexvault" front config --cert "$DATA_DIR/tls/server.pem" --key "$DATA_DIR/tls/server.key" \
        --server-name localhost --https-listen "127.0.0.1:$HTTPS_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
        --standalone "$front"
    # As root, nginx would run its workers as nobody, who cannot read this checkout's blobs.
    if [ "$(id -u)" -eq 0 ]; then sed -i '1i user root root;' "$front/nginx.conf"; fi
    local run_nginx run_serve
    run_nginx="$(printf '%q -c %q -p %q -e stderr' "$(nginx_bin)" "$front/nginx.conf" "$front")"
    run_serve="$(printf 'cd %q && .venv/bin/hexvault serve' "$SCRIPT_DIR")"
    if [ "$NO_SERVE" -eq 1 ]; then
        say "done. Start the front and the server with:"
        printf '  %s &\n  %s\n' "$run_nginx" "$run_serve" >&2
        return 0
    fi
    "$(nginx_bin)" -c "$front/nginx.conf" -p "$front" -e stderr &
    local nginx_pid=$!
    trap 'kill -QUIT "$nginx_pid" 2>/dev/null; wait "$nginx_pid" 2>/dev/null' EXIT
    say "serving on $BASE_URL through nginx (trust $DATA_DIR/tls/ca.pem; Ctrl-C stops both)"
    "$venv/bin/hexvault" serve
}

# ==========================================================================================
# Production install
# ==========================================================================================
toml_string() {  # $1 as a TOML basic string
    local s="$1"
    s="${s//\\/\\\\}"
    s="${s//\"/\\\"}"
    printf '"%s"' "$s"
}

check_not_system_dir() {  # refuse to take over a system directory as $2
    local d="${1%/}"
    case "${d:-/}" in
        /|/bin|/boot|/dev|/etc|/home|/lib|/lib64|/media|/mnt|/opt|/proc|/root|/run|/sbin|/srv|/sys|/tmp|/usr|/usr/*bin|/usr/lib|/usr/local|/var|/var/lib|/var/tmp)
            die "$2 must not be the system directory $1" ;;
    esac
}

as_service_user() {  # run "$@" as the service user with a clean environment
    (cd / && runuser -u "$SVC_USER" -- env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME="$DATA_DIR" LANG=C.UTF-8 HEXVAULT_CONFIG="$CONFIG_FILE" "$@")
}

migrate_schema() {  # bring the database to the new release's schema before it serves
    # The old server must not write while its schema changes under it, nor run on the new one.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 &&
        systemctl is-active --quiet hexvault 2>/dev/null; then
        say "stopping hexvault to migrate its database"
        systemctl stop hexvault
        [ "$NO_START" -eq 0 ] || warn "hexvault was stopped for the migration; start it with: systemctl start hexvault"
    fi
    say "migrating the database schema as $SVC_USER (a copy is kept in $DATA_DIR/pre-migration)"
    (umask 027 && as_service_user "$1" migrate) ||
        die "hexvault migrate failed; the database keeps its previous schema (see the error above)"
}

default_base_url() {
    local fqdn
    fqdn="$(hostname -f 2>/dev/null || hostname 2>/dev/null || echo localhost)"
    fqdn="${fqdn:-localhost}"
    if [ -z "$TLS" ]; then
        echo "http://$fqdn:$PORT"
    elif [ "$HTTPS_PORT" = 443 ]; then
        echo "https://$fqdn"
    else
        echo "https://$fqdn:$HTTPS_PORT"
    fi
}

tls_ca_path() {  # the CA clients are told to trust, if any
    if [ "$TLS" = self ] || { [ "$TLS" = cert ] && [ -n "$TLS_CA" ]; }; then echo "$CONFIG_DIR/tls/ca.pem"; fi
}

set_config() {  # set_config PYTHON KEY VALUE...: replace or append top-level KEY = VALUE lines, keep the rest
    local python="$1"
    shift
    "$python" - "$CONFIG_FILE" "$@" <<'PY'
import os, re, sys
path, pairs = sys.argv[1], sys.argv[2:]
with open(path) as fh:
    text = fh.read()
for key, value in zip(pairs[::2], pairs[1::2]):
    line = f"{key} = {value}"
    text, found = re.subn(rf"^{re.escape(key)}[ \t]*=.*$", lambda m: line, text, count=1, flags=re.M)
    if not found:
        text = text.rstrip("\n") + "\n" + line + "\n"
st = os.stat(path)
with open(path + ".tmp", "w") as fh:
    fh.write(text)
os.chown(path + ".tmp", st.st_uid, st.st_gid)
os.chmod(path + ".tmp", st.st_mode & 0o7777)
os.replace(path + ".tmp", path)
PY
}

tls_config_update() {  # an existing config moves behind the front; other edits are kept
    local venv="$1" current
    current="$("$venv/bin/python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("base_url", ""))' "$CONFIG_FILE")"
    if [ -z "$BASE_URL" ]; then
        case "$current" in
            https://*) BASE_URL="$current" ;;
            *) BASE_URL="$(default_base_url)" ;;
        esac
    fi
    say "updating $CONFIG_FILE for the TLS front (base_url = $BASE_URL, host = 127.0.0.1)"
    local pairs=(base_url "$(toml_string "$BASE_URL")" host '"127.0.0.1"' secure_cookies true trusted_proxy true)
    [ -z "$(tls_ca_path)" ] || pairs+=(tls_ca_file "$(toml_string "$(tls_ca_path)")")
    set_config "$venv/bin/python" "${pairs[@]}"
}

ensure_nginx() {
    have_nginx && return 0
    if [ -n "$WHEELHOUSE" ] && compgen -G "$WHEELHOUSE/debs/*.deb" >/dev/null; then
        say "installing nginx offline from $WHEELHOUSE/debs"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-download "$WHEELHOUSE"/debs/*.deb >/dev/null ||
            die "could not install nginx from $WHEELHOUSE/debs (made on another Debian release?)"
    elif command -v apt-get >/dev/null 2>&1; then
        say "installing Debian's nginx with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 nginx >/dev/null ||
            die "nginx is not installed and apt-get could not install it (offline?). On a machine with the same Debian release and network, run scripts/wheelhouse.sh --with-nginx DIR and pass --wheelhouse DIR here, or install nginx first."
    else
        die "the TLS front needs Debian's nginx, and there is no apt-get to install it"
    fi
    have_nginx || die "nginx is still missing after installing it"
}

tls_certificate() {  # before init, so the client set-up it prints can name the CA
    local venv="$1" tls_dir="$CONFIG_DIR/tls" host
    ensure_nginx
    id -gn "$NGINX_USER" >/dev/null 2>&1 || die "no user $NGINX_USER for nginx's workers (--nginx-user)"
    mkdir -p "$tls_dir"
    chown "root:$SVC_USER" "$tls_dir"
    chmod 0750 "$tls_dir"
    if [ "$TLS" = self ]; then
        host="$("$venv/bin/python" -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).hostname or "")' "$BASE_URL")"
        say "making a server certificate for $host, signed by the local CA in $tls_dir"
        HEXVAULT_CONFIG="$CONFIG_FILE" "$venv/bin/hexvault" front self-signed --dir "$tls_dir" --host "$host" >&2
    else
        say "installing the certificate $TLS_CERT and its key into $tls_dir"
        install -m 0644 -o root -g root "$TLS_CERT" "$tls_dir/server.pem.new"
        install -m 0600 -o root -g root "$TLS_KEY" "$tls_dir/server.key.new"
        mv -f "$tls_dir/server.pem.new" "$tls_dir/server.pem"
        mv -f "$tls_dir/server.key.new" "$tls_dir/server.key"
        if [ -n "$TLS_CA" ]; then install -m 0644 -o root -g root "$TLS_CA" "$tls_dir/ca.pem"; fi
    fi
}

tls_front() {  # nginx site, blob permissions for nginx, reload
    local venv="$1" tls_dir="$CONFIG_DIR/tls" ngroup
    ngroup="$(id -gn "$NGINX_USER")"
    mkdir -p "$NGINX_DIR/sites-available" "$NGINX_DIR/sites-enabled"
    HEXVAULT_CONFIG="$CONFIG_FILE" "$venv/bin/hexvault" front config --cert "$tls_dir/server.pem" \
        --key "$tls_dir/server.key" --https-listen "$HTTPS_PORT" --http-listen "$HTTP_PORT" \
        --output "$NGINX_DIR/sites-available/hexvault"
    ln -sfn ../sites-available/hexvault "$NGINX_DIR/sites-enabled/hexvault"
    # nginx streams blobs itself (X-Accel-Redirect, the open mirror): its group reads blobs/ and
    # nothing else. Set-gid folders hand the group to what Hexvault writes later (files are 0640).
    chmod 0751 "$DATA_DIR"
    mkdir -p "$DATA_DIR/blobs"
    chown "$SVC_USER" "$DATA_DIR/blobs"
    chgrp -R "$ngroup" "$DATA_DIR/blobs"
    find "$DATA_DIR/blobs" -type d -exec chmod 2750 {} +
    find "$DATA_DIR/blobs" -type f ! -name '.tmp-*' -exec chmod 0640 {} +
    if [ "$NGINX_DIR" != /etc/nginx ]; then
        say "wrote the nginx site $NGINX_DIR/sites-available/hexvault: include it in your nginx and reload it"
    elif ! "$(nginx_bin)" -t -q; then
        die "nginx refused the configuration (see above); the site is $NGINX_DIR/sites-available/hexvault"
    elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl enable --quiet nginx
        systemctl reload-or-restart nginx  # a reload: old workers finish their connections
        say "nginx reloaded: Hexvault is at $BASE_URL"
    elif [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
        "$(nginx_bin)" -s reload
        say "nginx reloaded: Hexvault is at $BASE_URL"
    else
        say "nginx is not running: start it (systemctl start nginx, or nginx)"
    fi
    if [ -n "$(tls_ca_path)" ]; then
        say "clients must trust the CA $(tls_ca_path) (served at $BASE_URL/ca.pem); compare its fingerprint:"
        openssl x509 -noout -fingerprint -sha256 -in "$(tls_ca_path)" >&2 || true
    fi
}

prod_install() {
    if [ "${#dev_only[@]}" -gt 0 ]; then
        die "${dev_only[*]}: only with --dev"
    fi
    [ "$(id -u)" -eq 0 ] || die "a production install must run as root (sudo $PROG ...); for a development set-up use --dev"
    command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is required"

    PREFIX="$(abspath "${PREFIX:-/opt/hexvault}")"
    DATA_DIR="$(abspath "${DATA_DIR:-/var/lib/hexvault}")"
    CONFIG_DIR="$(abspath "${CONFIG_DIR:-/etc/hexvault}")"
    UNIT_DIR="$(abspath "${UNIT_DIR:-/etc/systemd/system}")"
    BIN_DIR="$(abspath "${BIN_DIR:-/usr/local/bin}")"
    SVC_USER="${SVC_USER:-hexvault}"
    HOST="${HOST:-0.0.0.0}"
    if [ -n "$TLS" ]; then
        # Behind the front, Hexvault is reached through nginx only.
        [ "$HOST" = 0.0.0.0 ] || [ "$HOST" = 127.0.0.1 ] || warn "--host $HOST ignored: behind the TLS front Hexvault listens on 127.0.0.1"
        HOST=127.0.0.1
        HTTPS_PORT="${HTTPS_PORT:-443}" HTTP_PORT="${HTTP_PORT:-80}"
        NGINX_DIR="$(abspath "${NGINX_DIR:-/etc/nginx}")"
        NGINX_USER="${NGINX_USER:-www-data}"
    fi
    CONFIG_FILE="$CONFIG_DIR/hexvault.toml"
    local venv="$PREFIX/venv"
    check_not_system_dir "$PREFIX" --prefix
    check_not_system_dir "$DATA_DIR" --data-dir
    check_not_system_dir "$CONFIG_DIR" --config-dir
    case "$SVC_USER" in
        root|"") die "--user must name an unprivileged user" ;;
    esac

    # What to install: the wheelhouse, this checkout, or the wheelhouse this script sits in.
    local spec source_desc
    if [ -z "$WHEELHOUSE" ] && [ ! -f "$SCRIPT_DIR/setup.cfg" ] && compgen -G "$SCRIPT_DIR/hexvault-*.whl" >/dev/null; then
        WHEELHOUSE="$SCRIPT_DIR"
    fi
    if [ -n "$WHEELHOUSE" ]; then
        compgen -G "$WHEELHOUSE/hexvault-*.whl" >/dev/null ||
            die "no hexvault-*.whl in $WHEELHOUSE (make it with scripts/wheelhouse.sh)"
        spec=hexvault
        source_desc="the wheelhouse $WHEELHOUSE (offline)"
    else
        [ -f "$SCRIPT_DIR/setup.cfg" ] || die "no Hexvault source next to $PROG; pass --wheelhouse DIR"
        spec="$SCRIPT_DIR"
        source_desc="the checkout $SCRIPT_DIR"
    fi

    local template=""
    for t in "$SCRIPT_DIR/scripts/hexvault.service.in" "$SCRIPT_DIR/hexvault.service.in" "${WHEELHOUSE:-/nonexistent}/hexvault.service.in"; do
        if [ -f "$t" ]; then template="$t"; break; fi
    done
    [ -n "$template" ] || die "cannot find the systemd unit template scripts/hexvault.service.in"

    if [ "$PORT" -lt 1024 ]; then
        warn "port $PORT is privileged: the hardened unit cannot bind it unless you grant"
        warn "CAP_NET_BIND_SERVICE in a drop-in (see the comments in $template)"
    fi

    # --- the system user and group ----------------------------------------------------------
    if ! getent group "$SVC_USER" >/dev/null; then
        say "creating the system group $SVC_USER"
        groupadd --system "$SVC_USER"
    fi
    if ! id -u "$SVC_USER" >/dev/null 2>&1; then
        say "creating the system user $SVC_USER"
        useradd --system --gid "$SVC_USER" --home-dir "$DATA_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "Hexvault registry" "$SVC_USER"
    fi

    # --- the virtualenv with Hexvault ------------------------------------------------------
    umask 022
    mkdir -p "$PREFIX"
    # The service user must be able to run the interpreter: a venv made from a Python under
    # /root or /home (pyenv, say) is unusable for it and for the unit (ProtectHome=yes).
    if [ -x "$venv/bin/python" ] && as_service_user "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
        say "upgrading Hexvault in $venv from $source_desc"
    else
        if [ -z "$PYTHON" ]; then
            local c
            for c in /usr/bin/python3 /usr/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3.11 \
                     /usr/local/bin/python3 /usr/local/bin/python3.13 /usr/local/bin/python3.12 /usr/local/bin/python3.11; do
                if python_ok "$c" && as_service_user "$c" -c pass >/dev/null 2>&1; then PYTHON="$c"; break; fi
            done
        fi
        if [ -z "$PYTHON" ] && [ -z "$WHEELHOUSE" ] && command -v apt-get >/dev/null 2>&1; then
            say "installing python3 and python3-venv with apt-get"
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv >/dev/null
            python_ok /usr/bin/python3 && PYTHON=/usr/bin/python3
        fi
        [ -n "$PYTHON" ] ||
            die "need a system Python >= 3.11 with venv that $SVC_USER can run (Debian: apt-get install python3 python3-venv), or --python PATH"
        python_ok "$PYTHON" || die "$PYTHON is not Python >= 3.11 with the venv module"
        as_service_user "$PYTHON" -c pass >/dev/null 2>&1 ||
            die "$SVC_USER cannot run $PYTHON (is it under /root or /home?); pass --python with a system Python"
        [ -e "$venv" ] && { say "replacing the unusable virtualenv $venv"; rm -rf "$venv"; }
        say "creating the virtualenv $venv with $PYTHON"
        "$PYTHON" -m venv "$venv"
        say "installing Hexvault into $venv from $source_desc"
    fi
    local pip=("$venv/bin/python" -m pip install "${PIP_QUIET[@]}")
    if [ -n "$WHEELHOUSE" ]; then
        pip+=(--no-index --find-links "$WHEELHOUSE")
    fi
    # Dependencies first (upgraded where the source asks for newer ones), then Hexvault itself
    # reinstalled even when its version did not change.
    "${pip[@]}" --upgrade "$spec"
    "${pip[@]}" --force-reinstall --no-deps "$spec"
    [ -x "$venv/bin/hexvault" ] || die "pip did not install $venv/bin/hexvault"

    # --- configuration ---------------------------------------------------------------------
    if [ ! -d "$CONFIG_DIR" ]; then
        mkdir -p "$CONFIG_DIR"
        chown "root:$SVC_USER" "$CONFIG_DIR"
        chmod 0750 "$CONFIG_DIR"
    fi
    if [ -e "$CONFIG_FILE" ]; then
        say "keeping the existing $CONFIG_FILE"
        local configured
        configured="$("$venv/bin/python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("data_dir", ""))' "$CONFIG_FILE")" ||
            die "cannot read $CONFIG_FILE"
        if [ -n "$configured" ] && [ "$configured" != "$DATA_DIR" ]; then
            say "using data_dir = $configured from $CONFIG_FILE"
            DATA_DIR="$configured"
            check_not_system_dir "$DATA_DIR" "data_dir in $CONFIG_FILE"
        fi
        reconcile_database_url "$venv/bin/python"
        [ -z "$TLS" ] || tls_config_update "$venv"
    else
        if [ -z "$BASE_URL" ]; then
            BASE_URL="$(default_base_url)"
        fi
        DB_URL="$DATABASE_URL"
        say "writing $CONFIG_FILE (base_url = $BASE_URL${DB_URL:+, database_url = $(without_password "$DB_URL")})"
        local tmp
        tmp="$(mktemp "$CONFIG_DIR/.hexvault.toml.XXXXXX")"
        cat >"$tmp" <<EOF
# Hexvault configuration, written by install.sh on $(date -u +%Y-%m-%d).
# Each setting can also be overridden by an environment variable HEXVAULT_<NAME>
# (e.g. HEXVAULT_PORT). Restart the service after a change: systemctl restart hexvault
data_dir = $(toml_string "$DATA_DIR")
host = $(toml_string "$HOST")
port = $PORT
# The URL clients use; it appears in the set-up commands Hexvault prints and shows.
base_url = $(toml_string "$BASE_URL")
# Organization that receives API calls without /repos/ORG (defaults to the one made by init):
# default_organization = $(toml_string "$ORG")
EOF
        if [ -n "$DB_URL" ]; then
            cat >>"$tmp" <<EOF
# The PostgreSQL database (this file holds its password: keep it 0640 root:$SVC_USER).
database_url = $(toml_string "$DB_URL")
EOF
        fi
        if [ -n "$TLS" ]; then
            cat >>"$tmp" <<EOF
# Behind the TLS front (nginx, written by install.sh --tls-*):
secure_cookies = true
trusted_proxy = true
EOF
            [ -z "$(tls_ca_path)" ] || printf 'tls_ca_file = %s\n' "$(toml_string "$(tls_ca_path)")" >>"$tmp"
        fi
        chown "root:$SVC_USER" "$tmp"
        chmod 0640 "$tmp"
        mv -f "$tmp" "$CONFIG_FILE"
    fi

    [ -z "$TLS" ] || tls_certificate "$venv"

    # --- data directory --------------------------------------------------------------------
    mkdir -p "$DATA_DIR"
    chown "$SVC_USER:$SVC_USER" "$DATA_DIR"
    chmod 0750 "$DATA_DIR"
    as_service_user test -r "$CONFIG_FILE" || die "$SVC_USER cannot read $CONFIG_FILE"

    check_pg_dump as_service_user
    if is_initialized; then
        already_initialized
        migrate_schema "$venv/bin/hexvault"
    elif interrupted_init; then
        :
    else
        say "initializing $DATA_DIR${DB_URL:+ and the database $(without_password "$DB_URL")} as $SVC_USER (admin: $ADMIN, organization: $ORG)"
        say "the admin password below is shown only once: store it safely"
        (umask 027 && as_service_user "$venv/bin/hexvault" init "${INIT_ARGS[@]}") ||
            die "hexvault init failed (see the error above)${DB_URL:+; if another node initialized this database, mount the data directory it shares at $DATA_DIR and run $PROG again}"
        is_initialized || die "hexvault init finished but $DATA_DIR/secret_key does not exist"
    fi

    [ -z "$TLS" ] || tls_front "$venv"

    # --- systemd unit ----------------------------------------------------------------------
    local unit="$UNIT_DIR/hexvault.service" text
    text="$(<"$template")"
    text="${text//@PREFIX@/"$PREFIX"}"
    text="${text//@CONFIG@/"$CONFIG_DIR"}"
    text="${text//@USER@/"$SVC_USER"}"
    text="${text//@DATA@/"$DATA_DIR"}"
    mkdir -p "$UNIT_DIR"
    printf '%s\n' "$text" >"$unit.tmp"
    chmod 0644 "$unit.tmp"
    mv -f "$unit.tmp" "$unit"
    say "wrote $unit"

    # --- the admin command ----------------------------------------------------------------
    # Run as root, the CLI would leave root-owned files in the data directory that the service
    # cannot write; this command always runs it as the service user with the installed config.
    local wrapper="$BIN_DIR/hexvault" marker="# hexvault admin command, written by install.sh"
    if [ -e "$wrapper" ] && ! grep -qF "$marker" "$wrapper" 2>/dev/null; then
        warn "$wrapper exists and was not written by install.sh; leaving it (use $venv/bin/hexvault)"
    else
        mkdir -p "$BIN_DIR"
        local q_user q_config q_program
        q_user="$(printf %q "$SVC_USER")"
        q_config="$(printf %q "$CONFIG_FILE")"
        q_program="$(printf %q "$venv/bin/hexvault")"
        {
            printf '#!/bin/sh\n%s\n' "$marker"
            printf '# Runs the Hexvault CLI as %s with %s; file arguments (import, backup,\n' "$SVC_USER" "$CONFIG_FILE"
            printf '# restore) must be readable or writable by that user.\n'
            printf 'if [ "$(id -u)" -eq 0 ]; then\n'
            printf '    exec runuser -u %s -- env HEXVAULT_CONFIG=%s %s "$@"\n' "$q_user" "$q_config" "$q_program"
            printf 'elif [ "$(id -un)" = %s ]; then\n' "$q_user"
            printf '    HEXVAULT_CONFIG=%s exec %s "$@"\n' "$q_config" "$q_program"
            printf 'else\n'
            printf '    echo "hexvault: run this as root (sudo hexvault ...) or as %s" >&2\n' "$SVC_USER"
            printf '    exit 1\n'
            printf 'fi\n'
        } >"$wrapper.tmp"
        chmod 0755 "$wrapper.tmp"
        mv -f "$wrapper.tmp" "$wrapper"
        say "wrote the admin command $wrapper (e.g. sudo hexvault org list)"
    fi

    local manual
    manual="$(printf 'sudo -u %q HEXVAULT_CONFIG=%q %q serve' "$SVC_USER" "$CONFIG_FILE" "$venv/bin/hexvault")"
    manual+="$(printf '\n  (without sudo: runuser -u %q -- env HEXVAULT_CONFIG=%q %q serve)' "$SVC_USER" "$CONFIG_FILE" "$venv/bin/hexvault")"
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload
        if [ "$NO_START" -eq 1 ]; then
            say "done (not started). Start it with: systemctl enable --now hexvault"
        else
            systemctl enable --quiet hexvault
            systemctl restart hexvault
            sleep 2
            if systemctl is-active --quiet hexvault; then
                say "hexvault is running; logs: journalctl -u hexvault -f"
            else
                systemctl status --no-pager hexvault >&2 || true
                die "hexvault did not stay up; see journalctl -u hexvault"
            fi
        fi
    else
        say "systemd is not running here, so the service was not started. Start it by hand with:"
        printf '  %s\n' "$manual" >&2
    fi
    say "configuration: $CONFIG_FILE   data: $DATA_DIR   program: $venv/bin/hexvault"
}

if [ "$MODE" = dev ]; then
    dev_install
else
    prod_install
fi
