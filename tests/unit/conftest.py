"""Unit tests are pure: no Redis, no sockets, no processes of the service. A unit test that opens a network
connection fails at once (it belongs in ``tests/integration``). Only the test's own thread is watched: a
daemon thread another test left behind (a worker's heartbeat, say) is not this test's doing."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    test_thread = threading.current_thread()

    def guarded(original: Callable[..., Any]) -> Callable[..., Any]:
        def connect(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is test_thread:
                raise AssertionError(
                    "a unit test opened a network connection: it belongs in tests/integration"
                )
            return original(*args, **kwargs)

        return connect

    monkeypatch.setattr(socket.socket, "connect", guarded(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(socket.socket.connect_ex))
    monkeypatch.setattr(socket, "create_connection", guarded(socket.create_connection))
    yield
