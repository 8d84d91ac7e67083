"""
PROXY protocol headers, written independently of any parser.
"""

from __future__ import annotations

import ipaddress
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxyV1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A PROXY protocol v1 header (text) for a TCP connection."""
    family = "TCP6" if ":" in source[0] else "TCP4"
    return (
        f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
    ).encode("ascii")


def proxyV2(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A PROXY protocol v2 header (binary, PROXY command, TCP) for a connection."""
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0])
    familyProtocol = 0x21 if src.version == 6 else 0x11
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return V2_SIGNATURE + bytes([0x21, familyProtocol]) + struct.pack("!H", len(body)) + body


def proxyV2Local() -> bytes:
    """A PROXY protocol v2 LOCAL header (a balancer's own connection)."""
    return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
