"""Endpoint string prefixes from tcpproto: ``reuseport:`` (see :mod:`tcpproto.reuseport`)."""

from tcpproto.reuseport import ReusePortServerParser

reuseport = ReusePortServerParser()
