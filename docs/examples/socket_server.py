"""
The tutorial's TCP server, corrected: accept one client, read once, say thank you, close.

Usage: python socket_server.py [HOST [PORT]]  (default: every interface, port 7788)
"""

import socket
import sys

host = sys.argv[1] if len(sys.argv) > 1 else ""
port = int(sys.argv[2]) if len(sys.argv) > 2 else 7788

# 1. Create the socket: AF_INET is IPv4, SOCK_STREAM is TCP.
tcp_server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

# Let a restarted server bind the port while old connections are in TIME_WAIT.
tcp_server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

# 2. Bind to a local address and port.
tcp_server_socket.bind((host, port))

# 3. Listen: the socket becomes passive; up to 128 connections wait for accept().
tcp_server_socket.listen(128)
print("listening on port", tcp_server_socket.getsockname()[1], flush=True)

# 4. Accept one client: a new socket for this connection; the listener keeps listening.
client_socket, client_address = tcp_server_socket.accept()

# 5.1 Receive at most 1024 bytes: whatever part of the stream has arrived.
recv_data = client_socket.recv(1024)
print("received:", recv_data.decode("utf-8"), "from", client_address, flush=True)

# 5.2 Send the answer (sendall: send() may send only part of it).
client_socket.sendall(b"thank you!")

# 6. Close the client's socket, then the listener.
client_socket.close()
tcp_server_socket.close()
