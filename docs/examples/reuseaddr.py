"""
The tutorial's port reuse snippet, corrected: bind a port without, then with, SO_REUSEADDR.

Right after a server on PORT closed connections (they linger in TIME_WAIT for a
minute), binding it without SO_REUSEADDR fails with "Address already in use".

Usage: python reuseaddr.py [HOST [PORT]]  (default: every interface, port 7788)
"""

import socket
import sys

host = sys.argv[1] if len(sys.argv) > 1 else ""
port = int(sys.argv[2]) if len(sys.argv) > 2 else 7788

for reuse in (False, True):
    tcp_server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if reuse:
        tcp_server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
    try:
        tcp_server_socket.bind((host, port))
        tcp_server_socket.listen(128)
        print(f"SO_REUSEADDR={reuse}: bound port {port}")
    except OSError as e:
        print(f"SO_REUSEADDR={reuse}: {e.strerror}")
    finally:
        tcp_server_socket.close()
