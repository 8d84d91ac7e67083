#!/usr/bin/env bash
# find-python.sh VERSION...: print the path of a CPython interpreter for the
# first VERSION (3.10, 3.13, ...) found on this machine, with the ssl and venv
# modules a test leg needs.  It looks, in order, in pyenv's versions directory
# (${PYENV_ROOT:-~/.pyenv}/versions/VERSION.*, newest patch release first), in
# /usr/bin and /usr/local/bin (Debian's python3.X packages), then on PATH.
# pyenv shims are skipped: they fail for a version that is not selected.
#
# Nothing is downloaded: CI may fetch only from PyPI, Debian and npm, which
# hold no CPython builds for this Debian release; the machine image carries
# pyenv's builds.  When none is found it says so on stderr and exits 1.
set -euo pipefail

usable() {
    "$1" -c 'import ssl, sys, venv, ensurepip; sys.exit(sys.implementation.name != "cpython")' \
        >/dev/null 2>&1
}

for version in "$@"; do
    candidates=()
    root=${PYENV_ROOT:-${HOME:-/root}/.pyenv}
    if [ -d "$root/versions" ]; then
        while IFS= read -r dir; do
            candidates+=("$dir/bin/python$version")
        done < <(find "$root/versions" -maxdepth 1 -name "$version.*" -printf '%p\n' \
                 | grep -E "/$version\.[0-9]+$" | sort -V -r)
    fi
    candidates+=("/usr/bin/python$version" "/usr/local/bin/python$version")
    if onpath=$(command -v "python$version" 2>/dev/null) && [[ $onpath != */shims/* ]]; then
        candidates+=("$onpath")
    fi
    for python in "${candidates[@]}"; do
        if [ -x "$python" ] && usable "$python"; then
            echo "$python"
            exit 0
        fi
    done
done
echo "find-python: no usable CPython $* on this machine (looked in pyenv's versions," \
     "/usr/bin, /usr/local/bin and PATH); install one (pyenv install, or Debian's" \
     "python3.X-venv), or name one in PY_FLOOR / PY_NEWEST for .ci/run" >&2
exit 1
