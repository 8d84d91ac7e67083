"""
Half-close with plain sockets: send everything, shutdown(SHUT_WR), read until the server closes.

shutdown(SHUT_WR) sends FIN: "I will send no more", while the other direction stays
open.  The server's Twisted protocol sees readConnectionLost, finishes its answer and
closes; recv() then returns b"".

Usage: python halfclose_client.py [HOST [PORT [MESSAGE]]]  (default: 127.0.0.1 7788 hello)
"""

import socket
import sys

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 7788
message = (sys.argv[3] if len(sys.argv) > 3 else "hello").encode("utf-8")

sock = socket.create_connection((host, port), timeout=10)
sock.sendall(message)
sock.shutdown(socket.SHUT_WR)  # our FIN; we can still receive

answer = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:  # the server's FIN: the answer is complete
        break
    answer += chunk
sock.close()
print("received", len(answer), "bytes:", answer.decode("utf-8"))
