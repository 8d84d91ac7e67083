"""
An SVG bar chart of a benchmark run, with no dependency.

One panel per figure (ping-pong, stream, memory), one bar per server, each
labelled with its value; the project's server is drawn in its own colour.
"""

from __future__ import annotations

from html import escape
from typing import Any

PROJECT = "tcpecho"
WIDTH = 760
LABEL_W = 130
BAR_H = 18
GAP = 6
PANEL_TOP = 26
VALUE_W = 120

#: (key, title, where: "medians" or "memory", unit, higher is better)
PANELS = [
    ("pp100_msgs", "ping-pong, 100 connections x 1 KiB", "medians", "msg/s", True),
    ("pp1_msgs", "ping-pong, 1 connection x 64 B", "medians", "msg/s", True),
    (
        "py10x1KiB_msgs",
        "ping-pong, 10 Python client processes x 1 KiB, sharing the CPUs",
        "medians",
        "msg/s",
        True,
    ),
    ("stream_mb_s", "verified stream, half-closed at the end", "medians", "MB/s", True),
    ("c1x64B_cpu_us", "server CPU per message, 1 connection x 64 B", "medians", "us", False),
    ("c10x1KiB_cpu_us", "server CPU per message, 10 connections x 1 KiB", "medians", "us", False),
    ("pp100_cpu_us", "server CPU per message, 100 connections x 1 KiB", "medians", "us", False),
    ("slowmany_kib", "RSS growth per slow reader, 1,000 at once", "memory", "KiB", False),
    ("idle_kib", "RSS per idle connection, 10,000 open", "memory", "KiB", False),
]


def render(data: dict[str, Any], names: list[str]) -> str:
    """The chart for ``data`` (as ``run.py`` writes it), servers in ``names`` order."""
    parts: list[str] = []
    y = 40
    for key, title, where, unit, higher in PANELS:
        source = data.get(where) or {}
        rows: list[tuple[str, float]] = []
        for n in names:
            v = (source.get(n) or {}).get(key)
            if v is not None:
                rows.append((n, float(v)))
        if not rows:
            continue
        top = max(v for _, v in rows) or 1
        better = "higher is better" if higher else "lower is better"
        parts.append(
            f'<text x="10" y="{y + 16}" class="t">{escape(title)}</text>'
            f'<text x="{WIDTH - 10}" y="{y + 16}" class="n" text-anchor="end">'
            f"{escape(unit)}, {better}</text>"
        )
        y += PANEL_TOP
        for name, value in rows:
            # A server that took everything the slow readers sent: a lower bound.
            atLeast = key == "slowmany_kib" and (source.get(name) or {}).get("slowmany_capped")
            w = max((WIDTH - LABEL_W - VALUE_W) * value / top, 1 if value else 0)
            cls = "p" if name == PROJECT else "b"
            parts.append(
                f'<text x="{LABEL_W - 8}" y="{y + 13}" text-anchor="end">{escape(name)}</text>'
                f'<rect x="{LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" class="{cls}"/>'
                f'<text x="{LABEL_W + w + 6:.1f}" y="{y + 13}">'
                f"{'at least ' if atLeast else ''}{_fmt(value)}</text>"
            )
            y += BAR_H + GAP
        y += 14
    meta = data.get("meta", {})
    caption = f"{meta.get('date', '')}, {meta.get('machine', '')}"
    height = y + 20
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">'
        "<style>.t{font-weight:bold;font-size:13px}.n{fill:#555}"
        ".b{fill:#8da0b6}.p{fill:#d9822b}text{fill:#222}</style>"
        f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>'
        f'<text x="10" y="20" class="t">tcpproto benchmark: twistd tcpecho and its peers</text>'
        + "".join(parts)
        + f'<text x="10" y="{height - 8}" class="n" font-size="10">{escape(caption)}</text>'
        "</svg>\n"
    )


def _fmt(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:g}"
