"""
Fixtures for the pytest-twisted tests of ``echo_app``.

pytest-twisted runs the reactor for the whole session (in a greenlet);
``async_yield_fixture`` lets a fixture await: here, an :class:`EchoPort`
listening on a free loopback port for each test, stopped after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_twisted
from echo_app import EchoPort
from twisted.internet import reactor


@pytest_twisted.async_yield_fixture()
async def echoPort() -> AsyncIterator[tuple[EchoPort, str]]:
    """A started :class:`EchoPort` and the client endpoint string to reach it."""
    port = EchoPort(reactor, "tcp:0:interface=127.0.0.1")
    address = await port.start()
    yield port, f"tcp:127.0.0.1:{address.port}"  # type: ignore[attr-defined]
    await port.stop()
