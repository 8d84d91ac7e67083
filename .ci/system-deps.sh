#!/usr/bin/env bash
# System packages the test suite uses, installed when missing (Debian):
# haproxy, for tests/test_haproxy.py (which skips, saying why, without it).
# Runs as root in CI; elsewhere it uses sudo when there is one, and otherwise
# only says what is missing.
set -euo pipefail

if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "system-deps: haproxy is missing and this user cannot install it (the HAProxy test will be skipped)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: haproxy is missing and there is no apt-get (the HAProxy test will be skipped)" >&2
    exit 0
fi
echo "system-deps: installing haproxy"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends haproxy >/dev/null
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]
