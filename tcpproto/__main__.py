"""``python -m tcpproto`` runs the client, like ``tcpecho-client``."""

from tcpproto.client import main

main()
