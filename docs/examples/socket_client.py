"""
The tutorial's TCP client, corrected: connect, send, receive once, close.

Usage: python socket_client.py [HOST [PORT [MESSAGE]]]  (default: 127.0.0.1 7788;
asks for the message when none is given)
"""

import socket
import sys

server_ip = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
server_port = int(sys.argv[2]) if len(sys.argv) > 2 else 7788
send_data = sys.argv[3] if len(sys.argv) > 3 else input("data to send: ")

# 1. Create the socket (SOCK_STREAM: TCP).
tcp_client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

# 2. Connect: the kernel does the three-way handshake and picks our port.
tcp_client_socket.connect((server_ip, server_port))
print("connected from ephemeral port", tcp_client_socket.getsockname()[1], flush=True)

# 3. Send the data.
tcp_client_socket.sendall(send_data.encode("utf-8"))

# 4. Receive at most 1024 bytes of the answer.
recv_data = tcp_client_socket.recv(1024)
print("received:", recv_data.decode("utf-8"), flush=True)

# 5. Close the socket.
tcp_client_socket.close()
