"""
The client as a person at a terminal uses it (issue 10, section 3).

At a terminal ``tcpecho-client`` says on standard error where it connected
and how to finish, and when the server closes or ends its side; output that
does not end a line is followed by a newline on the screen (the bytes are
unchanged); ``--quiet`` turns the messages off.  Pipes stay byte for byte.

In memory: :class:`~tcpproto._clientcli.Display` with a fake clock.  End to
end: the installed ``tcpecho-client`` driven through a pseudo-terminal (the
:mod:`pty` module) against a server written here with plain sockets, like
the tutorial's.
"""

from __future__ import annotations

import io
import os
import select
import socket
import struct
import subprocess
import time

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tcpproto._clientcli import TIDY_DELAY, Display, describeConnection
from tests.helpers import LOOPBACK, clientCommand, processEnv, runClientSync

TIMEOUT = 15.0


class DisplayTests(SynchronousTestCase):
    """What is written to the screen, with a fake clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.stdout = StringTransport()
        self.stderr = io.StringIO()

    def display(self, **kwargs: bool) -> Display:
        return Display(self.stdout, self.clock, self.stderr, **kwargs)

    def test_bytesUnchangedWhenNotTidy(self) -> None:
        """Not a terminal: the server's bytes and nothing else, whatever the clock says."""
        d = self.display()
        d.write(b"thank you!")
        self.clock.advance(60)
        d.endLine()
        self.assertEqual(self.stdout.value(), b"thank you!")

    def test_newlineAfterQuiet(self) -> None:
        """At a terminal, output left mid-line gets a newline once nothing more comes."""
        d = self.display(tidy=True)
        d.write(b"thank you!")
        self.clock.advance(TIDY_DELAY * 0.9)
        self.assertEqual(self.stdout.value(), b"thank you!")
        self.clock.advance(TIDY_DELAY * 0.2)
        self.assertEqual(self.stdout.value(), b"thank you!\n")
        d.endLine()  # at the end: already at the start of a line
        self.assertEqual(self.stdout.value(), b"thank you!\n")

    def test_moreOutputPostponesNewline(self) -> None:
        """A line arriving in pieces is not broken: the newline waits for the end of the line."""
        d = self.display(tidy=True)
        d.write(b"thank ")
        self.clock.advance(TIDY_DELAY / 2)
        d.write(b"you!\n")
        self.clock.advance(TIDY_DELAY * 2)
        self.assertEqual(self.stdout.value(), b"thank you!\n")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_newlineAtTheEnd(self) -> None:
        """At the end, the shell's prompt starts on a line of its own."""
        d = self.display(tidy=True)
        d.write(b"x")
        d.endLine()
        self.assertEqual(self.stdout.value(), b"x\n")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_messagesOnStderr(self) -> None:
        d = self.display(tidy=True, chatty=True)
        d.say("connected")
        d.error("broken")
        self.assertEqual(
            self.stderr.getvalue(), "tcpecho-client: connected\ntcpecho-client: broken\n"
        )
        self.assertEqual(self.stdout.value(), b"")

    def test_quiet(self) -> None:
        """Without ``chatty`` (``--quiet``, or input not typed at a terminal) only errors show."""
        d = self.display(tidy=True)
        d.say("connected")
        d.error("broken")
        self.assertEqual(self.stderr.getvalue(), "tcpecho-client: broken\n")

    def test_sameTerminalKeepsOrder(self) -> None:
        """
        With standard error on the same terminal, a message comes after the
        output before it, on a line of its own.
        """
        d = self.display(tidy=True, chatty=True, sameTerminal=True)
        d.write(b"thank you!")
        d.say("the server closed the connection")
        self.assertEqual(
            self.stdout.value(), b"thank you!\ntcpecho-client: the server closed the connection\n"
        )
        self.assertEqual(self.stderr.getvalue(), "")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_producerPassedOn(self) -> None:
        d = self.display()
        producer = object()
        d.registerProducer(producer, True)  # type: ignore[arg-type]
        self.assertIs(self.stdout.producer, producer)
        d.unregisterProducer()
        self.assertIsNone(self.stdout.producer)


class DescribeConnectionTests(SynchronousTestCase):
    def test_ipv4(self) -> None:
        t = StringTransport(
            hostAddress=IPv4Address("TCP", LOOPBACK, 50514),
            peerAddress=IPv4Address("TCP", LOOPBACK, 7788),
        )
        self.assertEqual(describeConnection(t), "127.0.0.1 port 7788 (local port 50514)")

    def test_ipv6(self) -> None:
        t = StringTransport(
            hostAddress=IPv6Address("TCP", "::1", 50514),
            peerAddress=IPv6Address("TCP", "::1", 7788),
        )
        self.assertEqual(describeConnection(t), "::1 port 7788 (local port 50514)")

    def test_unix(self) -> None:
        t = StringTransport(
            hostAddress=UNIXAddress(None), peerAddress=UNIXAddress(b"/run/tcpecho.sock")
        )
        self.assertEqual(describeConnection(t), "unix:/run/tcpecho.sock")


# -- under a pseudo-terminal --------------------------------------------------


class Terminal:
    """``tcpecho-client ARGS`` with a pseudo-terminal as its standard input, output and error."""

    def __init__(self, testCase: SynchronousTestCase, *args: str) -> None:
        master, slave = os.openpty()
        self.master = master
        testCase.addCleanup(os.close, master)
        self.process = subprocess.Popen(
            clientCommand(*args),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=processEnv(),
            start_new_session=True,
        )
        os.close(slave)
        testCase.addCleanup(self._stop)
        self.screen = b""

    def _stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def waitFor(self, needle: bytes) -> bytes:
        """Read the screen until ``needle`` shows up; the whole screen so far."""
        end = time.monotonic() + TIMEOUT
        while needle not in self.screen:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not on the screen: {self.screen!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # EIO: the client exited and closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the terminal closed before {needle!r}: {self.screen!r}")
                self.screen += chunk
        return self.screen

    def finish(self) -> int:
        """Read the screen to the end; the exit status."""
        end = time.monotonic() + TIMEOUT
        while time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], end - time.monotonic())
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.screen += chunk
        return self.process.wait(TIMEOUT)


class TutorialServer:
    """
    The tutorial's thank-you server, with plain sockets: thanks each line
    (no newline in the reply), and after ``lines`` lines ends its side
    (FIN) but reads on until the client's end, then closes.
    """

    def __init__(self, testCase: SynchronousTestCase) -> None:
        self.listener = socket.socket()
        testCase.addCleanup(self.listener.close)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None
        self.received = b""
        self._testCase = testCase

    def accept(self) -> tuple[str, int]:
        conn, peer = self.listener.accept()
        self._testCase.addCleanup(conn.close)
        conn.settimeout(TIMEOUT)
        self.conn = conn
        return peer[0], peer[1]

    def readLine(self) -> bytes:
        assert self.conn is not None
        while b"\n" not in self.received:
            chunk = self.conn.recv(4096)
            if not chunk:
                raise AssertionError(f"EOF before a line: {self.received!r}")
            self.received += chunk
        line, _, self.received = self.received.partition(b"\n")
        return line + b"\n"

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def endOurSide(self) -> None:
        assert self.conn is not None
        self.conn.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0), as a server's lingering close that expired."""
        assert self.conn is not None
        self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.conn.close()

    def readToEnd(self) -> bytes:
        assert self.conn is not None
        rest = self.received
        while True:
            chunk = self.conn.recv(4096)
            if not chunk:
                return rest
            rest += chunk


class TerminalTests(SynchronousTestCase):
    """The installed ``tcpecho-client`` at a (pseudo-)terminal."""

    def helloThankYou(self, term: Terminal, server: TutorialServer) -> None:
        """
        A line typed reaches the server; the reply, without newline, is shown
        followed (display only) by a newline before anything is typed.
        """
        term.type(b"hello\n")
        self.assertEqual(server.readLine(), b"hello\n")
        server.send(b"thank you!")
        term.waitFor(b"thank you!\r\n")

    def finish(self, term: Terminal, server: TutorialServer) -> bytes:
        """
        Ctrl-D (the end of input), then the server closes: the client exits
        0; what the server read after the last line it read.
        """
        term.type(b"\x04")
        rest = server.readToEnd()
        assert server.conn is not None
        server.conn.close()
        self.assertEqual(term.finish(), 0)
        return rest

    def test_session(self) -> None:
        """
        A learner's session: where it connected and how to finish; the
        replies without newline do not run into the next typed line; the
        server ending its side is announced and typing goes on; Ctrl-D
        finishes; the end is announced and the prompt starts a new line.
        """
        server = TutorialServer(self)
        term = Terminal(self, LOOPBACK, str(server.port))
        _, localPort = server.accept()
        term.waitFor(
            b"tcpecho-client: connected to 127.0.0.1 port %d (local port %d); "
            b"type lines, Ctrl-D to finish\r\n" % (server.port, localPort)
        )
        self.helloThankYou(term, server)
        term.type(b"second line\n")
        self.assertEqual(server.readLine(), b"second line\n")
        server.send(b"thank you!")
        server.endOurSide()
        screen = term.waitFor(b"has finished sending")
        self.assertIn(
            b"thank you!\r\ntcpecho-client: 127.0.0.1 port %d has finished sending "
            b"(it may still read): type more, or Ctrl-D to finish\r\n" % server.port,
            screen,
        )
        term.type(b"after the server's FIN\n")
        self.assertEqual(self.finish(term, server), b"after the server's FIN\n")
        screen = term.screen
        self.assertNotIn(b"thank you!second line", screen)
        self.assertIn(b"hello\r\nthank you!\r\nsecond line\r\n", screen)
        self.assertTrue(
            screen.endswith(
                b"tcpecho-client: 127.0.0.1 port %d closed the connection\r\n" % server.port
            ),
            screen,
        )

    def afterTheServersEnd(self) -> tuple[TutorialServer, Terminal]:
        """A line and its reply, then the server ends its side (FIN), announced."""
        server = TutorialServer(self)
        term = Terminal(self, LOOPBACK, str(server.port))
        server.accept()
        self.helloThankYou(term, server)
        server.endOurSide()
        term.waitFor(b"has finished sending")
        return server, term

    def test_resetAfterTheServersEnd(self) -> None:
        """
        The server ends its side, then resets (a server's idle timeout: FIN,
        then RST when our end does not come): TCP tells the client only when it
        next writes or closes; with nothing typed since, nothing was lost: at
        Ctrl-D the client says the server closed and exits 0.
        """
        server, term = self.afterTheServersEnd()
        server.reset()  # noticed only when the client next writes or closes
        term.type(b"\x04")
        self.assertEqual(term.finish(), 0)
        self.assertTrue(
            term.screen.endswith(
                b"tcpecho-client: 127.0.0.1 port %d closed the connection\r\n" % server.port
            ),
            term.screen,
        )
        self.assertNotIn(b"before reading all our input", term.screen)

    def test_typedAfterTheServersEndThenReset(self) -> None:
        """What is typed after the server's end and then not read is reported: exit 1."""
        server, term = self.afterTheServersEnd()
        term.type(b"lost?\n")
        assert server.conn is not None
        self.assertTrue(select.select([server.conn], [], [], TIMEOUT)[0])  # arrived, unread
        server.reset()
        term.type(b"\x04")
        self.assertEqual(term.finish(), 1)
        self.assertIn(b"closed the connection before reading all our input", term.screen)

    def test_quiet(self) -> None:
        """``--quiet``: no messages; the screen is still kept tidy."""
        server = TutorialServer(self)
        term = Terminal(self, "--quiet", LOOPBACK, str(server.port))
        server.accept()
        self.helloThankYou(term, server)
        self.assertEqual(self.finish(term, server), b"")
        self.assertNotIn(b"tcpecho-client", term.screen)
        self.assertEqual(term.screen, b"hello\r\nthank you!\r\n")


class PipeTests(SynchronousTestCase):
    """Not at a terminal: byte for byte, and silent."""

    def test_byteExact(self) -> None:
        server = TutorialServer(self)
        listener = server.listener
        # Run the client with pipes; the server answers without a newline and closes.
        client = subprocess.Popen(
            clientCommand(LOOPBACK, str(server.port)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=processEnv(),
        )
        self.addCleanup(client.wait)
        server.accept()
        del listener
        assert client.stdin is not None
        assert client.stdout is not None
        assert client.stderr is not None
        self.addCleanup(client.stdout.close)
        self.addCleanup(client.stderr.close)
        client.stdin.write(b"hello\n")
        client.stdin.close()
        self.assertEqual(server.readToEnd(), b"hello\n")
        server.send(b"thank you!")
        assert server.conn is not None
        server.conn.close()
        out, err = client.stdout.read(), client.stderr.read()
        self.assertEqual((client.wait(TIMEOUT), out, err), (0, b"thank you!", b""))

    def test_quietOptionAccepted(self) -> None:
        result = runClientSync("--quiet", "--help")
        self.assertEqual(result.status, 0)
        self.assertIn(b"--quiet", result.out)
