#!/usr/bin/env bash
# man.sh VENV: build the man pages with Sphinx's man builder from the same
# sources as the HTML docs (docs/man/conf.py: docs/conf.py plus man_pages; the
# source directory is docs/), with -W, then check that
# each page exists and renders with man(1) without warnings.
set -euo pipefail
venv=$1
out=docs/_build/man
rm -rf "$out"
"$venv/bin/sphinx-build" -q -W --keep-going -b man -c docs/man docs "$out"
for page in twistd-tcpecho.1 tcpecho-client.1; do
    test -s "$out/$page" || { echo "man: $out/$page was not built" >&2; exit 1; }
    if command -v man >/dev/null 2>&1; then
        warnings=$(MANWIDTH=80 man --warnings -l "$out/$page" 2>&1 >/dev/null || true)
        if [ -n "$warnings" ]; then
            echo "man: $page renders with warnings:" >&2
            echo "$warnings" >&2
            exit 1
        fi
    fi
    echo "man: $out/$page ($(wc -l <"$out/$page") lines)"
done
