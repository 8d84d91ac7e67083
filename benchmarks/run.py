#!/usr/bin/env python3
"""
tcpproto's benchmark suite: ``twistd tcpecho`` side by side with its peers.

    python benchmarks/run.py            # the full run (about 15-20 minutes)
    python benchmarks/run.py --smoke    # CI: every workload, short, checked (about 70 s)

Each server runs pinned to CPU 0; the load generator (``loadgen.c``, built
with ``cc`` on first use) runs on CPU 1.  Every server is up at once and
each ping-pong point runs on each server in turn, over ``--reps``
repetitions (the order rotating); medians are reported with each figure's
ratio to the first server (the C epoll server: the practical one-core limit).

Workloads, all on 127.0.0.1 and bounded in count and time:

- ``speed``: ping-pong at 1, 10 and 100 connections x 64 B, 1 KiB and
  16 KiB, driven twice: by the C load generator on the other CPU, and by
  Python client processes (``pyclient.py``: one blocking socket each, as in
  uvloop's published benchmark) that share both CPUs with the server.  Each
  point gives messages/s, p99 latency and the server's CPU time per message
  (steadier than throughput on a shared machine); every echoed byte is
  compared with what was sent.  Then one byte-verified stream that ends with
  a half-close (a server that loses the tail scores 0) and one client that
  sends and never reads (the server's RSS growth).
- ``paths``: TLS echo (``tcpecho`` on an ``ssl:`` listener against uvloop
  with the ``ssl`` module, same self-signed certificate, Python TLS clients
  on CPU 1) and the PROXY protocol path (``haproxy:tcp:``, the C load
  generator sending a PROXY v1 header first), reported as ratios.
- ``memory``: many slow readers at once (RSS growth per connection) and many
  idle connections (RSS per connection; every one must echo a byte).
- ``client``: ``cat FILE | tcpecho-client`` against ``twistd tcpecho``,
  compared with ``nc -N`` for the same transfer; the output is verified.
- ``scaling``: ``--reuseport`` with 1..N server processes on one port.

The project's server (``tcpecho``) must pass every check, or the exit status
is 1; a peer that fails one (Twisted's naive example loses the tail of the
stream) is reported, not fatal.  Results go to ``benchmarks/out/`` (JSON, the
markdown tables, an SVG chart); ``--chart`` puts the chart elsewhere.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from chart import render  # noqa: E402

BINDIR = Path(sys.executable).parent
PROJECT = "tcpecho"

#: Built-in servers: a command with {port}.  {python} is this Python, {bindir}
#: its scripts directory (the project's own twistd), {peers} benchmarks/peers.
BUILTIN = {
    "c_epoll": "{c_epoll} {port}",
    "uvloop": "{python} {peers}/asyncio_proto.py {port} --uvloop",
    "asyncio": "{python} {peers}/asyncio_proto.py {port}",
    "asyncio_streams": "{python} {peers}/asyncio_streams.py {port}",
    "twisted_naive": "{python} {peers}/twisted_naive.py {port}",
    PROJECT: "{bindir}/twistd -n --pidfile= tcpecho --listen tcp:{port}:interface=127.0.0.1",
}
DEFAULT_SERVERS = ["c_epoll", "uvloop", "twisted_naive", PROJECT]
#: What a peer needs that may be missing; it is skipped (and said so) then.
NEEDS = {"uvloop": "uvloop"}

#: The goals of the performance issue (docs/performance.rst explains them).
SLOW_GROWTH_GOAL_MB = 2.0
#: What each of the many slow readers sends at most, in MiB.
SLOWMANY_CAP_MB = 4
#: Per idle connection: no more than Twisted's own canonical echo, which has
#: none of the limits, timers, counters and logging (docs/performance.rst).
IDLE_GOAL_KIB = 2.0

#: The ping-pong points: concurrent connections x message size.
GRID_CONNS = (1, 10, 100)
GRID_SIZES = (64, 1024, 16384)
#: Who drives them: the C load generator on CPU 1 ("c"), or Python client
#: processes unpinned, sharing both CPUs with the server ("py").
CLIENT_KINDS = {"c": "C load generator, CPU 1", "py": "Python clients, sharing the CPUs"}
#: Issue 13's goals against uvloop: rate at least this (per client kind) ...
RATE_GOAL = {"c": 1.1, "py": 1.0}
#: ... and server CPU per message at 100 x 1 KiB at most this times C's.
C_CPU_GOAL = 1.15


def sizeLabel(size: int) -> str:
    return f"{size >> 10}KiB" if size >= 1024 else f"{size}B"


def pointKey(kind: str, conns: int, size: int) -> str:
    """The results' key prefix of one ping-pong point, e.g. ``c100x1KiB``."""
    return f"{kind}{conns}x{sizeLabel(size)}"


def gridPoints(kinds: Sequence[str] = tuple(CLIENT_KINDS)) -> Iterator[tuple[str, int, int]]:
    for kind in kinds:
        for conns in GRID_CONNS:
            for size in GRID_SIZES:
                yield kind, conns, size


@dataclass
class Settings:
    reps: int
    secs: float
    #: Seconds per ping-pong point (each of GRID_CONNS x GRID_SIZES, twice).
    gridSecs: float
    slowMB: int
    slowSecs: float
    slowConns: int
    idleConns: int
    clientMB: int
    scaling: bool
    pin: bool
    #: Who drives the ping-pong points (keys of CLIENT_KINDS).
    clients: tuple[str, ...] = ("c", "py")


# The full run and CI's smoke run (every workload, shorter and smaller), as a table:
#               reps secs gridSecs slowMB slowSecs slowConns idleConns clientMB
FULL = Settings(3, 4.0, 1.5, 200, 6.0, 1000, 10000, 1024, scaling=True, pin=True)
SMOKE = Settings(1, 1.0, 0.3, 64, 2.0, 100, 500, 32, scaling=True, pin=True)


# -- building and process plumbing ------------------------------------------


def buildC(source: Path, name: str) -> Path:
    """Compile ``source`` with ``cc -O2`` into a cache directory, once per content."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / "tcpproto-bench" / f"{name}-{digest}"
    if not out.exists():
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise SystemExit(
                "run.py: error: a C compiler (cc) is needed to build the load generator"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run([cc, "-O2", "-o", str(tmp), str(source)], check=True)
        tmp.replace(out)
    return out


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def waitPort(port: int, secs: float = 20.0) -> bool:
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def rssKiB(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def cpuSeconds(pid: int) -> float:
    """
    CPU time of ``pid`` (every thread), user plus system.

    From ``/proc/PID/schedstat`` (nanoseconds) where the kernel has it, else
    from ``/proc/PID/stat`` (clock ticks: 10 ms, too coarse for a short
    point at one connection).
    """
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def pinned(cpu: int, argv: list[str], pin: bool) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if pin else argv


@contextmanager
def server(cmd: str, pin: bool, port: int | None = None) -> Iterator[tuple[int, int]]:
    """Run a server command (with {port}) on CPU 0; yield (port, pid); stop it."""
    port = port or freePort()
    argv = pinned(0, shlex.split(cmd.format(port=port)), pin)
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        if not waitPort(port):
            raise RuntimeError("did not listen")
        time.sleep(0.3)  # let the readiness probe's connection close
        yield port, proc.pid
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def pyclients(
    port: int, conns: int, size: int, secs: float, *flags: str, cpu: int | None = None
) -> dict[str, Any]:
    """Ping-pong from ``conns`` Python client processes (``pyclient.py``)."""
    argv = [sys.executable, str(HERE / "pyclient.py"), str(port), str(conns), str(size)]
    argv += [str(secs), *flags]
    if cpu is not None:
        argv += ["--cpu", str(cpu)]
    return runJSON(argv, timeout=secs + 60)


def runJSON(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run a measuring tool that prints its result as a JSON line last; that result."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    lines = out.stdout.strip().splitlines()
    if not lines:
        return {"error": (out.stderr.strip() or "no output")[-200:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def pingpong(
    res: dict[str, Any], key: str, pid: int, run: Callable[[], dict[str, Any]]
) -> tuple[bool, str]:
    """Run one ping-pong (``run()``); store rate, p99 and server CPU per message."""
    cpu0 = cpuSeconds(pid)
    r = run()
    cpu1 = cpuSeconds(pid)
    res[f"{key}_msgs"], res[f"{key}_p99_us"] = r.get("msgs_per_s"), r.get("p99_us")
    if r.get("msgs"):
        res[f"{key}_cpu_us"] = round((cpu1 - cpu0) * 1e6 / r["msgs"], 2)
    return _ppOK(r)


class Loadgen:
    def __init__(self, path: Path, pin: bool) -> None:
        self.path = path
        self.pin = pin

    def __call__(self, *args: object, timeout: float = 60) -> dict[str, Any]:
        return runJSON(pinned(1, [str(self.path), *map(str, args)], self.pin), timeout)


# -- the workloads ------------------------------------------------------------


def speed(
    servers: dict[str, str], s: Settings, loadgen: Loadgen, progress: Callable[[str], None]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, tuple[bool, str]]]]:
    """
    Ping-pong points, stream and one slow reader: every server's runs and checks.

    Every server is up at once (all pinned to CPU 0, idle but the one being
    measured), and each ping-pong point runs on every server in turn, in an
    order that rotates with the repetition: a change in what else the shared
    machine runs then hits every server alike, instead of the one whose turn
    it was.  Each repetition ends with the stream and the slow reader.
    """
    names = list(servers)
    runs: dict[str, list[dict[str, Any]]] = {n: [{} for _ in range(s.reps)] for n in names}
    checks: dict[str, dict[str, tuple[bool, str]]] = {n: {} for n in names}
    with ExitStack() as stack:
        up: dict[str, tuple[int, int]] = {}
        for name in names:
            try:
                up[name] = stack.enter_context(server(servers[name], s.pin))
            except RuntimeError as e:
                checks[name]["server starts"] = (False, str(e))
        for rep in range(s.reps):
            turn = rep % len(names)
            order = [n for n in names[turn:] + names[:turn] if n in up]
            for kind, conns, size in gridPoints(s.clients):
                key = pointKey(kind, conns, size)
                for name in order:
                    port, pid = up[name]
                    run = (
                        partial(loadgen, "pingpong", port, conns, size, s.gridSecs)
                        if kind == "c"
                        else partial(pyclients, port, conns, size, s.gridSecs)
                    )
                    others = {n: cpuSeconds(up[n][1]) for n in order if n != name}
                    started = time.monotonic()
                    result = pingpong(runs[name][rep], key, pid, run)
                    mergeChecks(checks[name], {f"pingpong {key}": result})
                    idleChecks(checks, others, up, time.monotonic() - started, f"{name} {key}")
            for name in order:
                res = runs[name][rep]
                try:
                    streamAndSlowReader(res, checks[name], up[name], s, loadgen)
                except OSError as e:
                    mergeChecks(checks[name], {"server still up": (False, str(e))})
                # The two points of the earlier issues, under their old names.
                for old, new in (("pp1", "c1x64B"), ("pp100", "c100x1KiB")):
                    for field in ("msgs", "p99_us", "cpu_us"):
                        res[f"{old}_{field}"] = res.get(f"{new}_{field}")
                progress(f"rep {rep + 1} {name}: {res}")
    return runs, checks


#: The share of a CPU a server may use while another is measured, beyond a
#: floor of CPU seconds (a server still closing its last point's 100
#: connections and logging them, within a short smoke point).  All are
#: pinned to CPU 0: one that spins while idle (the C peer did, after a slow
#: reader's reset, until 2026-12-01) takes half of that CPU from the server
#: being measured and halves its rate: every later figure is wrong.
IDLE_BUSY_LIMIT = 0.05
IDLE_BUSY_FLOOR = 0.05


def idleChecks(
    checks: dict[str, dict[str, tuple[bool, str]]],
    before: dict[str, float],
    up: dict[str, tuple[int, int]],
    elapsed: float,
    during: str,
) -> None:
    """Check that the servers not being measured stayed idle (``before``: their CPU seconds)."""
    for other, cpu0 in before.items():
        used = cpuSeconds(up[other][1]) - cpu0
        busy = used / max(elapsed, 1e-3)
        ok = busy <= IDLE_BUSY_LIMIT or used <= IDLE_BUSY_FLOOR
        detail = f"{busy:.0%} of a CPU during {during}" if not ok else "idle"
        mergeChecks(checks[other], {"idle while another server is measured": (ok, detail)})


def streamAndSlowReader(
    res: dict[str, Any],
    checks: dict[str, tuple[bool, str]],
    where: tuple[int, int],
    s: Settings,
    loadgen: Loadgen,
) -> None:
    """The verified stream, the RSS, and one client that never reads."""
    port, pid = where
    r = loadgen("stream", port, s.secs)
    ok = (
        bool(r.get("received")) and r.get("mismatched") == 0 and r.get("sent") == r.get("received")
    )
    res["stream_mb_s"] = r.get("mb_per_s") if ok else 0
    mergeChecks(
        checks,
        {
            "stream verified, tail after half-close": (
                ok,
                f"sent {r.get('sent')} received {r.get('received')} "
                f"mismatched {r.get('mismatched')}"
                + (f" ({r['error']})" if r.get("error") else ""),
            )
        },
    )
    res["rss_mb"] = round(rssKiB(pid) / 1024, 1)
    grown = slowReader(port, pid, s.slowMB, s.slowSecs)
    res["slow_growth_mb"] = grown
    mergeChecks(
        checks,
        {
            f"one slow reader: RSS growth < {SLOW_GROWTH_GOAL_MB:g} MB": (
                grown < SLOW_GROWTH_GOAL_MB,
                f"{grown} MB",
            )
        },
    )


#: The TLS and PROXY points: (connections, message size).
PATH_POINTS = ((1, 64), (10, 1024), (100, 1024))


def makeCert(directory: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate and its key for 127.0.0.1, or None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def pathVariants(servers: dict[str, str], cert: tuple[Path, Path] | None) -> dict[str, str]:
    """The TLS and PROXY servers to measure: name -> command (with {port})."""
    twistd = f"{BINDIR}/twistd -n --pidfile= tcpecho --listen "
    out: dict[str, str] = {}
    if cert is not None:
        c, k = cert
        if "uvloop" in servers:
            out["uvloop_tls"] = f"{servers['uvloop']} --tls {c} {k}"
        if PROJECT in servers:
            out[f"{PROJECT}_tls"] = (
                twistd + f"ssl:{{port}}:interface=127.0.0.1:privateKey={k}:certKey={c}"
            )
    if PROJECT in servers:
        out[f"{PROJECT}_proxy"] = twistd + "haproxy:tcp:{port}:interface=127.0.0.1"
    return out


def paths(name: str, cmd: str, s: Settings, loadgen: Loadgen) -> dict[str, Any]:
    """TLS (Python TLS clients on CPU 1) or PROXY (the C load generator) ping-pong."""
    res: dict[str, Any] = {"checks": {}}
    try:
        with server(cmd, s.pin) as (port, pid):
            for conns, size in PATH_POINTS:
                key = pointKey("", conns, size)
                run = (
                    partial(
                        pyclients, port, conns, size, s.gridSecs, "--tls", cpu=1 if s.pin else None
                    )
                    if name.endswith("_tls")
                    else partial(loadgen, "pingpong", port, conns, size, s.gridSecs, "proxy")
                )
                res["checks"][f"pingpong {key}"] = pingpong(res, key, pid, run)
    except RuntimeError as e:
        res["checks"]["server starts"] = (False, str(e))
    return res


def mergeChecks(into: dict[str, tuple[bool, str]], new: dict[str, tuple[bool, str]]) -> None:
    """Add one repetition's checks: a check that failed in any repetition stays failed."""
    for key, (ok, detail) in new.items():
        old = into.get(key)
        if old is not None and not old[0]:
            continue
        into[key] = (ok, detail)


def _ppOK(r: dict[str, Any]) -> tuple[bool, str]:
    ok = bool(r.get("msgs")) and r.get("errors") == 0 and r.get("mismatched") == 0
    detail = f"msgs {r.get('msgs')} errors {r.get('errors')} mismatched {r.get('mismatched')}"
    return ok, detail + (f" ({r['error']})" if r.get("error") else "")


def slowReader(port: int, pid: int, mb: int, secs: float) -> float:
    """Send up to ``mb`` MB without reading; the server's peak RSS growth in MB."""
    before = peak = rssKiB(pid)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setblocking(False)
        chunk = b"s" * (1 << 16)
        sent, end = 0, time.monotonic() + secs
        while sent < (mb << 20) and time.monotonic() < end:
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                time.sleep(0.005)
            peak = max(peak, rssKiB(pid))
    return round((peak - before) / 1024, 1)


def _connectMany(
    port: int, n: int, bufsize: int = 0, deadline: float = 60.0
) -> list[socket.socket]:
    """Open ``n`` connections in batches the accept backlog can take."""
    socks: list[socket.socket] = []
    end = time.monotonic() + deadline
    batch = 50  # Twisted's default listen backlog
    while len(socks) < n and time.monotonic() < end:
        new = []
        for _ in range(min(batch, n - len(socks))):
            c = socket.socket()
            if bufsize:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
            c.settimeout(10)
            try:
                c.connect(("127.0.0.1", port))
            except OSError:
                c.close()
                continue
            new.append(c)
        # An echo each proves the batch was accepted before the next one.
        for c in new:
            with suppress(OSError):
                c.sendall(b"!")
        for c in new:
            try:
                if c.recv(1) == b"!":
                    socks.append(c)
                    continue
            except OSError:
                pass
            c.close()
    return socks


def raiseFileLimit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        want = hard if hard != resource.RLIM_INFINITY else 1 << 20
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return want
    return soft


def idle(cmd: str, s: Settings, n: int) -> dict[str, Any]:
    """RSS per idle connection with ``n`` open; each must have echoed a byte."""
    res: dict[str, Any] = {"checks": {}}
    try:
        with server(cmd, s.pin) as (port, pid):
            before = rssKiB(pid)
            socks = _connectMany(port, n)
            time.sleep(0.5)
            after = rssKiB(pid)
            res["idle_conns"] = len(socks)
            res["idle_kib"] = round((after - before) / max(len(socks), 1), 2)
            res["checks"][f"{n} idle connections, each echoes"] = (
                len(socks) == n,
                f"{len(socks)} of {n} echoed",
            )
            for c in socks:
                c.close()
    except RuntimeError as e:
        res["checks"]["server starts"] = (False, str(e))
    return res


def slowMany(cmd: str, s: Settings, n: int) -> dict[str, Any]:
    """Peak RSS growth per connection with ``n`` clients that send and never read."""
    res: dict[str, Any] = {"checks": {}}
    try:
        with server(cmd, s.pin) as (port, pid):
            before = peak = rssKiB(pid)
            # Small client buffers: the kernel's own buffering is not the
            # server's, and this keeps the machine's socket memory modest.
            socks = _connectMany(port, n, bufsize=1 << 16)
            for c in socks:
                c.setblocking(False)
            chunk = b"s" * (1 << 16)
            # Each client sends at most this much: twice the goal, so a server
            # that buffers without bound fails visibly, while 1,000 of them
            # stay a few GB of RSS on a shared machine.
            cap = SLOWMANY_CAP_MB << 20
            sent = [0] * len(socks)
            active = set(range(len(socks)))
            end = time.monotonic() + max(s.slowSecs * 3, 10)
            still = 0
            while active and time.monotonic() < end and still < 20:
                moved = 0
                for i in list(active):
                    try:
                        k = socks[i].send(chunk)
                    except BlockingIOError:
                        continue
                    except OSError:
                        active.discard(i)
                        continue
                    sent[i] += k
                    moved += k
                    if sent[i] >= cap:
                        active.discard(i)
                peak = max(peak, rssKiB(pid))
                if moved:
                    still = 0
                else:
                    still += 1
                    time.sleep(0.05)
            peak = max(peak, rssKiB(pid))
            res["slowmany_conns"] = len(socks)
            res["slowmany_kib"] = round((peak - before) / max(len(socks), 1), 1)
            res["slowmany_sent_mb"] = round(sum(sent) / len(socks) / (1 << 20), 2) if socks else 0
            # Every client sent its whole cap without blocking: the server
            # took it all, so the growth measured is only a lower bound.
            res["slowmany_capped"] = bool(socks) and min(sent) >= cap
            limit = SLOW_GROWTH_GOAL_MB * 1024
            res["checks"][f"{n} slow readers: RSS growth < {SLOW_GROWTH_GOAL_MB:g} MB each"] = (
                len(socks) == n and res["slowmany_kib"] < limit,
                f"{res['slowmany_kib']} KiB per connection over {len(socks)}",
            )
            for c in socks:
                c.close()
    except RuntimeError as e:
        res["checks"]["server starts"] = (False, str(e))
    return res


_PATTERN = random.Random(862).randbytes(1 << 20)


def makeInput(mb: int) -> Path:
    """A file of ``mb`` MiB of the repeating pseudo-random pattern (cached)."""
    path = Path(tempfile.gettempdir()) / "tcpproto-bench" / f"input-{mb}m.bin"
    if not path.exists() or path.stat().st_size != mb << 20:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for _ in range(mb):
                f.write(_PATTERN)
        tmp.replace(path)
    return path


def roundTrip(argv: list[str], data: Path, pin: bool, timeout: float) -> dict[str, Any]:
    """``cat data | argv``; time it and verify every byte that comes back."""
    size = data.stat().st_size
    doubled = _PATTERN * 2
    cat = subprocess.Popen(pinned(1, ["cat", str(data)], pin), stdout=subprocess.PIPE)
    start = time.monotonic()
    proc = subprocess.Popen(
        pinned(1, argv, pin), stdin=cat.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert cat.stdout is not None
    assert proc.stdout is not None
    cat.stdout.close()
    got, bad = 0, 0
    end = start + timeout
    fd = proc.stdout.fileno()
    with suppress(OSError):
        import fcntl

        fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer, larger reads
    while time.monotonic() < end:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        off = got % len(_PATTERN)
        n = len(chunk)
        if chunk != doubled[off : off + n]:
            bad += 1
        got += n
    try:
        status = proc.wait(max(end - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
    elapsed = time.monotonic() - start
    cat.wait()
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    return {
        "mb_per_s": round(got / elapsed / 1e6, 1),
        "secs": round(elapsed, 2),
        "bytes": got,
        "ok": got == size and bad == 0 and status == 0,
        "detail": f"{got} of {size} bytes, {bad} bad chunks, exit {status}"
        + (f": {err.splitlines()[-1]}" if err else ""),
    }


def client(cmd: str, s: Settings, reps: int) -> dict[str, Any]:
    """``cat FILE | tcpecho-client`` vs ``cat FILE | nc -N`` through one echo server."""
    data = makeInput(s.clientMB)
    res: dict[str, Any] = {"checks": {}, "mb": s.clientMB}
    tools: dict[str, list[str]] = {"tcpecho-client": [str(BINDIR / "tcpecho-client")]}
    nc = shutil.which("nc")
    if nc and "-N" in subprocess.run([nc, "-h"], capture_output=True, text=True).stderr:
        tools["nc -N"] = [nc, "-N"]
    else:
        res["note"] = "nc -N (OpenBSD netcat) not found: no reference"
    timeout = max(30.0, s.clientMB / 20)
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    try:
        with server(cmd, s.pin) as (port, _pid):
            for _ in range(reps):
                for tool, argv in tools.items():
                    runs[tool].append(
                        roundTrip([*argv, "127.0.0.1", str(port)], data, s.pin, timeout)
                    )
    except RuntimeError as e:
        res["checks"]["server starts"] = (False, str(e))
        return res
    for tool, rs in runs.items():
        res[tool] = statistics.median(r["mb_per_s"] for r in rs)
        res["checks"][f"{tool}: {s.clientMB} MiB round trip verified"] = (
            all(r["ok"] for r in rs),
            "; ".join(r["detail"] for r in rs),
        )
    return res


def scaling(s: Settings, loadgen: Loadgen) -> dict[str, Any]:
    """100 x 1 KiB ping-pong against 1..N ``twistd tcpecho --reuseport`` processes."""
    help_ = subprocess.run(
        [str(BINDIR / "twistd"), "tcpecho", "--help"], capture_output=True, text=True
    ).stdout
    if "--reuseport" not in help_:
        return {"note": "twistd tcpecho has no --reuseport: not measured"}
    ncpu = os.cpu_count() or 1
    res: dict[str, Any] = {"checks": {}, "curve": {}}
    cmd = BUILTIN[PROJECT].format(bindir=BINDIR, port="{port}") + " --reuseport"
    for n in range(1, min(ncpu, 8) + 1):
        port = freePort()
        procs = []
        try:
            for _ in range(n):
                procs.append(
                    subprocess.Popen(
                        shlex.split(cmd.format(port=port)),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            if not waitPort(port):
                res["checks"][f"{n} processes listen"] = (False, "did not listen")
                continue
            time.sleep(1.0 if n > 1 else 0.3)  # every process up, not just the first
            # Unpinned: servers and the load generator share the machine's cores.
            r = Loadgen(loadgen.path, pin=False)("pingpong", port, 100, 1024, s.secs)
            res["curve"][n] = r.get("msgs_per_s")
            res["checks"][f"scaling, {n} processes: ping-pong complete"] = _ppOK(r)
        finally:
            for p in procs:
                stop(p)
    return res


# -- reporting ----------------------------------------------------------------

SPEED_COLS = [
    ("pp1_msgs", "ping-pong 1x64B msg/s"),
    ("pp1_p99_us", "p99 us"),
    ("pp100_msgs", "ping-pong 100x1KiB msg/s"),
    ("pp100_p99_us", "p99 us"),
    ("pp100_cpu_us", "server CPU us/msg"),
    ("stream_mb_s", "stream MB/s"),
    ("rss_mb", "RSS MB"),
    ("slow_growth_mb", "slow-reader RSS growth MB"),
]


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:g}" if abs(v) < 1e6 else f"{v:.3g}"


def speedTable(medians: dict[str, dict[str, float | None]], names: list[str]) -> list[str]:
    base = names[0]
    out = [
        "| server | " + " | ".join(h for _, h in SPEED_COLS) + " |",
        "|---" * (len(SPEED_COLS) + 1) + "|",
    ]
    for name in names:
        cells = []
        for k, _ in SPEED_COLS:
            v, b = medians[name].get(k), medians[base].get(k)
            ratio = f" ({v / b:.2f}x)" if v is not None and b and name != base else ""
            cells.append(fmt(v) + ratio)
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def exactRatio(a: float | None, b: float | None) -> float | None:
    """``a / b`` unrounded: goals are judged on it (0.999x is not 1.0x; it prints as 1.00x NO)."""
    return a / b if a is not None and b else None


def goals(data: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(goal, measured, target, met) for the performance issue's goals."""
    med = data["medians"]
    mine = med.get(PROJECT, {})
    uv = med.get("uvloop", {})
    c = med.get("c_epoll", {})
    rows: list[tuple[str, str, str, bool | None]] = []

    def add(
        goal: str, value: float | None, target: str, met: bool | None, unit: str = "x"
    ) -> None:
        shown = "not measured" if value is None else f"{value:g}{unit}"
        rows.append((goal, shown, target, None if value is None else met))

    r = ratio(mine.get("pp100_msgs"), uv.get("pp100_msgs"))
    add("100x1KiB ping-pong vs uvloop", r, ">= 1.0x (stretch 1.2x)", r is not None and r >= 1.0)
    r = ratio(mine.get("pp100_p99_us"), uv.get("pp100_p99_us"))
    add("100x1KiB p99 latency vs uvloop", r, "<= 1.0x", r is not None and r <= 1.0)
    r = ratio(mine.get("stream_mb_s"), c.get("stream_mb_s"))
    add("verified stream vs C epoll", r, ">= 0.95x", r is not None and r >= 0.95)
    v = mine.get("slow_growth_mb")
    add(
        "one slow reader: RSS growth",
        v,
        f"< {SLOW_GROWTH_GOAL_MB:g} MB",
        v is not None and v < 2,
        " MB",
    )
    m = data.get("memory", {}).get(PROJECT, {})
    v = m.get("slowmany_kib")
    n = m.get("slowmany_conns", "many")
    add(
        f"{n} slow readers: growth per connection",
        v,
        "< 2048 KiB",
        v is not None and v < 2048,
        " KiB",
    )
    v = m.get("idle_kib")
    n = m.get("idle_conns", "many")
    add(
        f"{n} idle connections: RSS per connection",
        v,
        f"<= {IDLE_GOAL_KIB:g} KiB",
        v is not None and v <= IDLE_GOAL_KIB,
        " KiB",
    )
    cl = data.get("client", {})
    r = ratio(cl.get("tcpecho-client"), cl.get("nc -N"))
    add(
        f"{cl.get('mb', '?')} MiB round trip: tcpecho-client vs nc -N",
        r,
        ">= 0.8x",
        r is not None and r >= 0.8,
    )
    return rows


def gridTables(data: dict[str, Any], names: list[str]) -> list[str]:
    """Per client kind: rate, p99 and server CPU per message at each point."""
    med = data["medians"]
    out: list[str] = []
    versus = "uvloop" if "uvloop" in med and PROJECT in med else None
    for kind, who in CLIENT_KINDS.items():
        for field, title in (
            ("msgs", "msg/s"),
            ("cpu_us", "server CPU us/msg"),
            ("p99_us", "p99 latency us"),
        ):
            if not any(med[n].get(f"{pointKey(kind, 1, 64)}_{field}") for n in names):
                continue
            extra = [f"{PROJECT} / uvloop"] if versus else []
            out += ["", f"Ping-pong, {who}: {title} (medians)", ""]
            out.append("| point | " + " | ".join([*names, *extra]) + " |")
            out.append("|---" * (len(names) + len(extra) + 1) + "|")
            for conns in GRID_CONNS:
                for size in GRID_SIZES:
                    k = f"{pointKey(kind, conns, size)}_{field}"
                    cells = [fmt(med[n].get(k)) for n in names]
                    if versus:
                        r = ratio(med[PROJECT].get(k), med[versus].get(k))
                        cells.append("-" if r is None else f"{r:.2f}x")
                    out.append(f"| {conns} x {sizeLabel(size)} | " + " | ".join(cells) + " |")
    return out


def issueGoals(data: dict[str, Any]) -> list[str]:
    """Issue 13's goal matrix: tcpecho / uvloop ratios at every point, met or not."""
    med = data["medians"]
    mine, uv, c = med.get(PROJECT), med.get("uvloop"), med.get("c_epoll")
    if not mine or not uv:
        return []
    out = [
        "",
        f"Goals (issue 13): {PROJECT} / uvloop at each point; rate >= "
        + ", ".join(f"{RATE_GOAL[k]}x ({k})" for k in CLIENT_KINDS)
        + ", server CPU per message <= 1.0x, p99 <= 1.0x (NO: not met)",
        "",
        "The last column of each driver is the C server's rate over uvloop's at that point, in",
        "the same run: what the server with the least user-space work measured (about 50",
        "instructions per message) reached.",
        "",
        "| point | "
        + " | ".join(f"{k}: rate | {k}: CPU | {k}: p99 | {k}: C rate" for k in CLIENT_KINDS)
        + " |",
        "|---" * (1 + 4 * len(CLIENT_KINDS)) + "|",
    ]

    def cell(r: float | None, ok: bool) -> str:
        return "-" if r is None else f"{r:.2f}x" + ("" if ok else " NO")

    for conns in GRID_CONNS:
        for size in GRID_SIZES:
            cells = []
            for kind in CLIENT_KINDS:
                p = pointKey(kind, conns, size)
                rr = exactRatio(mine.get(f"{p}_msgs"), uv.get(f"{p}_msgs"))
                rc = exactRatio(mine.get(f"{p}_cpu_us"), uv.get(f"{p}_cpu_us"))
                rp = exactRatio(mine.get(f"{p}_p99_us"), uv.get(f"{p}_p99_us"))
                ceiling = exactRatio(c.get(f"{p}_msgs"), uv.get(f"{p}_msgs")) if c else None
                cells += [
                    cell(rr, rr is not None and rr >= RATE_GOAL[kind]),
                    cell(rc, rc is not None and rc <= 1.0),
                    cell(rp, rp is not None and rp <= 1.0),
                    cell(ceiling, True),
                ]
            out.append(f"| {conns} x {sizeLabel(size)} | " + " | ".join(cells) + " |")
    if c:
        r = exactRatio(mine.get("c100x1KiB_cpu_us"), c.get("c100x1KiB_cpu_us"))
        out += [
            "",
            f"Server CPU per message at 100 x 1 KiB, {PROJECT} / c_epoll: "
            + cell(r, r is not None and r <= C_CPU_GOAL)
            + f" (goal <= {C_CPU_GOAL}x)",
        ]
    return out


def pathTable(data: dict[str, Any]) -> list[str]:
    """TLS: tcpecho vs uvloop + ssl; PROXY: tcpecho haproxy: vs plain tcpecho and uvloop."""
    pth = data.get("paths") or {}
    if not pth:
        return []
    med = data.get("medians", {})
    rows: list[tuple[str, dict[str, Any], dict[str, Any], str]] = []
    tls, uvTls = pth.get(f"{PROJECT}_tls"), pth.get("uvloop_tls")
    if tls and uvTls:
        rows.append(("TLS, Python TLS clients on CPU 1", tls, uvTls, "uvloop + ssl"))
    proxy = pth.get(f"{PROJECT}_proxy")
    for ref in (PROJECT, "uvloop"):
        if proxy and med.get(ref):
            plain = {
                pointKey("", n, z) + f: med[ref].get(pointKey("c", n, z) + f)
                for n, z in PATH_POINTS
                for f in ("_msgs", "_cpu_us", "_p99_us")
            }
            rows.append(("PROXY v1 header, C load generator", proxy, plain, f"plain {ref}"))
    if not rows:
        return []
    out = [
        "",
        "TLS and PROXY paths (medians; ratio = tcpecho / reference)",
        "",
        "| path | point | reference | msg/s | ref msg/s | rate "
        "| CPU us/msg | ref CPU | CPU | p99 us | ref p99 | p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for title, measured, reference, refName in rows:
        for n, z in PATH_POINTS:
            k = pointKey("", n, z)
            cells = []
            for f in ("_msgs", "_cpu_us", "_p99_us"):
                a, b = measured.get(k + f), reference.get(k + f)
                r = ratio(a, b)
                cells += [fmt(a), fmt(b), "-" if r is None else f"{r:.2f}x"]
            out.append(
                f"| {title} | {n} x {sizeLabel(z)} | {refName} | " + " | ".join(cells) + " |"
            )
    return out


def report(data: dict[str, Any], names: list[str]) -> list[str]:
    meta = data["meta"]
    lines = [f"Run {meta['date']} on {meta['machine']}", f"Command: `{meta['command']}`"]
    if data["medians"]:
        lines += [
            "",
            f"Speed: medians of {meta['reps']} interleaved runs, ratios to {names[0]}",
            "",
            *speedTable(data["medians"], names),
            *gridTables(data, names),
            *issueGoals(data),
        ]
    lines += pathTable(data)
    mem = data.get("memory", {})
    if mem:
        lines += ["", "Memory (one run each, fresh server)", ""]
        lines += ["| server | slow readers | growth KiB/conn | idle connections | RSS KiB/conn |"]
        lines += ["|---|---|---|---|---|"]
        for name in names:
            m = mem.get(name)
            if m:
                lines.append(
                    f"| {name} | {m.get('slowmany_conns', '-')} "
                    f"| {'>= ' if m.get('slowmany_capped') else ''}{fmt(m.get('slowmany_kib'))} "
                    f"| {m.get('idle_conns', '-')} | {fmt(m.get('idle_kib'))} |"
                )
        if any(m.get("slowmany_capped") for m in mem.values()):
            lines.append(
                f"\n(>= : the server read all {SLOWMANY_CAP_MB} MiB each slow reader sent, "
                "buffering it: growth is bounded only by what the clients send)"
            )
    cl = data.get("client")
    if cl:
        lines += ["", f"Client round trip, cat {cl['mb']} MiB through twistd tcpecho", ""]
        lines += ["| tool | MB/s |", "|---|---|"]
        for tool in ("tcpecho-client", "nc -N"):
            if tool in cl:
                lines.append(f"| {tool} | {fmt(cl[tool])} |")
        if cl.get("note"):
            lines.append(f"\n({cl['note']})")
    sc = data.get("scaling")
    if sc:
        lines += ["", "Scaling: twistd tcpecho --reuseport, 100x1KiB ping-pong, unpinned", ""]
        if sc.get("curve"):
            one = sc["curve"].get(1) or sc["curve"].get("1")
            lines += ["| processes | msg/s | vs 1 |", "|---|---|---|"]
            for n, v in sc["curve"].items():
                lines.append(f"| {n} | {fmt(v)} | {ratio(v, one)}x |")
        if sc.get("note"):
            lines.append(sc["note"])
    lines += [
        "",
        "Goals (performance issue)",
        "",
        "| goal | measured | target | met |",
        "|---|---|---|---|",
    ]
    for goal, shown, target, met in goals(data):
        lines.append(
            f"| {goal} | {shown} | {target} | {'-' if met is None else 'yes' if met else 'NO'} |"
        )
    return lines


def machine() -> str:
    model = platform.processor() or platform.machine()
    with suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as f:
        mem = f", {int(f.readline().split()[1]) / 1048576:.0f} GiB"
    return (
        f"{model}, {os.cpu_count()} CPUs{mem}, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


# -- main ---------------------------------------------------------------------


def parseArgs(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark twistd tcpecho against its peers (127.0.0.1 only).",
    )
    p.add_argument(
        "extra", nargs="*", metavar="NAME=CMD", help="more servers: a command with {port}"
    )
    p.add_argument("--smoke", action="store_true", help="short run of every workload, for CI")
    p.add_argument("--reps", type=int, help="interleaved repetitions of the speed workloads")
    p.add_argument("--grid-secs", type=float, help="seconds per ping-pong point")
    p.add_argument(
        "--clients",
        default=",".join(CLIENT_KINDS),
        help="who drives the ping-pong points: c (the C load generator), py (Python clients)",
    )
    p.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help="built-in servers, comma-separated; the first is the reference: "
        + ", ".join(BUILTIN),
    )
    p.add_argument(
        "--only",
        default="speed,paths,memory,client,scaling",
        help="workload groups to run (speed, paths, memory, client, scaling)",
    )
    p.add_argument(
        "--memory-servers", help="servers for the memory workloads (default: all; smoke: tcpecho)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=HERE / "out",
        help="directory for results.json, results.md, chart.svg",
    )
    p.add_argument(
        "--chart", type=Path, help="write the SVG chart here too (e.g. docs/_static/benchmark.svg)"
    )
    p.add_argument(
        "--no-pin", action="store_true", help="do not pin server and load generator to CPUs"
    )
    p.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="run nothing: print the report (and write the chart) of a saved results.json",
    )
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        return rerender(args)
    s = SMOKE if args.smoke else FULL
    if args.reps:
        s.reps = args.reps
    if args.grid_secs:
        s.gridSecs = args.grid_secs
    s.clients = tuple(k for k in args.clients.split(",") if k in CLIENT_KINDS)
    s.pin = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    only = set(args.only.split(","))
    raiseFileLimit()

    loadgen = Loadgen(buildC(HERE / "loadgen.c", "loadgen"), s.pin)
    subst = {
        "python": sys.executable,
        "bindir": str(BINDIR),
        "peers": str(HERE / "peers"),
        "c_epoll": "",
    }
    servers: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name in [n for n in args.servers.split(",") if n]:
        if name not in BUILTIN:
            raise SystemExit(
                f"run.py: error: unknown server {name!r} (known: {', '.join(BUILTIN)})"
            )
        need = NEEDS.get(name)
        if (
            need
            and subprocess.run(
                [sys.executable, "-c", f"import {need}"], capture_output=True
            ).returncode
        ):
            skipped[name] = f"{need} is not installed (pip install '.[bench]')"
            continue
        if name == "c_epoll":
            subst["c_epoll"] = str(buildC(HERE / "peers" / "c_epoll.c", "c_epoll"))
        servers[name] = BUILTIN[name].format(port="{port}", **subst)
    for spec in args.extra:
        name, eq, cmd = spec.partition("=")
        if not eq or "{port}" not in cmd:
            raise SystemExit(f"run.py: error: {spec!r} is not NAME='command with {{port}}'")
        servers[name] = cmd
    names = list(servers)
    for name, why in skipped.items():
        print(f"skipping {name}: {why}", file=sys.stderr)

    started = time.monotonic()
    data: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "command": "python benchmarks/run.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "reps": s.reps,
            "smoke": args.smoke,
            "pinned": s.pin,
            "skipped": skipped,
        },
        "servers": servers,
        "runs": {n: [] for n in names},
        "medians": {},
    }
    checks: dict[str, dict[str, tuple[bool, str]]] = {n: {} for n in names}

    def progress(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    if "speed" in only:
        data["runs"], speedChecks = speed(servers, s, loadgen, progress)
        for name in names:
            mergeChecks(checks[name], speedChecks[name])
        for name in names:
            rs = data["runs"][name]
            keys = sorted({k for r in rs for k in r})
            data["medians"][name] = {k: _median([r.get(k) for r in rs]) for k in keys}
    if "paths" in only:
        with tempfile.TemporaryDirectory(prefix="tcpproto-bench-") as tmp:
            cert = makeCert(Path(tmp))
            if cert is None:
                data["meta"]["skipped"]["tls"] = "openssl not found: no certificate"
            variants = pathVariants(servers, cert)
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
            for rep in range(s.reps):
                for variant, cmd in variants.items():
                    r = paths(variant, cmd, s, loadgen)
                    owner = PROJECT if variant.startswith(PROJECT) else "uvloop"
                    mergeChecks(
                        checks.setdefault(owner, {}),
                        {f"{variant} {k}": v for k, v in r.pop("checks").items()},
                    )
                    runs[variant].append(r)
                    progress(f"rep {rep + 1} {variant}: {r}")
            data["paths"] = {
                v: {k: _median([r.get(k) for r in rs]) for k in sorted({k for r in rs for k in r})}
                for v, rs in runs.items()
            }
            data["pathRuns"] = runs
    if "memory" in only:
        memNames = (
            args.memory_servers.split(",")
            if args.memory_servers
            else [PROJECT]
            if args.smoke
            else names
        )
        data["memory"] = {}
        for name in [n for n in memNames if n in servers]:
            a = slowMany(servers[name], s, s.slowConns)
            b = idle(servers[name], s, s.idleConns)
            checks[name].update(a.pop("checks"))
            checks[name].update(b.pop("checks"))
            data["memory"][name] = {**a, **b}
            progress(f"memory {name}: {data['memory'][name]}")
    if "client" in only and PROJECT in servers:
        c = client(servers[PROJECT], s, s.reps)
        checks[PROJECT].update(c.pop("checks"))
        data["client"] = c
        progress(f"client: {c}")
    if "scaling" in only and PROJECT in servers and s.scaling:
        sc = scaling(s, loadgen)
        checks[PROJECT].update(sc.pop("checks", {}))
        data["scaling"] = sc
        progress(f"scaling: {sc}")

    data["checks"] = {n: {k: list(v) for k, v in c.items()} for n, c in checks.items()}
    lines = report(data, names)
    failed = [(n, k, d) for n, c in checks.items() for k, (ok, d) in c.items() if not ok]
    lines += ["", "Checks"]
    for name in names:
        for k, (ok, detail) in checks[name].items():
            if name == PROJECT or not ok:
                lines.append(f"- {'ok  ' if ok else 'FAIL'} {name}: {k} ({detail})")
    print("\n".join(lines))
    print(f"\n({time.monotonic() - started:.0f}s)")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(data, indent=1, default=str))
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    if data["medians"]:
        svg = render(data, names)
        (args.out / "chart.svg").write_text(svg)
        if args.chart:
            args.chart.parent.mkdir(parents=True, exist_ok=True)
            args.chart.write_text(svg)
    mine = [f for f in failed if f[0] == PROJECT]
    if PROJECT in servers and mine:
        print(f"\n{len(mine)} check(s) of {PROJECT} failed", file=sys.stderr)
        return 1
    return 0


def rerender(args: argparse.Namespace) -> int:
    """Print the report of a saved run and write its chart (``--from-json``)."""
    data = json.loads(args.from_json.read_text())
    names = list(data["servers"])
    checks = {n: {k: tuple(v) for k, v in c.items()} for n, c in data.get("checks", {}).items()}
    lines = [*report(data, names), "", "Checks"]
    for name in names:
        for k, (ok, detail) in checks.get(name, {}).items():
            if name == PROJECT or not ok:
                lines.append(f"- {'ok  ' if ok else 'FAIL'} {name}: {k} ({detail})")
    print("\n".join(lines))
    if args.chart and data["medians"]:
        args.chart.parent.mkdir(parents=True, exist_ok=True)
        args.chart.write_text(render(data, names))
    return 0


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


if __name__ == "__main__":
    raise SystemExit(main())
