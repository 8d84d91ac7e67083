#!/usr/bin/env bash
# System packages the tests and the benchmark smoke run use, installed when
# missing (Debian): haproxy (tests/test_haproxy.py, which skips, saying why,
# without it), OpenBSD netcat (`nc -N`, the benchmark's client peer, which
# is skipped with a note without it), and for the tests and traces that run
# in a network namespace with packet loss: nftables (`nft`), iproute2 (`ip`,
# `ss`) and tcpdump; and python3-doc, whose objects.inv the docs build links
# Python names with (offline); valgrind, whose callgrind counts the server's
# instructions per message (benchmarks/instructions.py).  Runs as root in CI; elsewhere it uses sudo when there
# is one, and otherwise only says what is missing.
set -euo pipefail

missing=()
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
nc -h 2>&1 | grep -q 'OpenBSD netcat' || missing+=(netcat-openbsd)
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have nft || missing+=(nftables)
{ have ip && have ss; } || missing+=(iproute2)
have tcpdump || missing+=(tcpdump)
# Python's intersphinx inventory, read offline by the docs build (.ci/docs.sh).
[ -f /usr/share/doc/python3/html/objects.inv ] || missing+=(python3-doc)
have valgrind || missing+=(valgrind)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "system-deps: missing ${missing[*]} and this user cannot install them (their tests are skipped; the instruction count needs valgrind)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${missing[*]} and there is no apt-get (their tests are skipped)" >&2
    exit 0
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
