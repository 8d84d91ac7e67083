"""
The guide for the tutorial's readers: its new traces, glossary, Chinese edition and README entry.

The retransmission and state captures (``scripts/capture-netns.sh``) are what
the pages say they are; the glossary maps every term the tutorial raises; the
zh_CN catalogues of the guide pages are complete and use the standard Chinese
terms; the README leads a reader of the tutorial to both editions and to the
plain example files; the offline Twisted inventory links the names the guide
uses.  (``scripts/check_translations.py``, run by ``.ci/docs.sh``, also checks
that the catalogues match the current English text.)
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from types import ModuleType
from typing import Any, cast

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
TRACES = os.path.join(DOCS, "traces")
CATALOGUES = os.path.join(DOCS, "locales", "zh_CN", "LC_MESSAGES")

#: The pages the Chinese edition translates completely.
GUIDE = ("index", "quickstart", "sockets-to-twisted", "tcp-lifecycle", "tcp-vs-udp", "glossary")


def _read(*path: str) -> str:
    with open(os.path.join(ROOT, *path), encoding="utf-8") as f:
        return f.read()


def _load(name: str, *path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, *path))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def _rows(trace: str) -> dict[int, str]:
    """Row number -> the rendered row, for a trace's table."""
    return {
        int(m[1]): m[0]
        for m in re.finditer(r"(?m)^\s*(\d+)\s+[\d.]+\s+client (?:->|<-).*$", trace)
    }


def _rendered(name: str, trace: str) -> str:
    """render_trace.py's table of ``docs/traces/NAME.pcap``, for the port ``trace`` names."""
    render: Any = _load("render_trace", "scripts", "render_trace.py")
    port = re.search(r"server port: (\d+)", trace)
    assert port is not None
    return cast(
        str, render.render(render.readPcap(os.path.join(TRACES, f"{name}.pcap")), int(port[1]))
    )


class RetransmissionTraceTests(SynchronousTestCase):
    """docs/traces/retransmit.*: a real retransmission, as docs/tcp-lifecycle.rst tells it."""

    def setUp(self) -> None:
        self.trace = _read("docs", "traces", "retransmit.txt")
        self.rows = _rows(self.trace)

    def test_renderedFromThePcap(self) -> None:
        """The committed table is render_trace.py's rendering of the committed capture."""
        self.assertIn(_rendered("retransmit", self.trace), self.trace)

    def test_oneDataSegmentSentAgainByTheTimer(self) -> None:
        """Exactly one segment was retransmitted, a data segment, after a timeout."""
        again = re.findall(r"retransmission: row (\d+) sent again, ([\d.]+) ms later", self.trace)
        self.assertEqual(len(again), 1, self.trace)
        self.assertEqual(self.trace.count("retransmission:"), 1)
        ((first, delay),) = again
        self.assertGreaterEqual(float(delay), 5.0)
        self.assertIn("data bytes", self.rows[int(first)])

    def test_whatThePageSays(self) -> None:
        """The rows the page names: echo 6, its ACK 7 (lost), row 8 resends 6, D-SACK in 9."""
        self.assertRegex(self.rows[6], r"client <- server\s+PSH\+ACK .* b'hello\\n'")
        self.assertRegex(self.rows[7], r"client -> server\s+ACK\s")
        self.assertIn("retransmission: row 6 sent again, 204", self.rows[8])
        self.assertIn("D-SACK 1-7: these bytes arrived twice", self.rows[9])
        self.assertIn("client output:\n    hello\n", self.trace)

    def test_lossMadeInANamespace(self) -> None:
        """The loss came from an nftables rule in a namespace, on loopback only."""
        self.assertIn("ip netns add", self.trace)
        self.assertIn("numgen random mod 100", self.trace)
        addresses = set(re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", self.trace))
        self.assertEqual(addresses, {"127.0.0.1"})


class ZeroWindowTraceTests(SynchronousTestCase):
    """docs/traces/zero-window.*: flow control on the wire, as docs/tcp-lifecycle.rst tells it."""

    def setUp(self) -> None:
        self.trace = _read("docs", "traces", "zero-window.txt")
        self.rows = _rows(self.trace)

    def window(self, row: int) -> int:
        return int(self.rows[row].split()[9])  # #, time, c, ->, s, flags, seq, ack, len, window

    def test_renderedFromThePcap(self) -> None:
        self.assertIn(_rendered("zero-window", self.trace), self.trace)

    def test_whatThePageSays(self) -> None:
        """The rows the page names, with the windows it says they have."""
        fromClient = {n for n, row in self.rows.items() if "client -> server" in row}
        # From row 16 the client advertises 0, until it reads (row 30).
        self.assertEqual([n for n in range(16, 30) if n in fromClient and self.window(n) != 0], [])
        self.assertGreater(self.window(30), 0)
        self.assertIn(30, fromClient)
        # From row 25 the server advertises 0, until it reads again (row 39).
        self.assertEqual(
            [n for n in range(25, 39) if n not in fromClient and self.window(n) != 0], []
        )
        self.assertNotIn(39, fromClient)
        self.assertGreater(self.window(39), 0)
        self.assertEqual((self.window(11), 11 in fromClient), (0, False))
        for probe in (26, 28):
            self.assertIn("probe: asks the peer for its window", self.rows[probe])
        self.assertNotIn(26, fromClient)
        self.assertIn(28, fromClient)
        self.assertRegex(self.rows[49], r"client -> server\s+FIN\+PSH\+ACK .* data bytes")
        for row, dsack in ((21, 22), (24, 25)):
            self.assertIn("retransmission: bytes of row", self.rows[row])
            self.assertIn("D-SACK", self.rows[dsack])
        self.assertIn("all intact", self.trace)


class StatesTraceTests(SynchronousTestCase):
    """docs/traces/tcp-states.txt: an ``ss -tan`` line at each state the tutorial draws."""

    def test_everyState(self) -> None:
        trace = _read("docs", "traces", "tcp-states.txt")
        seen = set(re.findall(r"(?m)^    ([A-Z][A-Z0-9-]+)\s+\d+\s+\d+\s", trace))
        self.assertEqual(
            seen,
            {
                "LISTEN",
                "SYN-SENT",
                "SYN-RECV",
                "ESTAB",
                "FIN-WAIT-1",
                "FIN-WAIT-2",
                "CLOSE-WAIT",
                "LAST-ACK",
                "TIME-WAIT",
            },
        )

    def test_congestionWindowFromTheKernel(self) -> None:
        """The ss -tin line the congestion-control section includes shows cwnd."""
        trace = _read("docs", "traces", "tcp-states.txt")
        self.assertRegex(trace, r"(?s)the client's socket seen from its kernel.{0,300} cwnd:\d+ ")
        page = _read("docs", "tcp-lifecycle.rst")
        self.assertIn(":start-at: the client's socket seen from its kernel", page)


class GlossaryTests(SynchronousTestCase):
    """docs/glossary.rst maps the tutorial's terms to sockets and Twisted."""

    def setUp(self) -> None:
        self.glossary = _read("docs", "glossary.rst")
        self.terms = set(re.findall(r"(?m)^   (\S[^\n]*)\n      :Chinese:", self.glossary))

    def test_termsTheIssueNames(self) -> None:
        for term in (
            "three-way handshake",
            "four-way close",
            "half-close",
            "framing",
            "flow control",
            "congestion control",
            "checksum",
            "retransmission",
            "SO_REUSEADDR",
            "SO_REUSEPORT",
        ):
            self.assertIn(term, self.terms)

    def test_twistedCalls(self) -> None:
        """Each term's Twisted mapping names the call or interface."""
        for term, twisted in [
            ("three-way handshake", "IProtocol.connectionMade"),
            ("four-way close", "ITransport.loseConnection"),
            ("four-way close", "IHalfCloseableProtocol.readConnectionLost"),
            ("half-close", "ITCPTransport.loseWriteConnection"),
            ("framing", "LineReceiver"),
            ("framing", "LineBuffer"),
            ("flow control", "IPushProducer"),
            ("congestion control", "nothing: the kernel does it"),
        ]:
            entry = self.glossary.split(f"\n   {term}\n", 1)[1].split("\n\n   ", 1)[0]
            self.assertIn(twisted, entry, term)

    def test_everyTermEachChinese(self) -> None:
        """Every entry has its Chinese term, socket call, Twisted side and guide link."""
        for term in self.terms:
            entry = self.glossary.split(f"\n   {term}\n", 1)[1].split("\n\n   ", 1)[0]
            for field in (":Chinese:", ":Sockets:", ":Twisted:", ":Guide:"):
                self.assertIn(field, entry, term)
            self.assertRegex(entry, r":Chinese: [^\n]*[\u4e00-\u9fff]", term)

    def test_linkedFromEveryGuidePage(self) -> None:
        """Each guide page links the glossary where a term first appears."""
        for page in ("index", "quickstart", "sockets-to-twisted", "tcp-lifecycle", "tcp-vs-udp"):
            source = _read("docs", page + ".rst")
            used = re.findall(r":term:`(?:[^`<]*<([^>`]+)>|([^`]+))`", source)
            self.assertTrue(used, page)
            for explicit, plain in used:
                self.assertIn(explicit or plain, self.terms, page)

    def test_guideFirst(self) -> None:
        """The guide comes first in the table of contents, the glossary in it."""
        index = _read("docs", "index.rst")
        toctrees = re.findall(r"(?ms)^\.\. toctree::\n(.*?)(?=^\S|\Z)", index)
        self.assertIn(":caption: Learning TCP with Twisted", toctrees[0])
        for page in ("sockets-to-twisted", "tcp-lifecycle", "tcp-vs-udp", "glossary"):
            self.assertIn(f"   {page}\n", toctrees[0])


class ChineseEditionTests(SynchronousTestCase):
    """The zh_CN catalogues of the guide pages: complete, and in the standard terms."""

    def setUp(self) -> None:
        try:
            from babel.messages.pofile import read_po
        except ImportError:
            raise SkipTest("babel (installed with Sphinx, the docs extra) is missing") from None
        self.catalogues = {}
        for page in GUIDE:
            with open(os.path.join(CATALOGUES, page + ".po"), "rb") as f:
                self.catalogues[page] = read_po(f, locale="zh_CN")

    def test_complete(self) -> None:
        """No guide message is untranslated or fuzzy."""
        for page, catalogue in self.catalogues.items():
            messages = [m for m in catalogue if m.id]
            self.assertTrue(messages, page)
            for m in messages:
                self.assertTrue(m.string, f"{page}: untranslated {m.id!r}")
                self.assertFalse(m.fuzzy, f"{page}: fuzzy {m.id!r}")

    def test_standardTerms(self) -> None:
        text = "".join(str(m.string) for c in self.catalogues.values() for m in c)
        for term in (
            "三次握手",
            "四次挥手",
            "半关闭",
            "流量控制",
            "拥塞控制",
            "粘包",
            "滑动窗口",
            "校验和",
            "超时重传",
            "接收窗口",
            "拥塞窗口",
        ):
            self.assertIn(term, text)

    def test_checkScriptSeesTheSamePages(self) -> None:
        check: Any = _load("check_translations", "scripts", "check_translations.py")
        self.assertEqual(tuple(check.GUIDE), GUIDE)


class ReadmeTests(SynchronousTestCase):
    """README.md leads a reader of the tutorial to the guide."""

    def setUp(self) -> None:
        self.readme = _read("README.md")

    def test_learningSectionFirst(self) -> None:
        self.assertLess(
            self.readme.index("## Learning TCP with Twisted"), self.readme.index("## Set up")
        )

    def test_namesTheTutorialAndTheExamples(self) -> None:
        section = self.readme.split("## Learning TCP with Twisted", 1)[1].split("\n## ", 1)[0]
        self.assertIn('**"TCP"**', section)
        for name in ("socket_server.py", "socket_client.py"):
            self.assertIn(f"](docs/examples/{name})", section)
            self.assertTrue(os.path.exists(os.path.join(DOCS, "examples", name)))

    def test_bothEditions(self) -> None:
        section = self.readme.split("## Learning TCP with Twisted", 1)[1].split("\n## ", 1)[0]
        self.assertIn("[English](https://tcpproto.readthedocs.io/en/", section)
        self.assertIn("[简体中文](https://tcpproto.readthedocs.io/zh-cn/", section)


class TwistedInventoryTests(SynchronousTestCase):
    """docs/_ext/twisted_inventory.py: Twisted's names, linked as pydoctor publishes them."""

    def test_namesTheGuideUses(self) -> None:
        try:
            import sphobjinv  # type: ignore[import-untyped]
        except ImportError:
            raise SkipTest("sphobjinv (the docs extra) is missing") from None
        inventory: Any = _load("twisted_inventory", "docs", "_ext", "twisted_inventory.py")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "objects.inv")
            inventory.write(path)
            entries = {(o.name, o.role): o.uri for o in sphobjinv.Inventory(path).objects}
        expected = {
            ("twisted.internet.interfaces.IPushProducer", "class"): (
                "twisted.internet.interfaces.IPushProducer.html"
            ),
            ("twisted.internet.interfaces.IProtocol.connectionMade", "method"): (
                "twisted.internet.interfaces.IProtocol.html#connectionMade"
            ),
            ("twisted.internet.endpoints.connectProtocol", "function"): (
                "twisted.internet.endpoints.html#connectProtocol"
            ),
            ("twisted.internet.error.ConnectionDone", "exception"): (
                "twisted.internet.error.ConnectionDone.html"
            ),
            # Re-exported from a private module, documented where it is exported.
            ("twisted.internet.ssl.Certificate", "class"): (
                "twisted.internet.ssl.Certificate.html"
            ),
        }
        for key, uri in expected.items():
            self.assertEqual(entries.get(key), uri, key)


class RendererTests(SynchronousTestCase):
    """scripts/render_trace.py names retransmissions and SACK blocks."""

    def setUp(self) -> None:
        self.render: Any = _load("render_trace", "scripts", "render_trace.py")

    def segment(
        self, time: float, fromClient: bool, seq: int, ack: int, flags: int, **kw: Any
    ) -> Any:
        client, server = ("127.0.0.1", 40000), ("127.0.0.1", 7)
        src, dst = (client, server) if fromClient else (server, client)
        return self.render.Segment(
            time=time,
            src=src,
            dst=dst,
            seq=seq,
            ack=ack,
            flags=flags,
            window=kw.get("window", 512),
            options=kw.get("options", b""),
            payload=kw.get("payload", b""),
        )

    def test_retransmissionAndSack(self) -> None:
        syn, ack, psh = 0x02, 0x10, 0x08
        sack = bytes([1, 1, 5, 10]) + (1003).to_bytes(4, "big") + (1006).to_bytes(4, "big")
        rows = self.render.render(
            [
                self.segment(0.0, True, 1000, 0, syn),
                self.segment(0.001, False, 5000, 1001, syn | ack),
                self.segment(0.002, True, 1001, 5001, ack),
                self.segment(0.003, True, 1001, 5001, psh | ack, payload=b"ab"),
                self.segment(0.004, True, 1003, 5001, psh | ack, payload=b"cde"),
                self.segment(0.005, False, 5001, 1001, ack, options=sack),
                self.segment(0.205, True, 1001, 5001, psh | ack, payload=b"ab"),
                self.segment(0.206, False, 5001, 1006, ack),
            ],
            7,
        ).splitlines()
        self.assertIn("SACK 3-6: these arrived after a gap", rows[6])
        self.assertIn("retransmission: row 4 sent again, 202.000 ms later", rows[7])
        self.assertIn("2 data bytes b'ab'", rows[7])
        self.assertNotIn("retransmission", "".join(rows[:7]))
        self.assertIn("ACK: the server has received 5 bytes", rows[8])

    def test_duplicateSack(self) -> None:
        """A SACK block below the acknowledgement number reports a duplicate (D-SACK)."""
        syn, ack = 0x02, 0x10
        dsack = bytes([1, 1, 5, 10]) + (5001).to_bytes(4, "big") + (5004).to_bytes(4, "big")
        rows = self.render.render(
            [
                self.segment(0.0, True, 1000, 0, syn),
                self.segment(0.001, False, 5000, 1001, syn | ack),
                self.segment(0.002, True, 1001, 5004, ack, options=dsack),
            ],
            7,
        ).splitlines()
        self.assertIn("D-SACK 1-4: these bytes arrived twice", rows[3])
