#!/usr/bin/env bash
# The docs job, offline: the Simplified Chinese catalogues of the guide are
# complete, then both editions build with -W (nitpicky: every reference
# resolves; Twisted's inventory is made from the installed Twisted, Python's
# comes from the Debian package python3-doc).  The editions are written side
# by side, as their language switch expects (-E: a fresh environment, so that
# an incremental rebuild cannot hide the warnings of pages it did not reread):
#   docs/_build/html/en/     English
#   docs/_build/html/zh_CN/  简体中文
# Usage: .ci/docs.sh   (PYTHON: the Python with the docs extra; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=docs/_build/html

if [ ! -f /usr/share/doc/python3/html/objects.inv ]; then
    echo "docs.sh: Python's inventory is missing: apt-get install python3-doc (.ci/system-deps.sh)" >&2
    exit 1
fi

echo "== docs: the zh_CN catalogues translate every guide message (none fuzzy)"
"$PY" scripts/check_translations.py

echo "== docs: English (-W, nitpicky)"
"$PY" -m sphinx -E -q -W --keep-going -b html docs "$OUT/en"

echo "== docs: 简体中文 (-W -D language=zh_CN)"
"$PY" -m sphinx -E -q -W --keep-going -b html -D language=zh_CN docs "$OUT/zh_CN"

cat >"$OUT/index.html" <<'HTML'
<!DOCTYPE html>
<meta charset="utf-8">
<meta http-equiv="refresh" content="0; url=en/index.html">
<title>tcpproto</title>
<p><a href="en/index.html">English</a> · <a href="zh_CN/index.html" hreflang="zh-CN">简体中文</a></p>
HTML
echo "docs: $OUT/en/index.html and $OUT/zh_CN/index.html"
