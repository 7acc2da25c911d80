#!/usr/bin/env bash
# Build a wheelhouse for an offline (air-gapped) Hexvault install.
#
#   scripts/wheelhouse.sh [--python PYTHON] [--with-nginx] [OUT]   (OUT defaults to dist/wheelhouse)
#
# Run it on a machine with PyPI access and the SAME Python minor version and CPU architecture
# as the server (Debian 12: Python 3.11, x86_64 or aarch64): some dependencies ship compiled,
# version-specific wheels. OUT receives the hexvault wheel, a wheel of every dependency, the
# build backend (setuptools, wheel: for `install.sh --dev --wheelhouse`), and copies of
# install.sh and hexvault.service.in, so OUT alone is enough on the server. --with-nginx adds
# Debian's nginx packages in OUT/debs (apt-get download; the same Debian release as the server)
# for `install.sh --tls-*` on a server without apt sources.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=python3
OUT=""
WITH_NGINX=0

usage() { sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --python) [ "$#" -ge 2 ] || { echo "--python needs a value" >&2; exit 2; }; PYTHON="$2"; shift ;;
        --with-nginx) WITH_NGINX=1 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) [ -z "$OUT" ] || { echo "only one OUT directory" >&2; exit 2; }; OUT="$1" ;;
    esac
    shift
done
OUT="${OUT:-$REPO/dist/wheelhouse}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    { echo "need Python >= 3.11 (got $("$PYTHON" --version 2>&1))" >&2; exit 1; }

# pip from a throw-away virtualenv, so the system Python needs no pip of its own.
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PYTHON" -m venv "$TMP/venv"
PIP=("$TMP/venv/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install --quiet --upgrade pip

rm -f "$OUT"/hexvault-*.whl   # no stale hexvault wheel next to the new one
echo "building wheels into $OUT" >&2
"${PIP[@]}" wheel --quiet --wheel-dir "$OUT" "$REPO"
"${PIP[@]}" wheel --quiet --wheel-dir "$OUT" setuptools wheel
# Check that the wheelhouse is complete: an offline install into a scratch virtualenv.
"$PYTHON" -m venv "$TMP/check"
"$TMP/check/bin/python" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$OUT" hexvault
cp "$REPO/install.sh" "$OUT/install.sh"
cp "$REPO/scripts/hexvault.service.in" "$OUT/hexvault.service.in"
chmod +x "$OUT/install.sh"
if [ "$WITH_NGINX" -eq 1 ]; then
    # nginx and nginx-common are all a Debian server lacks (their other dependencies are in
    # every base system); install.sh installs them with apt-get from OUT/debs.
    mkdir -p "$OUT/debs"
    rm -f "$OUT"/debs/*.deb
    (cd "$OUT/debs" && apt-get download nginx nginx-common) >&2
fi

PYVER="$("$PYTHON" -c 'import platform, sys; print(f"Python {sys.version_info[0]}.{sys.version_info[1]} on {platform.machine()}")')"
cat >&2 <<MSG

Wheelhouse ready: $OUT ($(ls "$OUT"/*.whl | wc -l) wheels, built for $PYVER).
Copy it to the air-gapped server (same Python version and architecture), e.g.
  tar -C "$(dirname "$OUT")" -czf hexvault-wheelhouse.tar.gz "$(basename "$OUT")"
then on the server:
  tar -xzf hexvault-wheelhouse.tar.gz
  sudo ./$(basename "$OUT")/install.sh --wheelhouse ./$(basename "$OUT") --base-url http://YOUR-SERVER:8000
MSG
