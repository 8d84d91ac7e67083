#!/usr/bin/env bash
# typing.sh VENV: the downstream typing check.  tests/typing/ holds a user's
# program (downstream.py), which must pass `mypy --strict`, and files named
# must_fail_*.py, each of which must fail with exit status 1 and exactly the
# errors announced by its `# E: message` comments (each for the line after
# it).  They are copied to an empty directory and checked there with
# tests/typing/mypy.ini, so mypy sees the installed tcpproto (its py.typed)
# and none of this project's own settings.
set -euo pipefail
venv=$(cd "$1" && pwd)
src=$PWD/tests/typing
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$src"/*.py "$src/mypy.ini" "$tmp"/
cd "$tmp"
"$venv/bin/mypy" --config-file mypy.ini --no-incremental --cache-dir=/dev/null downstream.py
"$venv/bin/python" - "$venv/bin/mypy" must_fail_*.py <<'PY'
import re, subprocess, sys

mypy, files = sys.argv[1], sys.argv[2:]
failed = False
for name in files:
    with open(name, encoding="utf-8") as f:
        lines = f.read().splitlines()
    expected = {
        number + 2: m.group(1).strip()
        for number, line in enumerate(lines)
        if (m := re.match(r"\s*# E: (.*)$", line))
    }
    run = subprocess.run(
        [mypy, "--config-file", "mypy.ini", "--no-incremental", "--cache-dir=/dev/null", name],
        capture_output=True, text=True,
    )
    got = {}
    for line in run.stdout.splitlines():
        m = re.match(rf"{re.escape(name)}:(\d+): error: (.*?)(  \[[a-z-]+\])?$", line)
        if m:
            got.setdefault(int(m.group(1)), []).append(m.group(2))
    ok = (
        run.returncode == 1
        and bool(expected)
        and set(got) == set(expected)
        and all(len(got[n]) == 1 and got[n][0].startswith(expected[n]) for n in expected)
    )
    if ok:
        print(f"typing: {name} fails as it must ({len(expected)} errors, as announced)")
    else:
        failed = True
        print(f"typing: {name} must fail (exit status 1) with exactly these errors:", file=sys.stderr)
        for n, text in sorted(expected.items()):
            print(f"  line {n}: {text}", file=sys.stderr)
        print(f"mypy exited {run.returncode}:\n{run.stdout}{run.stderr}", file=sys.stderr)
sys.exit(failed)
PY
