"""
Experiment (issue 13): where each microsecond of a server's CPU per message
goes: the kernel, the interpreter, libc, the rest (``perf record``).

    python benchmarks/experiments/cpusplit.py [--points 1x64B,10x1KiB,100x1KiB] [SERVER ...]

SERVER is a built-in of ``benchmarks/run.py`` (default: c_epoll, uvloop,
tcpecho) or ``NAME='command with {port}'``.  Each server runs pinned to CPU 0
and is driven from CPU 1 by the C load generator; for each point, the
server's CPU time per message comes from ``/proc/PID/schedstat`` (as in
``run.py``), and ``perf record -e cpu-clock`` (the one event this virtual
machine has) samples it meanwhile, split by shared object.  The two together
give microseconds per message in the kernel and in each part of user space.

The points are interleaved: each point runs on every server in turn,
``--reps`` times (medians), so what else the machine does hits all alike.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

import instructions  # noqa: E402
import run  # noqa: E402

#: How perf names a shared object -> the column it is counted in.
GROUPS = [
    ("kernel", re.compile(r"\[kernel")),
    ("interpreter", re.compile(r"libpython|^python")),
    ("libc", re.compile(r"libc\.so|libm\.so|ld-linux")),
]


def group(dso: str) -> str:
    for name, pattern in GROUPS:
        if pattern.search(dso):
            return name
    return "other"


def split(perfData: Path) -> dict[str, float]:
    """Shares of the samples per group (kernel, interpreter, libc, other)."""
    out = subprocess.run(
        ["perf", "report", "-i", str(perfData), "--sort", "dso", "--stdio"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shares: dict[str, float] = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*\S)", line)
        if m and not line.startswith("#"):
            key = group(m.group(2))
            shares[key] = shares.get(key, 0.0) + float(m.group(1)) / 100
    return shares


def one(
    pid: int, port: int, point: tuple[int, int], secs: float, loadgen: Path, tmp: Path
) -> dict[str, float]:
    conns, size = point
    data = tmp / "perf.data"
    cpu0 = run.cpuSeconds(pid)
    perf = subprocess.Popen(
        ["perf", "record", "-q", "-e", "cpu-clock", "-F", "5000", "-p", str(pid), "-o", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = json.loads(
            subprocess.run(
                [
                    "taskset",
                    "-c",
                    "1",
                    str(loadgen),
                    "pingpong",
                    str(port),
                    str(conns),
                    str(size),
                    str(secs),
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=secs + 30,
            ).stdout
        )
    finally:
        perf.send_signal(2)  # SIGINT: perf writes its data and exits
        try:
            perf.wait(30)
        except subprocess.TimeoutExpired:
            perf.kill()
            perf.wait()
    usPerMsg = (run.cpuSeconds(pid) - cpu0) / result["msgs"] * 1e6
    row = {k: usPerMsg * v for k, v in split(data).items()}
    row["total"] = usPerMsg
    row["msgs_per_s"] = result["msgs_per_s"]
    return row


def main() -> int:
    p = argparse.ArgumentParser(prog="cpusplit.py")
    p.add_argument("servers", nargs="*", metavar="NAME | NAME=CMD")
    p.add_argument("--points", default="1x64B,10x1KiB,100x1KiB")
    p.add_argument("--secs", type=float, default=2.0)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    points = [instructions.parsePoint(t) for t in args.points.split(",")]
    servers = instructions.serverCommands(args.servers or ["c_epoll", "uvloop", run.PROJECT])
    loadgen = run.buildC(HERE / "loadgen.c", "loadgen")
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tcpproto-cpusplit-") as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        up = {name: stack.enter_context(run.server(cmd, True)) for name, cmd in servers.items()}
        for rep in range(args.reps):
            for point in points:
                label = f"{point[0]} x {run.sizeLabel(point[1])}"
                names = list(up)
                names = names[rep % len(names) :] + names[: rep % len(names)]
                for name in names:
                    port, pid = up[name]
                    rows.setdefault((label, name), []).append(
                        one(pid, port, point, args.secs, loadgen, tmp)
                    )
    cols = ["total", "kernel", "interpreter", "libc", "other", "msgs_per_s"]
    print("| point | server | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for (label, name), runs in rows.items():
        med = {c: statistics.median(r.get(c, 0.0) for r in runs) for c in cols}
        cells = [f"{med[c]:.2f}" for c in cols[:-1]] + [f"{med['msgs_per_s']:,.0f}"]
        print(f"| {label} | {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
