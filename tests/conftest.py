"""The suite's shared fixtures and its levels.

``tests/unit`` is pure (no Redis, no sockets, no processes), ``tests/integration`` runs against a real
redis-server and in-process HTTP servers on loopback (the Agora emulator among them), ``tests/e2e`` starts real
processes (gunicorn, rq worker, the emulator, Chromium). Each test is marked with its level, so ``-m unit``,
``-m "not e2e"`` select by level as well as by directory.

Redis: one redis-server per test process (per pytest-xdist worker), flushed after every test that used it,
once :func:`tests.support.redis_server.assert_known_keys` has checked every key it holds against the schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from agora_emulator import Emulator
from tests.support.emulated import Sink, make_client, start_emulator
from tests.support.redis_server import RedisServer, assert_known_keys
from tests.support.service import API_TOKEN, NCS_SECRET
from webhook_service import create_app
from workers.agora import AgoraClient
from workers.core.config import Settings

TESTS = Path(__file__).resolve().parent
LEVELS = ("unit", "integration", "e2e")

# Hypothesis's per-example deadline (200 ms) and its too-slow health check time examples on the wall clock:
# on a machine busy with the suite's other workers (or a benchmark) they fail tests that are correct. What
# an example must do is asserted by the tests themselves; how long it may take is not part of it.
hypothesis_settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("suite")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its level, the first directory under tests/."""
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts
        if parts and parts[0] in LEVELS:
            item.add_marker(parts[0])


# -- Redis -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _redis_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(_redis_process: RedisServer) -> Iterator[RedisServer]:
    """This test process's redis-server, empty; its keys are checked against the schema afterwards."""
    if not _redis_process.ping():  # a test stopped it and failed before starting it again
        _redis_process.start()
    connection = redis.Redis.from_url(_redis_process.url)
    try:
        connection.flushall()
        yield _redis_process
        assert_known_keys(_redis_process)
    finally:
        if _redis_process.ping():
            connection.flushall()
        connection.close()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that stop and restart it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
        assert_known_keys(server)
    finally:
        server.kill()  # nothing of it is kept: no need for a clean shutdown


# -- the web app -------------------------------------------------------------------------------------------


@pytest.fixture
def settings(redis_client: redis.Redis, redis_server: RedisServer) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        environment="test",
        ncs_secrets=(NCS_SECRET,),
        api_tokens=(API_TOKEN,),
        redis_socket_timeout=1.0,
    )


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


# -- the Agora emulator, in process ------------------------------------------------------------------------


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A receiver recording every callback the emulator posts."""
    sink = Sink()
    yield sink
    sink.close()


@pytest.fixture
def emulator(sink: Sink) -> Iterator[tuple[Emulator, str]]:
    """An in-process Agora emulator on loopback (compressed time), posting callbacks to ``sink``."""
    emulator, url = start_emulator(sink.url)
    yield emulator, url
    emulator.close()


@pytest.fixture
def base(emulator: tuple[Emulator, str]) -> str:
    """The emulator's base URL."""
    return emulator[1]


@pytest.fixture
def agora(base: str) -> AgoraClient:
    """The project's Agora client pointed at the emulator."""
    return make_client(base)
