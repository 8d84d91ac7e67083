"""
Framing: TCP delivers bytes, not messages, so a reader must find where each message ends.

Sends three newline-terminated messages to an echo server in three send() calls, then
collects the answer with recv(1024) until it holds three complete lines.  How the bytes
are grouped into recv() results is up to TCP; the lines are always the same.

Usage: python line_client.py [HOST [PORT]]  (default: 127.0.0.1 7788)
"""

import socket
import sys

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 7788
messages = [b"one\n", b"two\n", b"three\n"]

sock = socket.create_connection((host, port), timeout=10)
for message in messages:
    sock.sendall(message)  # three sends are not three segments, nor three recv()s

buffer = b""
lines: list[bytes] = []
recv_sizes: list[int] = []
while len(lines) < len(messages):
    chunk = sock.recv(1024)
    if not chunk:
        break  # the server closed before answering everything
    recv_sizes.append(len(chunk))
    buffer += chunk
    *complete, buffer = buffer.split(b"\n")  # the last piece is a partial line (or b"")
    lines.extend(complete)
sock.close()

print("recv() returned", recv_sizes, "bytes")
for line in lines:
    print("line:", line.decode("utf-8"))
