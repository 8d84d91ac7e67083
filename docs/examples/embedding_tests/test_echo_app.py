"""
Testing an application that embeds tcpproto, with pytest-twisted.

These are plain pytest tests (functions, fixtures, ``assert``), not trial
TestCases: pytest-twisted runs one reactor for the whole run, and a test
waits for a Deferred or a coroutine through ``pytest_twisted.ensureDeferred``
(``async def`` tests) or ``pytest_twisted.inlineCallbacks`` (generator
tests).  Run them in a pytest run of their own, from this directory::

    python -m pytest

(docs/testing.rst says why they never share a run with trial TestCases.)
"""

from __future__ import annotations

from collections.abc import Generator

import pytest
import pytest_twisted
from echo_app import EchoPort, probe
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock

from tcpproto import exchange
from tcpproto.testing import connectInMemory


@pytest_twisted.ensureDeferred
async def test_probeSucceeds(echoPort: tuple[EchoPort, str]) -> None:
    """The health check passes against the running port."""
    _, description = echoPort
    assert await probe(reactor, description)


@pytest_twisted.ensureDeferred
async def test_everyByteComesBackAfterTheHalfClose(echoPort: tuple[EchoPort, str]) -> None:
    """1 MiB sent then half-closed comes back whole: nothing after the FIN is lost."""
    _, description = echoPort
    payload = bytes(range(256)) * 4096
    answer = await exchange(clientFromString(reactor, description), payload)
    assert answer == payload


@pytest_twisted.inlineCallbacks
def test_stoppedPortRefuses(
    echoPort: tuple[EchoPort, str],
) -> Generator[Deferred[object], object, None]:
    """Once the application stops the port, probes are refused (generator style)."""
    port, description = echoPort
    yield Deferred.fromCoroutine(port.stop())
    with pytest.raises(ConnectionRefusedError):
        yield Deferred.fromCoroutine(probe(reactor, description))


def test_idleProbeIsCutOff() -> None:
    """
    In memory, with a fake clock (no reactor, no waiting): a probe that
    connects and says nothing is closed after the idle timeout, not before
    (tcpproto checks idle connections in batches: within 1.25 timeouts).
    ``tcpproto.testing.connectInMemory`` connects one protocol the factory
    builds to a string transport, as a listening port would.
    """
    clock = Clock()
    port = EchoPort(reactor, idleTimeout=5.0, clock=clock)
    _, transport = connectInMemory(port.factory)
    while clock.seconds() < 5.0:
        assert not transport.disconnecting, f"closed early, at {clock.seconds()} s"
        clock.advance(0.25)
    while not transport.disconnecting:
        assert clock.seconds() < 1.25 * 5.0, "still open after 1.25 idle timeouts"
        clock.advance(0.25)
