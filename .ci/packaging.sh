#!/usr/bin/env bash
# packaging.sh VENV OUTDIR: build the sdist, then the wheel from the unpacked
# sdist, into OUTDIR (python -m build, in isolated build environments, as a
# packager would: so the sdist is shown to build), then
# check them: twine check (metadata and README rendering), check-manifest
# (every committed file is in the sdist, or deliberately left out in
# pyproject.toml), the wheel holds the package, the twisted/plugins dropin and
# py.typed but no dropin.cache, and towncrier renders the pending newsfragments
# (an invalid fragment name fails here).
set -euo pipefail
venv=$1 out=$2
rm -rf "$out"
"$venv/bin/python" -m build --outdir "$out" . >"$out.log" 2>&1 || {
    cat "$out.log" >&2
    exit 1
}
rm -f "$out.log"
ls -l "$out"
"$venv/bin/twine" check --strict "$out"/*

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    "$venv/bin/check-manifest"
else
    echo "check-manifest: skipped (not a git checkout)"
fi

"$venv/bin/python" - "$out" <<'PY'
import sys, zipfile, glob
wheel = glob.glob(sys.argv[1] + "/tcpproto-*.whl")[0]
names = set(zipfile.ZipFile(wheel).namelist())
need = {"tcpproto/__init__.py", "tcpproto/py.typed", "twisted/plugins/tcpecho.py"}
missing = need - names
bad = {n for n in names if n.endswith("dropin.cache") or n.startswith("twisted/__init__")}
if missing or bad:
    sys.exit(f"wheel {wheel}: missing {sorted(missing)}, must not ship {sorted(bad)}")
print(f"wheel: {len(names)} files, dropin and py.typed present, no dropin.cache")
PY

fragments=$("$venv/bin/towncrier" build --draft --version next 2>&1) || {
    echo "$fragments" >&2
    exit 1
}
echo "towncrier: the newsfragments in changelog.d render"
