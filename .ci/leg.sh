#!/usr/bin/env bash
# leg.sh NAME PYTHON DIST TWISTED WORKDIR [COMMAND...]
#
# One test leg: a fresh venv made with PYTHON, a regular (not editable) install
# of DIST (the built sdist or wheel) with the test extra, Twisted pinned to
# TWISTED ("newest" for the newest release on PyPI), then the non-stress suite
# run from a fresh unpacked copy of the sdist -- so the tests that a user or a
# packager gets are the ones that run.  COMMAND replaces the default test
# command ("python -m pytest -m 'not stress'"); it runs in the unpacked tree
# with the venv's bin first on PATH.
#
# The sdist path is taken from $SDIST (the tests come from it whatever DIST is).
set -euo pipefail
name=$1 python=$2 dist=$3 twisted=$4 work=$5
shift 5
: "${SDIST:?SDIST must name the built sdist}"

leg="$work/$name"
rm -rf "$leg"
mkdir -p "$leg"
echo "-- leg $name: $("$python" -V 2>&1) ($python), Twisted $twisted, from $(basename "$dist")"

"$python" -m venv "$leg/venv"
pip=("$leg/venv/bin/python" -m pip)
install() {
    # (without the lines this machine's pip prints for its absent local indexes)
    "${pip[@]}" install -q "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
}
install --upgrade pip
if [ "$twisted" = newest ]; then
    # A fresh venv gets the newest Twisted that PyPI has for this Python.
    install "$dist[test]"
else
    install "$dist[test]" "Twisted[tls]==$twisted"
fi
"${pip[@]}" check 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }

got=$("$leg/venv/bin/python" -c 'import twisted; print(twisted.__version__)')
echo "-- leg $name: installed tcpproto $("$leg/venv/bin/python" -c \
    'from importlib.metadata import version; print(version("tcpproto"))'), Twisted $got"
if [ "$twisted" != newest ] && [ "$got" != "$twisted" ]; then
    echo "leg $name: expected Twisted $twisted, got $got" >&2
    exit 1
fi

mkdir "$leg/src"
tar -xzf "$SDIST" -C "$leg/src" --strip-components=1
cd "$leg/src"
export PATH="$leg/venv/bin:$PATH"
if [ $# -gt 0 ]; then
    "$@"
else
    python -m pytest -p no:cacheprovider -q -m "not stress"
fi
