"""
Abort a connection with RST instead of the orderly FIN exchange.

SO_LINGER with a zero timeout makes close() discard unsent data and send RST.  The
server's protocol gets connectionLost with ConnectionLost, not ConnectionDone.
Twisted's transport.abortConnection() does the same from the other side.

Usage: python abort_client.py [HOST [PORT]]  (default: 127.0.0.1 7788)
"""

import socket
import struct
import sys

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 7788

sock = socket.create_connection((host, port), timeout=10)
sock.sendall(b"hello\n")
print("received:", sock.recv(1024).decode("utf-8").strip())
sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
sock.close()  # RST, no FIN, no TIME_WAIT on our side
print("aborted with RST")
