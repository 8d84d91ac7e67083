"""
Render a pcap of one TCP conversation as a table a reader can follow.

Used by ``scripts/capture-trace.sh``; standard library only, so anyone can
rerun it.  Each packet becomes one line: time since the first packet, the
direction (client or server), the TCP flags, sequence and acknowledgement
numbers relative to each side's initial sequence number (as tcpdump and
Wireshark show them), the payload length, the advertised receive window in
bytes (window scaling applied), and the payload or what the segment means:
the handshake, FINs and RSTs, what an ACK acknowledges, a zero window, a
window probe, SACK and D-SACK blocks, and a retransmission (bytes sent again
by the same side, with the row that sent them first and the delay).

Usage: python scripts/render_trace.py PCAP SERVER_PORT
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

# Link-layer header types (https://www.tcpdump.org/linktypes.html) we read.
_ETHERNET = 1
_LINUX_SLL = 113
_LINUX_SLL2 = 276
_NULL = 0

_FLAG_NAMES = (
    (0x02, "SYN"),
    (0x01, "FIN"),
    (0x04, "RST"),
    (0x08, "PSH"),
    (0x10, "ACK"),
)


@dataclass
class Segment:
    """One captured TCP segment."""

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    ack: int
    flags: int
    window: int
    options: bytes
    payload: bytes

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


def readPcap(path: str) -> list[Segment]:
    """The IPv4 and IPv6 TCP segments in the classic-format pcap file ``path``."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError(f"{path}: not a pcap file (too short)")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file (use tcpdump -w, not pcapng)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linkType = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    segments = []
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        segment = _parseFrame(frame, linkType, sec + frac / (1e9 if nano else 1e6))
        if segment is not None:
            segments.append(segment)
    return segments


def _parseFrame(frame: bytes, linkType: int, time: float) -> Segment | None:
    if linkType == _ETHERNET:
        etherType, ip = struct.unpack("!H", frame[12:14])[0], frame[14:]
    elif linkType == _LINUX_SLL:
        etherType, ip = struct.unpack("!H", frame[14:16])[0], frame[16:]
    elif linkType == _LINUX_SLL2:
        etherType, ip = struct.unpack("!H", frame[0:2])[0], frame[20:]
    elif linkType == _NULL:
        family = struct.unpack("=I", frame[:4])[0]
        etherType, ip = (0x0800 if family == 2 else 0x86DD), frame[4:]
    else:
        raise ValueError(f"unsupported link type {linkType}")
    if etherType == 0x0800 and len(ip) >= 20:
        headerLength = (ip[0] & 0x0F) * 4
        totalLength = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 6:
            return None
        src = ".".join(str(b) for b in ip[12:16])
        dst = ".".join(str(b) for b in ip[16:20])
        tcp = ip[headerLength:totalLength]
    elif etherType == 0x86DD and len(ip) >= 40:
        if ip[6] != 6:  # no extension headers on loopback captures
            return None
        payloadLength = struct.unpack("!H", ip[4:6])[0]
        src = _ipv6(ip[8:24])
        dst = _ipv6(ip[24:40])
        tcp = ip[40 : 40 + payloadLength]
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport, seq, ack, offsetFlags, window = struct.unpack("!HHIIHH", tcp[:16])
    dataOffset = (offsetFlags >> 12) * 4
    return Segment(
        time=time,
        src=(src, sport),
        dst=(dst, dport),
        seq=seq,
        ack=ack,
        flags=offsetFlags & 0x3F,
        window=window,
        options=tcp[20:dataOffset],
        payload=tcp[dataOffset:],
    )


def _ipv6(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))


def _tcpOptions(options: bytes) -> Iterator[tuple[int, bytes]]:
    """Each (kind, value) of a TCP header's options, up to the end-of-list or a malformed one."""
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options):
            break
        length = options[i + 1]
        if length < 2:
            break
        yield kind, options[i + 2 : i + length]
        i += length


def _synOptions(options: bytes) -> dict[str, int]:
    """MSS and window scale from a SYN's options."""
    found: dict[str, int] = {}
    for kind, value in _tcpOptions(options):
        if kind == 2 and len(value) == 2:
            found["mss"] = struct.unpack("!H", value)[0]
        elif kind == 3 and len(value) == 1:
            found["wscale"] = value[0]
    return found


def _sackBlocks(options: bytes) -> list[tuple[int, int]]:
    """The (left, right) edges of the SACK option's blocks, if there is one."""
    for kind, value in _tcpOptions(options):
        if kind == 5:
            return [struct.unpack("!II", value[j : j + 8]) for j in range(0, len(value) - 7, 8)]
    return []


def flagNames(flags: int) -> str:
    """``SYN+ACK``, ``PSH+ACK``, ``FIN+ACK`` ... in the order people say them."""
    return "+".join(name for bit, name in _FLAG_NAMES if flags & bit) or "-"


def _payloadText(payload: bytes, limit: int = 28) -> str:
    text = repr(payload[:limit])
    return text + ("..." if len(payload) > limit else "")


def render(segments: list[Segment], serverPort: int) -> str:
    """The table, one line per segment of the conversation with ``serverPort``."""
    segments = [s for s in segments if serverPort in (s.src[1], s.dst[1])]
    if not segments:
        raise ValueError(f"no TCP segment to or from port {serverPort}")
    t0 = segments[0].time
    isn: dict[str, int] = {}
    wscale: dict[str, int] = {}
    # The relative sequence number just after each side's FIN, once sent.
    finEnd: dict[str, int] = {}
    # Per side: the end of the sequence space sent so far, and the range each row
    # first sent (start, end, row, time), to recognise a retransmission.
    sentEnd: dict[str, int] = {}
    sentRows: dict[str, list[tuple[int, int, int, float]]] = {"client": [], "server": []}
    established = False
    lines = [
        f"{'#':>3}  {'time ms':>8}  {'direction':<16}  {'flags':<11}  "
        f"{'seq':>6}  {'ack':>6}  {'len':>5}  {'window':>7}  data / meaning",
    ]
    for n, s in enumerate(segments, 1):
        side = "server" if s.src[1] == serverPort else "client"
        other = "client" if side == "server" else "server"
        arrow = "client -> server" if side == "client" else "client <- server"
        syn = s.has(0x02)
        if syn:
            isn[side] = s.seq
            wscale[side] = _synOptions(s.options).get("wscale", 0)
        seq = (s.seq - isn[side]) % 2**32 if side in isn else s.seq
        ack = (s.ack - isn[other]) % 2**32 if s.has(0x10) and other in isn else None
        # A SYN's window is never scaled; later ones are when both sides offered scaling.
        both = side in wscale and other in wscale
        window = s.window if syn or not both else s.window << wscale[side]

        notes = []
        length = len(s.payload) + s.has(0x02) + s.has(0x01)
        if length and not s.has(0x04):
            first = next((r for r in sentRows[side] if r[0] <= seq < r[1]), None)
            if first is not None and seq < sentEnd.get(side, 0):
                start, end, row, when = first
                what = (
                    f"row {row}" if (start, end) == (seq, seq + length) else f"bytes of row {row}"
                )
                notes.append(
                    f"retransmission: {what} sent again, {(s.time - when) * 1000:.3f} ms later"
                )
            if seq + length > sentEnd.get(side, 0):
                start = max(seq, sentEnd.get(side, 0))
                sentRows[side].append((start, seq + length, n, s.time))
            sentEnd[side] = max(sentEnd.get(side, 0), seq + length)
        if s.has(0x04):
            notes.append(f"RST: the {side} resets the connection (no FIN, no TIME_WAIT)")
        elif syn:
            opts = _synOptions(s.options)
            detail = ", ".join(f"{k} {v}" for k, v in sorted(opts.items()))
            step = "handshake 2/3" if s.has(0x10) else "handshake 1/3"
            notes.append(step + (f" ({detail})" if detail else ""))
        elif not established and side == "client" and ack == 1:
            established = True
            notes.append("handshake 3/3: connection established")
        if s.payload:
            notes.append(f"{len(s.payload)} data bytes {_payloadText(s.payload)}")
        if s.has(0x01):
            finEnd[side] = seq + len(s.payload) + 1
            notes.append(f"FIN: the {side} will send no more")
        if not notes and ack is not None and not length and seq == sentEnd.get(side, 0) - 1:
            # A bare ACK one below what was sent: a zero-window (or keepalive)
            # probe, which makes the peer answer with its current window.
            notes.append("probe: asks the peer for its window")
        elif not notes and ack is not None:
            if finEnd.get(other) == ack:
                notes.append(f"ACK of the {other}'s FIN")
            else:
                notes.append(f"ACK: the {side} has received {ack - 1} bytes")
            for left, right in _sackBlocks(s.options) if other in isn else []:
                start, end = (left - isn[other]) % 2**32, (right - isn[other]) % 2**32
                if ack is not None and end <= ack:
                    notes.append(f"D-SACK {start}-{end}: these bytes arrived twice")
                else:
                    notes.append(f"SACK {start}-{end}: these arrived after a gap")
        if window == 0 and not s.has(0x04):
            notes.append("zero window: the receive buffer is full")
        lines.append(
            f"{n:>3}  {(s.time - t0) * 1000:>8.3f}  {arrow:<16}  {flagNames(s.flags):<11}  "
            f"{seq:>6}  {'' if ack is None else ack:>6}  {len(s.payload):>5}  {window:>7}  "
            + "; ".join(notes)
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: render_trace.py PCAP SERVER_PORT\n")
        return 2
    try:
        sys.stdout.write(render(readPcap(argv[0]), int(argv[1])))
    except (OSError, ValueError) as e:
        sys.stderr.write(f"render_trace.py: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
