"""
Addresses as tcpproto reads and writes them: peer IPs, networks, log text.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def formatAddress(address: IAddress | None) -> str:
    """
    A peer or host address as an operator reads it: ``1.2.3.4:80``, ``[::1]:80``,
    ``unix:/run/x.sock``.

    Every part a peer may have chosen (a UNIX socket's name, an address
    claimed in a PROXY header) goes through :func:`escapeForLog`, so that
    the result is one line with no terminal control sequence in it.
    """
    if isinstance(address, IPv4Address):
        return escapeForLog(f"{address.host}:{address.port}")
    if isinstance(address, IPv6Address):
        return escapeForLog(f"[{address.host}]:{address.port}")
    if isinstance(address, UNIXAddress):
        name = address.name
        if isinstance(name, bytes):
            name = name.decode("utf-8", "backslashreplace")
        return f"unix:{escapeForLog(name)}" if name else "unix"
    return escapeForLog(repr(address))


def escapeForLog(text: str) -> str:
    """
    ``text`` made safe for a log event field: every character that is not
    printable (line breaks, ``\\r``, escape sequences, C1 controls, Unicode
    line and paragraph separators...) is written as its Python escape
    (``\\n``, ``\\x1b``, ``\\u2028``).

    The one escaping function for values that come from the network (peer
    addresses, PROXY claims, TLS names): the text and JSON log observers
    print a field as it is, so without it a peer could add lines that look
    like the server's own, or colour an operator's terminal.  Printable text
    comes back unchanged (and at the cost of one ``str.isprintable``).
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def parseNetwork(text: str) -> Network:
    """
    Parse ``text`` as an IPv4 or IPv6 network (``10.0.0.0/8``, ``::1``).

    A bare address means just that host.  Host bits are allowed
    (``192.168.1.7/24`` is the /24 around it), as operators write them.

    :raises ValueError: with a message naming ``text``.
    """
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IPv4 or IPv6 network: {text!r}") from None


def peerIP(address: IAddress) -> IPAddress | None:
    """
    The IP address of a peer, or ``None`` for a non-IP peer (a UNIX socket).

    IPv4-mapped IPv6 addresses (``::ffff:10.1.2.3``, seen on dual-stack
    ``tcp6:`` listeners) are returned as the IPv4 address they carry, so one
    access list and one per-peer count serve both families.
    """
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return None
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def isIPTransportAddress(address: IAddress | None) -> bool:
    """Whether ``address`` is an IPv4 or IPv6 one (a TCP socket's, not a UNIX one's)."""
    return isinstance(address, (IPv4Address, IPv6Address))
