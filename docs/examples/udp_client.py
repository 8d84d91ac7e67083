"""
The UDP counterpart of socket_client.py: no connection, and every datagram is a message.

Sends three datagrams to a UDP echo server and reads three back: recvfrom() returns
one whole datagram each time, never part of one or two at once.  A lost datagram is
not sent again, so the client gives up after a timeout.

Usage: python udp_client.py [HOST [PORT]]  (default: 127.0.0.1 7788)
"""

import socket
import sys

server_ip = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
server_port = int(sys.argv[2]) if len(sys.argv) > 2 else 7788

# SOCK_DGRAM: UDP.  No connect() needed: no handshake, no connection state.
udp_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp_socket.settimeout(2)

for message in (b"one", b"two", b"three"):
    udp_socket.sendto(message, (server_ip, server_port))  # one datagram, sent at once
print("sent from port", udp_socket.getsockname()[1], flush=True)

try:
    for _ in range(3):
        datagram, address = udp_socket.recvfrom(65535)  # one whole datagram
        print("datagram:", datagram.decode("utf-8"), "from port", address[1])
except TimeoutError:
    print("no answer: a datagram was lost (UDP does not resend) or nobody listens")
    sys.exit(1)
finally:
    udp_socket.close()
