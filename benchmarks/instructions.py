#!/usr/bin/env python3
"""
User-space instructions per message, counted exactly with callgrind.

    python benchmarks/instructions.py                      # tcpecho, uvloop, c_epoll
    python benchmarks/instructions.py --points 1x64B,100x1KiB --top 25 tcpecho
    python benchmarks/instructions.py mine='twistd -n --pidfile= tcpecho --listen tcp:{port}'

Wall-clock rates on a shared 2-CPU virtual machine move by 30% between
repetitions, and 80-90% of a server's CPU time per message is the kernel's,
the same work for every server that makes the same system calls (``strace
-c``: one ``epoll_wait``, one read and one write per message for all three).
What differs between servers is their own code, and callgrind counts it
exactly: the same binary, inputs and point give the same count within about
1% (3% at 100 connections, where the number of events per ``epoll_wait``
varies), whatever else the machine is doing.

Each server runs under ``valgrind --tool=callgrind`` with instrumentation off
while it starts; for each point, instrumentation is switched on only while
the C load generator (``loadgen.c``) drives it, the counts are dumped, and the
total is divided by the messages answered.  ``--top N`` prints the N C
functions with the largest inclusive share per message (for a Python server:
the interpreter's eval loop, ``socket.recv``, ``take_gil``, ``malloc`` ...),
which is where benchmarks/RESULTS.md's breakdowns come from.

Servers are the built-ins of ``run.py`` (``tcpecho``, ``uvloop``,
``c_epoll``, ...) or ``NAME='command with {port}'``.  Only 127.0.0.1 is used;
every point is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (the built-in servers, the port and build helpers)

DEFAULT_SERVERS = ["c_epoll", "uvloop", run.PROJECT]
DEFAULT_POINTS = "1x64B,10x1KiB,100x1KiB,100x16KiB"
SIZES = {"64B": 64, "1KiB": 1024, "16KiB": 16384}


def parsePoint(text: str) -> tuple[int, int]:
    conns, _, size = text.partition("x")
    if size not in SIZES or not conns.isdigit():
        raise argparse.ArgumentTypeError(f"bad point {text!r}: CONNSxSIZE, SIZE one of {SIZES}")
    return int(conns), SIZES[size]


def totalInstructions(outFile: Path) -> int:
    """The ``totals:`` line of a callgrind dump: instructions executed (Ir)."""
    for line in outFile.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {outFile}")


def top(outFile: Path, n: int) -> list[tuple[int, str]]:
    """The ``n`` functions with the largest inclusive count, as callgrind_annotate has them."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=99", str(outFile)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)", line)
        if m:
            rows.append((int(m.group(1).replace(",", "")), m.group(2).strip()))
    rows.sort(reverse=True)
    return rows[:n]


def measure(
    name: str, cmd: str, point: tuple[int, int], secs: float, loadgen: Path, workdir: Path
) -> tuple[float, Path]:
    """Instructions per message of ``cmd`` at ``point``, and the dump they came from."""
    conns, size = point
    port = run.freePort()
    out = workdir / f"{name}-{conns}x{size}.cg"
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        *shlex.split(cmd.format(port=port)),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not run.waitPort(port, 120):
            raise RuntimeError(f"{name} did not listen on {port} under valgrind")
        subprocess.run(
            ["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True
        )
        result = json.loads(
            subprocess.run(
                [str(loadgen), "pingpong", str(port), str(conns), str(size), str(secs)],
                capture_output=True,
                text=True,
                check=True,
                timeout=secs + 60,
            ).stdout
        )
        subprocess.run(
            ["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True
        )
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    msgs = int(result["msgs"])
    if not msgs or result["errors"] or result["mismatched"]:
        raise RuntimeError(f"{name}: ping-pong failed under valgrind: {result}")
    return totalInstructions(out) / msgs, out


def serverCommands(specs: Sequence[str]) -> dict[str, str]:
    """``NAME`` (a built-in of run.py) or ``NAME=CMD`` -> name: command with {port}."""
    subst = {
        "python": sys.executable,
        "bindir": str(run.BINDIR),
        "peers": str(HERE / "peers"),
        "c_epoll": str(run.buildC(HERE / "peers" / "c_epoll.c", "c_epoll")),
    }
    servers = {}
    for spec in specs:
        name, _, cmd = spec.partition("=")
        cmd = cmd or run.BUILTIN[name]
        for key, value in subst.items():
            cmd = cmd.replace("{" + key + "}", value)
        servers[name] = cmd
    return servers


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="benchmarks/instructions.py", description=(__doc__ or "").split("\n")[1]
    )
    p.add_argument(
        "servers",
        nargs="*",
        metavar="NAME | NAME=CMD",
        help=f"servers (default {', '.join(DEFAULT_SERVERS)})",
    )
    p.add_argument(
        "--points", default=DEFAULT_POINTS, help=f"CONNSxSIZE,... (default {DEFAULT_POINTS})"
    )
    p.add_argument("--secs", type=float, default=4.0, help="load generator seconds per point")
    p.add_argument("--top", type=int, default=0, help="print the N largest functions per point")
    args = p.parse_args(argv)
    points = [parsePoint(t) for t in args.points.split(",")]
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"instructions.py: error: {tool} is needed (Debian: valgrind)")
    servers = serverCommands(args.servers or DEFAULT_SERVERS)
    with tempfile.TemporaryDirectory(prefix="tcpproto-instr-") as tmp:
        workdir = Path(tmp)
        loadgen = run.buildC(HERE / "loadgen.c", "loadgen")
        table: dict[str, dict[str, float]] = {}
        for name, cmd in servers.items():
            for point in points:
                label = f"{point[0]} x {run.sizeLabel(point[1])}"
                started = time.monotonic()
                perMsg, dump = measure(name, cmd, point, args.secs, loadgen, workdir)
                table.setdefault(name, {})[label] = perMsg
                print(
                    f"{name:>12} {label:>12}: {perMsg:10,.0f} instructions/message "
                    f"({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
                if args.top:
                    msgs = totalInstructions(dump) / perMsg
                    for count, fn in top(dump, args.top):
                        print(f"    {count / msgs:10,.0f}  {fn}")
        labels = [f"{c} x {run.sizeLabel(s)}" for c, s in points]
        print("| server | " + " | ".join(labels) + " |")
        print("|---|" + "---|" * len(labels))
        for name, row in table.items():
            print(f"| {name} | " + " | ".join(f"{row[lab]:,.0f}" for lab in labels) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
