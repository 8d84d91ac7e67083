#!/usr/bin/env python3
"""
User-space instructions per message, counted exactly with callgrind.

    python benchmarks/instructions.py                      # tcpecho, uvloop, c_epoll
    python benchmarks/instructions.py --points 1x64B,100x1KiB --top 25 tcpecho
    python benchmarks/instructions.py mine='twistd -n --pidfile= tcpecho --listen tcp:{port}'

Wall-clock rates on a 2-CPU virtual machine move between repetitions, and
80-90% of a server's CPU time per message is the kernel's, the same work for
every server that makes the same system calls (``strace -c``: one
``epoll_wait``, one read and one write per message for the C server, uvloop
and ``tcpecho`` alike).  What differs between servers is their own code, and
callgrind counts it exactly: the same binary, inputs and point give the same
count within about 1% at one connection, whatever else the machine is doing
(at 10 and 100 connections the number of events each ``epoll_wait`` returns
varies with timing, and so does the count, by up to about 10%).

Each point starts the server afresh under ``valgrind --tool=callgrind``,
instrumentation off while it starts.  Then the C load generator
(``loadgen.c``) drives it twice, for ``--msgs`` answered messages and for
twice that, each run counted on its own (counters zeroed before it, dumped
after its connections closed); the difference in instructions over the
difference in messages is the figure, so what each run costs once (accepting
and closing the connections) is left out.  The runs are sized in messages,
not seconds: a busy machine slows a server under valgrind by a different
factor from one run to the next, so two runs of fixed length need not differ
by the messages their lengths suggest (in one CI run the longer answered
fewer).  Each run is still bounded in time (``--timeout``).

``--top N`` prints the N C functions with the largest inclusive count per
message in the longer run (for a Python server: the interpreter's calls,
``socket.recv``, ``take_gil``, ``malloc`` ...).

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
        ["callgrind_annotate", "--inclusive=yes", "--auto=no", "--threshold=99", str(outFile)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)", line)
        if m and "PROGRAM TOTALS" not in line:
            rows.append((int(m.group(1).replace(",", "")), m.group(2).strip()))
    rows.sort(reverse=True)
    return rows[:n]


def control(pid: int, *args: str) -> None:
    """Send ``callgrind_control ARGS`` to ``pid``; raise unless it says it was done."""
    try:
        out = subprocess.run(
            ["callgrind_control", *args, str(pid)], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"callgrind_control {' '.join(args)} {pid}: no answer in 60 s") from e
    if "OK" not in out.stdout:
        said = (out.stdout + out.stderr).strip().replace("\n", " ")
        raise RuntimeError(f"callgrind_control {' '.join(args)} {pid}: {said}")


def pingpong(loadgen: Path, port: int, conns: int, size: int, msgs: int, timeout: float) -> None:
    """Run the load generator until it has ``msgs`` answers, all verified."""
    done = subprocess.run(
        [str(loadgen), "pingpong", str(port), str(conns), str(size), str(timeout), f"msgs={msgs}"],
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result = {"error": (done.stderr or "no output").strip()}
    if result.get("errors") or result.get("mismatched") or "msgs" not in result:
        raise RuntimeError(f"ping-pong failed under valgrind: {result}")
    if result["msgs"] != msgs:
        raise RuntimeError(
            f"only {result['msgs']} of {msgs} messages answered in {timeout:g} s under valgrind"
            " (a lower --msgs or a higher --timeout)"
        )


def measure(
    name: str,
    cmd: str,
    point: tuple[int, int],
    msgs: int,
    timeout: float,
    loadgen: Path,
    workdir: Path,
) -> tuple[float, Path, int]:
    """
    Instructions per message of ``cmd`` at ``point``; the longer run's dump and messages.

    Two runs of the load generator, ``msgs`` answered messages and twice
    that, each counted on its own (counters zeroed before, dumped once the
    server has closed the run's connections): the difference in
    instructions over the difference in messages leaves out what each run
    costs once (accepting and closing the connections, the messages still in
    flight when the load generator stops).
    """
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
    counted: list[tuple[int, int, Path]] = []
    try:
        if not run.waitPort(port, 120):
            raise RuntimeError(f"{name} did not listen on {port} under valgrind")
        time.sleep(1.0)  # the readiness probe's connection closed, and logged
        control(proc.pid, "-i", "on")
        for answers in (msgs, 2 * msgs):
            control(proc.pid, "-z")
            try:
                pingpong(loadgen, port, conns, size, answers, timeout)
            except RuntimeError as e:
                raise RuntimeError(f"{name}: {e}") from None
            time.sleep(1.0)  # the run's connections closed
            seen = set(workdir.iterdir())
            control(proc.pid, "-d")
            dumps = sorted(set(workdir.iterdir()) - seen, key=lambda f: f.stat().st_mtime)
            if not dumps:
                raise RuntimeError(f"{name}: callgrind wrote no dump")
            counted.append((totalInstructions(dumps[-1]), answers, dumps[-1]))
        control(proc.pid, "-i", "off")
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    (i1, m1, _), (i2, m2, longer) = counted
    if i2 <= i1:
        raise RuntimeError(f"{name}: the longer run counted no more instructions ({i1}, {i2})")
    return (i2 - i1) / (m2 - m1), longer, m2


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
    p.add_argument(
        "--msgs",
        type=int,
        default=20000,
        help="messages in the shorter run; the longer has twice as many (default 20000)",
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, help="most seconds a run may take (default 300)"
    )
    p.add_argument("--top", type=int, default=0, help="print the N largest functions per point")
    args = p.parse_args(argv)
    if args.msgs < 1 or args.timeout <= 0:
        p.error("--msgs and --timeout must be positive")
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
                perMsg, dump, msgs = measure(
                    name, cmd, point, args.msgs, args.timeout, loadgen, workdir
                )
                table.setdefault(name, {})[label] = perMsg
                print(
                    f"{name:>12} {label:>12}: {perMsg:10,.0f} instructions/message "
                    f"({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
                if args.top:
                    # The longer run's counts over its messages: a breakdown
                    # that includes the run's one-off costs (the figure above
                    # leaves them out).
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
