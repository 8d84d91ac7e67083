"""
Flow control: a client that sends without reading is stopped by TCP, and nothing is lost.

Sends to an echo server without reading the echo, until send() has been unable to
take a byte for half a second.  The server's output buffer filled, so it stopped
reading; its receive window filled, so TCP stopped us.  Then the client half-closes
and reads everything back, checking every byte.

Usage: python slow_reader.py [HOST [PORT [MAX_MIB]]]  (default: 127.0.0.1 7788 64)
"""

import select
import socket
import sys
import time

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 7788
limit = (int(sys.argv[3]) if len(sys.argv) > 3 else 64) * 1024 * 1024

CHUNK = 1 << 20
pattern = bytes(range(256)) * (CHUNK // 256 + 1)  # byte i of the stream is i % 256
sock = socket.create_connection((host, port), timeout=10)
sock.setblocking(False)

sent = 0
stalled = False
deadline = time.monotonic() + 20
while sent < limit and time.monotonic() < deadline:
    try:
        sent += sock.send(pattern[sent % 256 : sent % 256 + 65536])
    except BlockingIOError:
        _, writable, _ = select.select([], [sock], [], 0.5)
        if not writable:
            stalled = True
            break
print(f"sent {sent} bytes, then", "TCP stopped us" if stalled else "reached the limit")

sock.setblocking(True)
sock.settimeout(10)
sock.shutdown(socket.SHUT_WR)
received = 0
intact = True
while True:
    chunk = sock.recv(CHUNK)
    if not chunk:
        break
    start = received % 256
    intact = intact and chunk == pattern[start : start + len(chunk)]
    received += len(chunk)
sock.close()
print(
    f"read back {received} bytes,", "all intact" if intact and received == sent else "NOT intact"
)
