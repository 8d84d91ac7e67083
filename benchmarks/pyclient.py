#!/usr/bin/env python3
"""
Echo ping-pong from Python client processes, the way uvloop's published
benchmark drives its servers: each process owns one blocking socket and does
``sendall(message)`` then ``recv`` until the whole echo is back, again and
again.  Unlike ``loadgen.c`` these clients are not nearly free: N of them
share the machine's cores with the server, so what decides the rate is the
server's CPU per message (docs/performance.rst).

    pyclient.py PORT CONNS SIZE SECONDS [--tls] [--proxy] [--cpu N]

``--tls`` wraps each socket in TLS (no certificate check: loopback only),
``--proxy`` sends a PROXY protocol v1 header first, ``--cpu N`` pins every
client process to CPU N.  Every echoed byte is compared with what was sent.
Prints one JSON line, as ``loadgen`` does (msgs_per_s, p50_us, p99_us, msgs,
errors, mismatched); exits 1 if a byte was wrong or missing.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import random
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

#: Pattern the messages are cut from: any window of up to 64 KiB is contiguous.
PAT = random.Random(13).randbytes(1 << 16) * 2


def client(
    port: int, index: int, size: int, secs: float, start: int, out: Path, args: argparse.Namespace
) -> int:
    """One client process: ping-pong until the deadline, results into ``out``."""
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    lat = array.array("d")
    msgs = errors = bad = 0
    try:
        sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if args.proxy:
            local = sock.getsockname()[1]
            sock.sendall(f"PROXY TCP4 127.0.0.1 127.0.0.1 {local} {port}\r\n".encode())
        if args.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        # Everyone connected: wait for the start signal.
        os.read(start, 1)
        off = index * 4099 % (1 << 16)
        clock = time.perf_counter
        end = clock() + secs
        t0 = clock()
        recv = sock.recv
        while t0 < end:
            msg = PAT[off : off + size]
            sock.sendall(msg)
            got = b""
            while len(got) < size:
                chunk = recv(size - len(got))
                if not chunk:
                    raise ConnectionError("closed by the server")
                got += chunk
            if got != msg:
                bad += 1
            t1 = clock()
            lat.append((t1 - t0) * 1e6)
            msgs += 1
            t0 = t1
            off = (off + size) % (1 << 16)
        sock.close()
    except OSError:
        errors += 1
    with open(out, "wb") as f:
        f.write(json.dumps({"msgs": msgs, "errors": errors, "bad": bad}).encode() + b"\n")
        lat.tofile(f)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("port", type=int)
    p.add_argument("conns", type=int)
    p.add_argument("size", type=int)
    p.add_argument("secs", type=float)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--proxy", action="store_true")
    p.add_argument("--cpu", type=int)
    args = p.parse_args()
    if not 1 <= args.size <= 1 << 16:
        p.error("size must be 1..65536")
    tmp = Path(tempfile.mkdtemp(prefix="pyclient-"))
    start_r, start_w = os.pipe()
    pids = []
    for i in range(args.conns):
        pid = os.fork()
        if pid == 0:
            os.close(start_w)
            code = 1
            try:
                code = client(args.port, i, args.size, args.secs, start_r, tmp / str(i), args)
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(start_r)
    time.sleep(0.2 + args.conns * 0.005)  # let them connect (and handshake)
    os.write(start_w, b"x" * args.conns)
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(start_w)
    msgs = errors = bad = 0
    lat = array.array("d")
    for i in range(args.conns):
        path = tmp / str(i)
        try:
            with open(path, "rb") as f:
                head = json.loads(f.readline())
                rest = f.read()
        except (OSError, ValueError):
            errors += 1
            continue
        msgs += head["msgs"]
        errors += head["errors"]
        bad += head["bad"]
        lat.frombytes(rest)
        path.unlink()
    tmp.rmdir()
    ordered = sorted(lat)
    n = len(ordered)
    print(
        json.dumps(
            {
                "mode": "pyclient",
                "conns": args.conns,
                "size": args.size,
                "msgs_per_s": round(msgs / args.secs),
                "p50_us": round(ordered[n // 2]) if n else 0,
                "p99_us": round(ordered[n * 99 // 100]) if n else 0,
                "msgs": msgs,
                "errors": errors,
                "mismatched": bad,
            }
        )
    )
    return int(errors != 0 or bad != 0 or msgs == 0)


if __name__ == "__main__":
    sys.exit(main())
